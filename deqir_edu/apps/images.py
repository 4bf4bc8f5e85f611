"""Image files in and out: PNG/JPEG/... as ``(1, C, H, W)`` tensors in ``[-1, 1]``, and 8-bit PNGs back.

Notation: none (no paper symbols); images are ``(B, C, H, W)`` in ``[-1, 1]`` as everywhere.

What ``load_image`` does with the files people have (each case is said in a note, or refused):

    EXIF orientation    applied (the image is turned as a photo viewer shows it)
    16-bit / 32-bit     scaled by their own range (a 16-bit PNG is not clipped to white)
    palette, CMYK, LA   converted to grey or RGB
    alpha               composited on white (note); transparent pixels have no colour to restore
    RGB for a grey model, grey for a colour model: converted (note)
    not an image, truncated, empty, a folder, too large (decompression bomb): ``ValueError``, one line
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.files import atomic_path

__all__ = ["load_image", "save_image", "load_mask", "MAX_PIXELS"]

MAX_PIXELS = 64_000_000  # larger images are refused (Pillow's bomb guard is 89 M pixels and only warns)


def _open(path: str | Path, what: str):
    """Open ``path`` with Pillow, EXIF orientation applied and pixels loaded; one-line errors."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give an image file (PNG, JPEG, ...)")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(
                    f"{what} {path} is {img.width} x {img.height} pixels, more than "
                    f"{MAX_PIXELS:,}; crop or downscale it first"
                )
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(
            f"{what} {path} has more pixels than Pillow opens safely (more than {MAX_PIXELS:,}, a guard "
            "against decompression bombs); crop or downscale it first"
        ) from err
    except UnidentifiedImageError as err:
        raise ValueError(f"{what} {path} is not an image Pillow can read; give a PNG or JPEG file") from err
    except PermissionError as err:
        raise ValueError(f"cannot read {what} {path}: permission denied") from err
    except (OSError, SyntaxError, EOFError) as err:
        raise ValueError(f"{what} {path} is damaged or truncated ({err}); give a complete image file") from err
    orientation = img.getexif().get(0x0112, 1)  # EXIF tag 274 "Orientation"; 1 = upright
    notes = [f"EXIF orientation {orientation} applied"] if orientation not in (1, None) else []
    return ImageOps.exif_transpose(img), notes


def _to_array(img, notes: list[str]) -> np.ndarray:
    """Pillow image -> ``(H, W, C)`` float32 in [0, 1] with C = 1 or 3, any bit depth."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return (np.asarray(img, dtype=np.float32) / 65535.0)[..., None]
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() <= 65535 else float(2**32 - 1)
        return (arr / top).astype(np.float32)[..., None]
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        top = 1.0 if arr.max() <= 1.0 else 255.0 if arr.max() <= 255.0 else 65535.0
        return np.clip(arr / top, 0, 1)[..., None]
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba, dtype=np.float32)[..., 3:] / 255.0
        if alpha.min() < 1.0:
            notes.append(f"alpha composited on white ({(alpha < 1).mean():.0%} of the pixels are transparent)")
        rgb = np.asarray(rgba, dtype=np.float32)[..., :3] / 255.0
        rgb = rgb * alpha + (1.0 - alpha)
        return rgb[..., :1] if img.mode in ("LA", "La", "PA") and _is_grey(rgb) else rgb
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB" if img.mode not in ("1",) else "L")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., None] if arr.ndim == 2 else arr


def _is_grey(rgb: np.ndarray) -> bool:
    return bool(np.allclose(rgb[..., 0], rgb[..., 1]) and np.allclose(rgb[..., 1], rgb[..., 2]))


def load_image(path: str | Path, channels: int, notes: list[str] | None = None) -> torch.Tensor:
    """Read an image file as ``(1, channels, H, W)`` float32 in ``[-1, 1]``.

    ``channels`` 1 (grey) or 3 (RGB).  What was done to the file (EXIF orientation, bit depth,
    alpha, colour <-> grey) is appended to ``notes`` (a list) as short phrases.  Raises ``ValueError``
    with one line for files that are not images, truncated, empty, folders or too large.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    notes = [] if notes is None else notes
    img, opened = _open(path, "input image")
    notes += opened
    depth = {"I;16": "16-bit", "I;16B": "16-bit", "I;16L": "16-bit", "I": "32-bit", "F": "float"}.get(img.mode)
    if depth:
        notes.append(f"{depth} image scaled to 8-bit range")
    arr = _to_array(img, notes)
    if arr.shape[-1] == 3 and channels == 1:
        if not _is_grey(arr):
            notes.append("colour image converted to grey for a grey model")
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]  # ITU-R 601, as Pillow's "L"
    elif arr.shape[-1] == 1 and channels == 3:
        notes.append("grey image repeated into 3 channels for a colour model")
        arr = np.repeat(arr, 3, axis=-1)
    t = torch.from_numpy(np.ascontiguousarray(arr * 2.0 - 1.0, dtype=np.float32)).permute(2, 0, 1)[None]
    return t.contiguous()


