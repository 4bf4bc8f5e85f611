"""Image-quality metrics: PSNR, SSIM, consistency with the measurement, nearest-neighbour distance, and
LPIPS (AlexNet) without torchvision (its weights read as data)."""

from .lpips import LPIPS, download_backbone, lpips_available
from .quality import consistency, nn_distance, psnr, ssim, to_unit_range

__all__ = [
    "LPIPS",
    "download_backbone",
    "lpips_available",
    "consistency",
    "nn_distance",
    "psnr",
    "ssim",
    "to_unit_range",
]
