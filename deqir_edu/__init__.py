"""deqir-edu: a small, readable companion package for DeqIR (Cao et al., CVPR 2024).

Images are tensors of shape ``(B, C, H, W)`` with values in ``[-1, 1]``.  Public names are
imported lazily so that ``import deqir_edu`` stays fast and never imports optional libraries.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # schedules
    "linear_betas": "schedules",
    "alphas_cumprod": "schedules",
    "ddim_timesteps": "schedules",
    "chain_coefficients": "schedules",
    # operators
    "make_operator": "operators",
    "Operator": "operators",
    "TASKS": "operators",
    "ComposedOperator": "operators",
    "null_space_project": "operators",
    "penrose_residuals": "operators",
    # exact prior
    "GaussianMixturePrior": "prior",
    # samplers
    "ClippedModel": "samplers",
    "draw_noises": "samplers",
    "ddim_sample": "samplers",
    "ddnm_sample": "samplers",
    "deqir_sample": "samplers",
    # fixed point and solvers
    "FixedPointMap": "fixed_point",
    "picard": "solvers",
    "anderson": "solvers",
    "window_solve": "parallel_solvers",
    "PARALLEL_SOLVERS": "parallel_solvers",
    "ShardedModel": "distributed",
    # inversion
    "deq_invert": "inversion",
    "exact_chain_gradient": "inversion",
    "phantom_gradient": "inversion",
    "chain_consistency_loss": "inversion",
    # metrics
    "psnr": "metrics",
    "ssim": "metrics",
    "consistency": "metrics",
    "nn_distance": "metrics",
    "LPIPS": "lpips",
    "lpips_available": "lpips",
    # models
    "load_model": "zoo",
    "DiffusionModel": "diffusion_model",
    "load_testset": "datasets",
    "train": "training",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deqir_edu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deqir_edu.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
