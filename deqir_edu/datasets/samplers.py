"""Batch samplers that draw the training images, and ``make_sampler`` for a training config.

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    images       (N, C, H, W) float tensors in [-1, 1]: the training images x_0
    sampler      an object with ``.sample(batch, generator) -> (B, C, H, W)``; the trainer draws
                 every batch from it with its own ``torch.Generator``, so a run is reproducible and
                 can be resumed bit for bit
    photos       a list of ``(C, H, W)`` images in [-1, 1] that patches are cut from
    size, scale  side of a patch in pixels; range of the log-uniform rescaling before the cut
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .fashion import fashion_mnist
from .photos import PHOTO_TRAIN, image_folder, skimage_photos
from .transforms import pad_to_32, shrink, to_tensor_images

__all__ = ["TensorSampler", "PatchSampler", "make_sampler"]


class TensorSampler:
    """Draws random images (with replacement) from a fixed stack ``images`` of shape ``(N, C, H, W)``."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.image_shape = tuple(images.shape[1:])

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.images.shape[0], (batch,), generator=generator)
        return self.images[idx]


class PatchSampler:
    """Random ``size`` x ``size`` patches of a list of ``(C, H, W)`` images.

    Each patch: a photograph chosen uniformly, a square of side ``size * s`` with ``s`` log-uniform
    in ``scale`` (mild rescaling), resized to ``size``, random horizontal flip and 90-degree rotation.
    """

    def __init__(
        self,
        photos: list[torch.Tensor],
        size: int = 32,
        scale: tuple[float, float] = (0.8, 1.25),
        flips: bool = True,
        rotations: bool = True,
    ) -> None:
        side = int(round(size * max(scale)))
        small = [tuple(p.shape[1:]) for p in photos if min(p.shape[1:]) < side]
        if not photos or small:
            raise ValueError(f"need photographs of at least {side} x {side} pixels, got sizes {small or 'none'}")
        self.photos, self.size, self.scale = photos, size, scale
        self.flips, self.rotations = flips, rotations
        self.image_shape = (int(photos[0].shape[0]), size, size)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        u = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
        which = torch.randint(0, len(self.photos), (batch,), generator=generator)
        flip = torch.randint(0, 2, (batch,), generator=generator)
        rot = torch.randint(0, 4, (batch,), generator=generator)
        out = []
        for i in range(batch):
            photo = self.photos[int(which[i])]
            side = int(round(self.size * float(np.exp(lo + (hi - lo) * float(u[i, 0])))))
            top = int(torch.randint(0, photo.shape[1] - side + 1, (1,), generator=generator))
            left = int(float(u[i, 1]) * (photo.shape[2] - side + 1))
            patch = photo[:, top : top + side, left : left + side]
            if side != self.size:
                patch = F.interpolate(
                    patch[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
                )[0].clamp(-1, 1)
            if self.flips and flip[i]:
                patch = patch.flip(-1)
            if self.rotations:
                patch = torch.rot90(patch, int(rot[i]), dims=(1, 2))
            out.append(patch)
        return torch.stack(out)


def make_sampler(data: dict) -> TensorSampler | PatchSampler:
    """Build the batch sampler described by the ``"data"`` entry of a training config.

    kinds: ``fashion_mnist`` (optional ``root``), ``skimage_photos`` (optional ``photos``),
    ``folder`` (``root``, optional ``channels``), ``synthetic`` (``n``, ``image_shape``, ``seed``:
    smooth random images, for tests).  The two patch kinds take ``size``, ``scale`` and
    ``max_side`` (shrink larger photographs first).
    """
    kind = data.get("kind")
    if kind == "fashion_mnist":
        images, _ = fashion_mnist("train", data.get("root"))
        return TensorSampler(pad_to_32(to_tensor_images(images)))
    if kind in ("skimage_photos", "folder"):
        if kind == "skimage_photos":
            photos = skimage_photos(tuple(data.get("photos", PHOTO_TRAIN)))
        else:
            photos = image_folder(data["root"], data.get("channels", 3))
        if data.get("max_side"):  # shrink large photographs so that a patch holds some structure
            photos = [shrink(p, int(data["max_side"])) for p in photos]
        return PatchSampler(photos, data.get("size", 32), tuple(data.get("scale", (0.8, 1.25))))
    if kind == "synthetic":
        c, h, w = data.get("image_shape", (1, 16, 16))
        g = torch.Generator().manual_seed(int(data.get("seed", 0)))
        coarse = torch.rand(int(data.get("n", 256)), c, max(h // 4, 1), max(w // 4, 1), generator=g)
        return TensorSampler(F.interpolate(coarse * 2 - 1, size=(h, w), mode="bilinear", align_corners=False))
    raise ValueError(f"unknown data kind {kind!r}; use fashion_mnist, skimage_photos, folder or synthetic")
