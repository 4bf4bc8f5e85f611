"""The frozen test sets in ``data/testsets/`` (never used for training).

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    testset      a frozen set of images x_0, ``(N, C, H, W)`` float in [-1, 1]
    name         'fashion32', 'photo32' or 'photo256' (``data/testsets/README.md`` lists their content)
    n            how many of the first images to load (None: all)
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.paths import data_dir
from .transforms import pad_to_32, to_tensor_images

__all__ = ["load_testset"]

# frozen test sets: name -> (file in data/testsets/, pad 28 -> 32)
_TESTSETS = {
    "fashion32": ("fashion_mnist_test100.npz", True),
    "photo32": ("photo_test_crops.npz", False),
    "photo256": ("photo_test_256.npz", False),
}


def load_testset(name: str, n: int | None = None) -> torch.Tensor:
    """A frozen test set ``(N, C, H, W)`` in [-1, 1]: 'fashion32' (first 100 Fashion-MNIST test
    images, padded to 32 x 32), 'photo32' (32 x 32 crops of held-out photographs) or 'photo256'."""
    if name not in _TESTSETS:
        raise ValueError(f"unknown test set {name!r}; choose from {sorted(_TESTSETS)}")
    file, pad = _TESTSETS[name]
    path = data_dir() / "testsets" / file
    if not path.is_file():
        raise FileNotFoundError(f"test set file {path} is missing; set DEQIR_EDU_DATA to the repo's data/ folder")
    with np.load(path) as z:
        images = z["images"]
    if n is not None:
        if not 1 <= n <= len(images):
            raise ValueError(f"n must be between 1 and {len(images)} for test set {name!r}, got {n}")
        images = images[:n]
    x = to_tensor_images(images)
    return pad_to_32(x) if pad else x
