"""Models and test images for experiments: a zoo model or the exact prior, with the frozen test set
of its shape or a folder of the user's images.

Notation (code name -> meaning): ``gmm-fashion32`` is the exact Gaussian-mixture prior with 256
components fitted to 4,000 Fashion-MNIST training images (``diffusion.fashion_mixture()``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.checks import is_integer
from ..datasets import fashion_subset, fit_to, image_folder, load_testset, pad_to_32, to_tensor_images
from ..diffusion.prior import fashion_mixture
from ..models.zoo import load_model

__all__ = ["load_for_eval"]


def load_for_eval(
    name: str, n: int, images: str | None = None, device: str | None = None, bf16: bool = False
) -> tuple[Any, torch.Tensor, str]:
    """``(model, test images (n, C, H, W), description of the images)`` for ``deqir-edu eval``.

    ``name``: a zoo name or checkpoint path (``models.load_model``), or ``gmm-fashion32`` (module
    docstring).  Images: the folder ``images`` (PNG/JPEG, centre-cropped and resized to the model),
    else the frozen test set of the model's shape (fashion32: the first Fashion-MNIST test images,
    padded to 32 x 32).
    """
    if not is_integer(n) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    n = int(n)
    if name == "gmm-fashion32":
        model: Any = fashion_mixture()
    else:
        model = load_model(name, device=device or "cpu")
        if bf16:
            model.autocast_dtype = torch.bfloat16
    c, h, w = (int(v) for v in model.image_shape)
    dtype = torch.float64 if name == "gmm-fashion32" else torch.float32
    if images is not None:
        pics = image_folder(images, c)
        x = torch.stack([fit_to(p, h, w) for p in pics[:n]])
        source = f"folder {images}"
    elif (c, h, w) == (1, 32, 32):  # the first n test images: shipped up to 100, else the full test split
        x, source = pad_to_32(to_tensor_images(fashion_subset("test", n)[0])), "testset fashion32"
    elif (c, h, w) == (3, 32, 32):
        x, source = load_testset("photo32", n), "testset photo32"
    else:
        raise ValueError(f"no frozen test set for images of shape {(c, h, w)}; pass --images DIR")
    return model, x.to(dtype), source
