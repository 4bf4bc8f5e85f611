"""Image files in and out: PNG/JPEG as ``(1, C, H, W)`` tensors in ``[-1, 1]``, and 8-bit PNGs back.

Notation: none (no paper symbols); images are ``(B, C, H, W)`` in ``[-1, 1]`` as everywhere.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["load_image", "save_image"]


def load_image(path: str | Path, channels: int) -> torch.Tensor:
    """Read a PNG/JPEG file as ``(1, channels, H, W)`` float32 in ``[-1, 1]`` (grey <-> RGB as needed)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input image {path} does not exist")
    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        arr = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    t = torch.from_numpy(arr)
    t = t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]
    return t.contiguous()


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Write ``(1, C, H, W)`` or ``(C, H, W)`` in ``[-1, 1]`` as an 8-bit PNG (C = 1 or 3)."""
    from PIL import Image

    x = x.detach().float().cpu()
    x = x[0] if x.dim() == 4 else x
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
    return path