_GREY = (0.2, 0.8)  # a mask pixel strictly between these is neither black nor white
_MAX_GREY = 0.1  # a mask with more grey pixels than this fraction is a photo, not a mask


def load_mask(path: str | Path, hw: tuple[int, int], notes: list[str] | None = None) -> torch.Tensor:
    """Read a mask image as ``(H, W)`` float32: 1 = pixel kept (observed), 0 = missing (to fill in).

    Black pixels are the damaged region; white (or any value above half) are kept, as the masks of
    DDNM/RePaint.  The mask must have the image's size ``hw``; a transparent pixel counts as missing.
    A mask is black and white: a few grey pixels (anti-aliased or JPEG edges) are thresholded at half
    (said in ``notes``); more than 10 % grey pixels is a photo given as the mask (``ValueError``).
    """
    img, _ = _open(path, "mask")
    notes = [] if notes is None else notes
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"), dtype=np.float32)[..., 3] / 255.0
        value = np.asarray(img.convert("L"), dtype=np.float32) / 255.0 * alpha
    else:
        value = _to_array(img, notes).mean(-1)
    if value.shape != tuple(hw):
        raise ValueError(
            f"mask {path} is {value.shape[1]} x {value.shape[0]} but the image is {hw[1]} x {hw[0]}; "
            "draw the mask at the image's size (black = missing, white = kept)"
        )
    _check_binary(value, path, notes)
    mask = torch.from_numpy((value > 0.5).astype(np.float32))
    if float(mask.mean()) in (0.0, 1.0):
        raise ValueError(
            f"mask {path} is all {'white' if float(mask.mean()) else 'black'}: nothing to "
            f"{'fill in' if float(mask.mean()) else 'keep'}; black = missing, white = kept"
        )
    return mask


def _check_binary(value: np.ndarray, path: str | Path, notes: list[str]) -> None:
    """A mask is black and white: refuse a photo, note a thresholded grey edge."""
    grey = float(((value > _GREY[0]) & (value < _GREY[1])).mean())
    if grey > _MAX_GREY:
        raise ValueError(
            f"mask {path} looks like a photo, not a mask: {grey:.0%} of its pixels are grey (neither black nor "
            "white); draw the mask in black (missing) and white (kept) only"
        )
    if grey > 0:
        notes.append(f"mask {Path(path).name}: {grey:.1%} grey pixels thresholded at half (above = kept)")


def save_image(x: torch.Tensor, path: str | Path) -> Path:
    """Write ``(1, C, H, W)`` or ``(C, H, W)`` in ``[-1, 1]`` as an 8-bit PNG (C = 1 or 3), atomically."""
    x = x.detach().float().cpu()
    x = x[0] if x.dim() == 4 else x
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(tmp, format="PNG")
    return path
