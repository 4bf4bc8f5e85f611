"""deqir-edu: a small, readable companion package for DeqIR (Cao et al., CVPR 2024).

Images are tensors of shape ``(B, C, H, W)`` with values in ``[-1, 1]``.  The top level holds the
names a reader of the book uses; everything else is reached through its subpackage, one per layer
(imports only go down this list):

    core         checks, progress bars, paths, safe downloads
    datasets     Fashion-MNIST / photo readers, frozen test sets
    diffusion    schedules, the chain configuration, noises, the exact Gaussian-mixture prior
    operators    A and A^+ for every task (Eqs. (1), (5))
    models       networks, model wrappers (clipping, chunking, sharding), checkpoints, the zoo
    solvers      Picard, Anderson (Algorithm 1), freezing / windows / triangular Anderson; one registry
    sampling     DDIM, DDNM, the fixed-point map F (Proposition 1), the parallel sampler DeqIR
    inversion    DEQ inversion (Algorithm 2)
    metrics      PSNR, SSIM, consistency, LPIPS
    experiments  the method runner, evaluation grid, ablations, results files
    training     the training recipe of the embedded models; exercises: the book's self-checks
    apps         image files, tiles, demo, multi-device launch, the command line

Public names are imported lazily so that ``import deqir_edu`` stays fast and never imports optional libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for editors and type checkers: the lazy names below, with their definitions
    from .datasets import load_testset
    from .diffusion import GaussianMixturePrior, chain_config, draw_noises, fashion_mixture
    from .experiments import restore
    from .inversion import deq_invert, phantom_gradient
    from .metrics import consistency, psnr, ssim
    from .models import ClippedModel, load_model
    from .operators import make_operator
    from .sampling import FixedPointMap, ddim_sample, ddnm_sample, deqir_sample
    from .solvers import get_solver

# public name -> subpackage that defines it
_EXPORTS: dict[str, str] = {
    "make_operator": "operators",
    "GaussianMixturePrior": "diffusion",
    "fashion_mixture": "diffusion",
    "chain_config": "diffusion",
    "draw_noises": "diffusion",
    "load_model": "models",
    "ClippedModel": "models",
    "load_testset": "datasets",
    "ddim_sample": "sampling",
    "ddnm_sample": "sampling",
    "deqir_sample": "sampling",
    "FixedPointMap": "sampling",
    "get_solver": "solvers",
    "deq_invert": "inversion",
    "phantom_gradient": "inversion",
    "psnr": "metrics",
    "ssim": "metrics",
    "consistency": "metrics",
    "restore": "experiments",
}

__all__ = [  # the names of _EXPORTS (tests/test_layout.py checks), and the version
    "ClippedModel",
    "FixedPointMap",
    "GaussianMixturePrior",
    "chain_config",
    "consistency",
    "ddim_sample",
    "ddnm_sample",
    "deq_invert",
    "deqir_sample",
    "draw_noises",
    "fashion_mixture",
    "get_solver",
    "load_model",
    "load_testset",
    "make_operator",
    "phantom_gradient",
    "psnr",
    "restore",
    "ssim",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from pyproject.toml, through the installed metadata (core/version.py)
        from .core.version import package_version  # noqa: PLC0415 (lazy: import deqir_edu stays fast)

        globals()[name] = package_version()
        return globals()[name]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'deqir_edu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"deqir_edu.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
