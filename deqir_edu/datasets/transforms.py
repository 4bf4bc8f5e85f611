"""Conversions between stored images and the tensors the package works with, and resizing.

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    images       uint8 arrays ``(N, H, W)`` (grey) or ``(N, H, W, C)`` as stored in files
    x            ``(N, C, H, W)`` float tensors in [-1, 1]: the images x_0 the models see
    photo, p     one ``(C, H, W)`` float image in [-1, 1]
    max_side     bound on the longer side of a photograph, in pixels
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["to_tensor_images", "pad_to_32", "shrink", "fit_to"]


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)) / 127.5 - 1.0
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


def pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """Pad ``(N, C, 28, 28)`` to ``(N, C, 32, 32)`` with -1 (black), 2 pixels each side."""
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def shrink(photo: torch.Tensor, max_side: int) -> torch.Tensor:
    """Downscale ``(C, H, W)`` (antialiased bilinear) so that its longer side is at most ``max_side``."""
    h, w = photo.shape[1:]
    if max(h, w) <= max_side:
        return photo
    size = (round(h * max_side / max(h, w)), round(w * max_side / max(h, w)))
    return F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(-1, 1)


def fit_to(p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre-crop ``(C, H', W')`` to the aspect ratio of ``(h, w)``, then resize (area) to ``(h, w)``."""
    s = min(p.shape[1] / h, p.shape[2] / w)
    ch, cw = int(h * s), int(w * s)
    top, left = (p.shape[1] - ch) // 2, (p.shape[2] - cw) // 2
    crop = p[:, top : top + ch, left : left + cw]
    return F.interpolate(crop[None], size=(h, w), mode="area")[0] if (ch, cw) != (h, w) else crop
