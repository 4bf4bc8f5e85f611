"""The diffusion networks of the paper's experiments, written from the papers and config flags.

    ADMUNet   guided-diffusion UNet (Dhariwal & Nichol 2021): ImageNet 256 and RePaint's CelebA-HQ 256
    DDPMUNet  the "simple" DDPM UNet of DDIM / SDEdit (Ho et al. 2020): CelebA-HQ 256

Both are built with ``Class.from_config(cfg)`` from the config dicts of the original code and load
the original ``state_dict`` with ``strict=True``.  ``forward(x (B, C, H, W), t (B,))``.
"""

from __future__ import annotations

from .adm import ADMConfig, ADMUNet
from .ddpm import DDPMUNet

__all__ = ["ADMConfig", "ADMUNet", "DDPMUNet"]
