"""Operators that act pixel by pixel: average-pooling super-resolution, inpainting, colorization.

Notation (code name -> paper symbol, DeqIR Sec. 3 and Table 1): as ``base.py``; ``scale`` is the SR
factor s, ``mask`` the (H, W) 0/1 map M of observed pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Operator

__all__ = ["AveragePoolSR", "Inpainting", "Colorization"]


class AveragePoolSR(Operator):
    """Super-resolution by ``s x s`` average pooling, ``A^dagger`` = nearest upsampling.

    Each row of A holds ``s^2`` entries ``1/s^2`` on disjoint pixels, so ``A A^T = I / s^2`` and
    ``A^dagger = A^T (A A^T)^{-1} = s^2 A^T``: every entry of ``s^2 A^T`` is 1, i.e. replication.
    (``A^T`` alone, the adjoint, would shrink the image by ``1/s^2``.)
    """

    def __init__(self, image_shape: tuple[int, int, int], scale: int) -> None:
        c, h, w = image_shape
        if h % scale or w % scale:
            raise ValueError(
                f"image size {(h, w)} is not divisible by the super-resolution scale {scale}; "
                f"crop or pad the image to a multiple of {scale}"
            )
        self.name, self.scale, self.image_shape = f"sr{scale}", scale, image_shape
        self.measurement_shape = (c, h // scale, w // scale)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return F.avg_pool2d(x, self.scale)  # (B, C, H/s, W/s)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        s = self.scale
        return y.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)  # s^2 A^T y


class Inpainting(Operator):
    """``A = A^dagger = diag(mask)``: keep observed pixels, zero the missing ones (as DDNM).

    ``y`` keeps the image shape with zeros where pixels are missing.  For a 0/1 mask the diagonal
    matrix is an orthogonal projector, hence its own pseudo-inverse.
    """

    def __init__(self, image_shape: tuple[int, int, int], mask: torch.Tensor, name: str = "inpaint") -> None:
        _, h, w = image_shape
        mask = torch.as_tensor(mask)
        if mask.dim() == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if tuple(mask.shape) != (h, w):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but the image is {(h, w)}; "
                f"pass an (H, W) = {(h, w)} tensor of 0 (missing) and 1 (observed)"
            )
        mask = mask.to(torch.float64)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (missing) and 1 (observed); threshold it, e.g. (m > 0.5)")
        self.name, self.image_shape, self.measurement_shape = name, image_shape, image_shape
        self.mask = mask  # (H, W), float64, 1 = observed

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return x * self._like(self.mask, x)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        return y * self._like(self.mask, y)


class Colorization(Operator):
    """``A`` = mean over the C colour channels, (B, C, H, W) -> (B, 1, H, W); ``A^dagger`` = repeat.

    Per pixel A is the row ``(1/C, ..., 1/C)``: ``A A^T = 1/C`` and ``A^dagger = A^T (A A^T)^{-1}
    = C A^T = (1, ..., 1)^T``, i.e. copy the grey value into every channel.
    """

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        c, h, w = image_shape
        self.name, self.image_shape, self.measurement_shape = "colorize", image_shape, (1, h, w)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return x.mean(dim=1, keepdim=True)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        return y.repeat(1, self.image_shape[0], 1, 1)
