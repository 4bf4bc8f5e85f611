"""Colour photographs for the photo priors: free scikit-image photographs, or any folder of images.

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    photo        one ``(C, H, W)`` float tensor in [-1, 1]; patches of it are the training images x_0
    names        scikit-image photograph names (keys of ``PHOTO_LICENCES``)
    channels     3 (RGB) or 1 (grey)

Only photographs whose licence is CC0 or public domain are used (``PHOTO_LICENCES``, as written in
their docstrings in ``skimage.data`` v0.26); ``PHOTO_TEST`` are held out for testing, ``PHOTO_TRAIN``
are the others.  ``image_folder`` reads any folder of PNG/JPEG images, for a prior of your own domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .transforms import to_tensor_images

__all__ = ["PHOTO_LICENCES", "PHOTO_TRAIN", "PHOTO_TEST", "skimage_photos", "image_folder"]

# scikit-image photograph -> licence, as written in its docstring in skimage.data (v0.26).
# ``colorwheel`` is left out: its docstring states no licence.
PHOTO_LICENCES: dict[str, str] = {
    "astronaut": "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
    "coffee": "CC0 (photographer Rachel Michetti, courtesy of Pikolo Espresso Bar)",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX launch photo of DSCOVR, released into the public domain)",
    "retina": "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)",
    "hubble_deep_field": "public domain (NASA / HubbleSite)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
}
PHOTO_TEST: tuple[str, ...] = ("coffee", "chelsea")  # held out: test crops only
PHOTO_TRAIN: tuple[str, ...] = tuple(n for n in PHOTO_LICENCES if n not in PHOTO_TEST)

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def skimage_photos(names: tuple[str, ...] | list[str] = PHOTO_TRAIN) -> list[torch.Tensor]:
    """The named scikit-image photographs as float tensors ``(3, H, W)`` in [-1, 1]."""
    try:
        import skimage.data  # noqa: PLC0415  (lazy: optional dependency)
    except ImportError as err:
        raise FileNotFoundError("the photographs come with scikit-image: `pip install scikit-image`") from err
    out = []
    for name in names:
        if name not in PHOTO_LICENCES:
            raise ValueError(f"unknown or non-free photograph {name!r}; choose from {sorted(PHOTO_LICENCES)}")
        out.append(to_tensor_images(getattr(skimage.data, name)()[None, ..., :3])[0])
    return out


def image_folder(root: str | Path, channels: int = 3) -> list[torch.Tensor]:
    """Every PNG/JPEG in ``root`` (recursively) as ``(channels, H, W)`` tensors in [-1, 1]; a file that is not
    a readable image is a ``ValueError`` that names it (all files are tried first)."""
    from PIL import Image  # noqa: PLC0415  (lazy: Pillow, needed only for a folder of images)

    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no .png/.jpg/.jpeg images found in {root}; give a folder of images")
    mode = "L" if channels == 1 else "RGB"
    images, bad = [], []
    for p in files:  # every file is tried: one error names the unreadable ones
        try:
            with Image.open(p) as img:
                images.append(to_tensor_images(np.asarray(img.convert(mode))[None])[0])
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append((p, " ".join(str(err).split())[:120]))
    if bad:
        raise ValueError(
            f"{len(bad)} of the {len(files)} images in {root} cannot be read ({bad[0][0]}: {bad[0][1]}); "
            "remove or replace them (PNG or JPEG files)"
        )
    return images
