"""Noise schedules: betas, alpha-bar and the DDIM timestep sub-sequences (the chain's coefficients: ``chain.py``).

Notation (code name -> paper symbol, DeqIR Sec. 3 and Proposition 1)

    betas[t]          beta_t               variance of the forward step t (t = 0..999)
    alphas_cumprod[t] abar_t               prod_{s<=t} (1 - beta_s), Eq. (2)
    timesteps[k-1]    tau_k                network time of chain state k (k = 1..T)
    abar[k]           abar_{tau_k}         abar of chain state k; abar[0] = 1 (clean image)
    eta               eta                  stochasticity of the update, 0 <= eta < 1
    c1[k]             c^1_k                weight of the fresh noise eps_k in step k -> k-1
    c2[k]             c^2_k                weight of the predicted noise in step k -> k-1

Chain convention used in the whole package.  A sampler with ``T`` steps has ``T + 1`` states
``x_T, x_{T-1}, ..., x_0``.  ``x_T`` is pure noise, ``x_0`` the restored image.  State ``k >= 1``
is fed to the network at the integer time ``timesteps[k - 1]``; state ``0`` is never fed to the
network and has ``abar[0] = 1``, exactly as ``seq_next = [-1] + seq[:-1]`` in the DDIM code.

One step ``k -> k - 1`` (the DDNM "eta" form that DeqIR's Eq. (9) uses)::

    x_{k-1} = sqrt(abar[k-1]) * x0_hat + c2[k] * eps_theta(x_k) + c1[k] * eps_k
    c1[k] = sqrt(1 - abar[k-1]) * eta            c2[k] = sqrt(1 - abar[k-1]) * sqrt(1 - eta^2)

Every schedule is float64; cast at the point of use with ``.to(x)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..core.checks import is_integer

__all__ = ["linear_betas", "alphas_cumprod", "ddim_timesteps", "alphas_cumprod_of"]


def linear_betas(n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Linear beta schedule of DDPM (Ho et al., 2020), shape ``(n,)``, float64."""
    if n < 1:
        raise ValueError(f"the number of diffusion steps must be >= 1, got {n}")
    if not 0.0 < beta_start <= beta_end < 1.0:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, n, dtype=torch.float64)


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``abar_t = prod_{s<=t} (1 - beta_s)``, Eq. (2); shape ``(n,)``, float64."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def ddim_timesteps(steps: int, n_train: int = 1000, kind: str = "uniform") -> torch.Tensor:
    """Increasing integer times ``tau_1 < ... < tau_T`` of a DDIM sub-sequence, shape ``(T,)``.

    ``"uniform"`` is ``tau_k = floor((k - 1) n_train / T)``: for T that divide ``n_train`` this is
    ``range(0, n_train, n_train // T)`` of the official DDIM/DDNM/DeqIR code (so ``tau_1 = 0``), and for
    every T the top time ``tau_T`` lies within ``n_train / T`` of ``n_train - 1``, so a pure-noise x_T
    matches its noise level (``range`` with ``n_train // T`` would stop at t = 666 for T = 334).
    ``"quad"`` is ``(linspace(0, sqrt(0.8 n_train), T) ** 2)`` as in DDIM.
    """
    if not is_integer(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    if steps > n_train:
        raise ValueError(f"steps={steps} exceeds the {n_train} training steps of the schedule")
    if kind == "uniform":
        seq = [k * n_train // steps for k in range(steps)]  # = range(0, n, n // T) when T divides n
    elif kind == "quad":
        seq = [int(s) for s in torch.linspace(0, math.sqrt(n_train * 0.8), steps, dtype=torch.float64) ** 2]
        if len(set(seq)) != steps:
            raise ValueError(f"'quad' spacing gives repeated times for steps={steps}; use 'uniform'")
    else:
        raise ValueError(f"unknown timestep spacing {kind!r}; use 'uniform' or 'quad'")
    return torch.tensor(seq, dtype=torch.long)


def alphas_cumprod_of(model: Any) -> torch.Tensor | None:
    """The model's ``alphas_cumprod`` ``(n_train,)`` as float64 on the CPU, or ``None`` (default schedule)."""
    ac = getattr(model, "alphas_cumprod", None)
    return None if ac is None else torch.as_tensor(ac).detach().to("cpu", torch.float64)
