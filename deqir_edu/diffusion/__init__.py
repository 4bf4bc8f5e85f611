"""Diffusion foundations: noise schedules, the chain's configuration (eta form and the official form),
the noises of a chain, and the exact Gaussian-mixture prior."""

from .chain import ChainConfig, chain_config, official_chain
from .noises import draw_noises, official_noises
from .prior import GaussianMixturePrior, fashion_mixture
from .schedules import alphas_cumprod, alphas_cumprod_of, ddim_timesteps, linear_betas

__all__ = [
    "ChainConfig",
    "chain_config",
    "official_chain",
    "draw_noises",
    "official_noises",
    "GaussianMixturePrior",
    "fashion_mixture",
    "alphas_cumprod",
    "alphas_cumprod_of",
    "ddim_timesteps",
    "linear_betas",
]
