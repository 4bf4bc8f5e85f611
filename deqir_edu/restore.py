"""One-call restoration: image files in and out, sampler choice, and images of any size by tiles.

Notation (code name -> paper symbol)

    y          y            the observation A x (for SR: the small image; colorize: the grey image)
    x          x            the restored image, (B, C, H, W) in [-1, 1]
    op         A, A^+       the degradation of the task (``operators.make_operator``)
    tile       -            a window of the model's size (h, w) in image space
    stride     -            distance between tiles, h - overlap (a multiple of the SR scale)

Images larger than the model are cut into overlapping tiles of the model's size (paper Sec. 5.8,
"Arbitrary size"; as DDNM and SwinIR do).  Each tile is restored with its own operator (its part of
the mask for inpainting), the tiles are blended with a smooth window, and the blend is projected
once more with the full-size operator, ``A^+ y + (I - A^+ A) x_blend`` (Eq. (5)), so the result is
exactly consistent with ``y`` and the range part of every seam is the measured one.
Tile borders of blur operators see zero padding instead of the neighbouring pixels; the overlap
and the final projection hide most of that.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._checks import check_finite
from .operators import TASKS, Inpainting, make_operator

__all__ = ["load_image", "save_image", "sr_scale", "bicubic_upsample", "restore", "restore_tiled", "tile_starts", "observation_shape"]


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


def sr_scale(task: str) -> int:
    """Spatial factor between image and observation: 4 for ``"sr4"`` / ``"sr4-bicubic"``, else 1."""
    if task.startswith("sr"):
        return int(task[2:].split("-")[0])
    return 1


def bicubic_upsample(y: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical SR baseline: bicubic interpolation of ``y`` ``(B, C, h, w)`` to ``(B, C, scale h, scale w)``,
    clipped to ``[-1, 1]``. Unlike ``A^+ y`` it is smooth, and not consistent with ``y``."""
    return F.interpolate(y, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


def observation_shape(task: str, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape ``(C_y, H_y, W_y)`` of ``y`` for ``task`` on images of ``image_shape``."""
    c, h, w = image_shape
    s = sr_scale(task)
    cy = 1 if task in ("colorize", "old-photo") else c
    return cy, h // s, w // s


def restore(
    model: Any,
    op: Any,
    y: torch.Tensor,
    sampler: str = "deqir",
    steps: int = 20,
    eta: float = 0.15,
    iters: int = 15,
    generator: torch.Generator | None = None,
    clip: bool = False,
    solver: str = "anderson",
    samples: int = 1,
) -> torch.Tensor:
    """Restore ``y`` ``(B, C_y, H_y, W_y)`` with ``sampler`` in ``{"deqir", "ddnm", "pinv"}``; returns ``(B, C, H, W)``.

    One run of a diffusion sampler is one draw from (an approximation of) the posterior p(x | y).
    ``samples = k > 1`` returns the mean of k independent runs, an estimate of the posterior mean
    E[x | y], which is the estimate with the least expected squared error, so the highest PSNR. For an
    exact sampler the expected squared error of one draw is twice that of E[x | y] (-3 dB), and the
    mean of k draws has (1 + 1/k) times it.  Each run satisfies A x = y, and so does their mean (A is linear).
    The mean is blurrier than a single draw: use it when PSNR matters, one draw when detail does.
    """
    from .samplers import ddnm_sample, deqir_sample

    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer (runs to average), got {samples!r}")
    if sampler == "pinv":
        return op.A_pinv(y)
    if samples > 1:  # the k runs as one batch (k * B, ...), then the mean over k
        runs = restore(model, op, y.repeat(samples, *([1] * (y.dim() - 1))), sampler, steps, eta, iters,
                       generator, clip, solver)
        return runs.reshape(samples, y.shape[0], *runs.shape[1:]).mean(0)
    if sampler == "ddnm":
        return ddnm_sample(model, op, y, steps=steps, eta=eta, generator=generator, clip=clip)
    if sampler == "deqir":
        return deqir_sample(model, op, y, steps=steps, eta=eta, generator=generator, clip=clip,
                            solver=solver, max_iter=iters).x0
    raise ValueError(f"unknown sampler {sampler!r}; use 'deqir', 'ddnm' or 'pinv'")


def tile_starts(size: int, tile: int, overlap: int, scale: int = 1) -> tuple[list[int], int]:
    """Origins of the tiles along one side of ``size`` pixels, and the overlap actually used.

    The overlap is rounded up to a multiple of the SR ``scale`` (at least ``scale``); the tiles step
    by ``tile - overlap`` and the last one is flush with the border.
    """
    overlap = max(scale, int(math.ceil(overlap / scale)) * scale)
    stride = tile - overlap
    if stride <= 0 or stride % scale:
        raise ValueError(f"overlap {overlap} must be smaller than the tile {tile} and a multiple of {scale}")
    if size < tile:
        raise ValueError(f"image side {size} is smaller than the model's tile {tile}; upscale or pad the image")
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts, overlap


def _window(h: int, w: int, overlap: int, dtype: torch.dtype) -> torch.Tensor:
    """Blending weights ``(h, w)``: 1 inside, a linear ramp over ``overlap`` pixels at the borders."""
    def ramp(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=dtype)
        edge = torch.minimum(i + 1, n - i).clamp(max=max(overlap, 1)) / max(overlap, 1)
        return edge
    return ramp(h)[:, None] * ramp(w)[None, :]


def _mask_of(op: Any) -> torch.Tensor | None:
    """The (H, W) inpainting mask inside ``op`` (plain or composed with colorization), if any."""
    for part in (op, getattr(op, "inner", None)):
        if isinstance(part, Inpainting):
            return part.mask
    return None


def restore_tiled(
    model: Any,
    task: str,
    y: torch.Tensor,
    image_hw: tuple[int, int],
    overlap: int = 8,
    batch: int = 64,
    generator: torch.Generator | None = None,
    op_options: dict[str, Any] | None = None,
    **restore_kwargs: Any,
) -> torch.Tensor:
    """Restore an observation ``y`` of an image of size ``image_hw`` larger than the model.

    Args:
        y: ``(1, C_y, H_y, W_y)`` observation of the full image (``observation_shape``).
        image_hw: ``(H, W)`` of the image to produce; multiples of the SR scale.
        overlap: pixels shared by neighbouring tiles (made a multiple of the SR scale).
        op_options: options of ``make_operator`` for the full image (e.g. ``mask=``).
    Returns:
        ``(1, C, H, W)``: the blended tiles, projected with the full-size operator (Eq. (5)).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
    c, h, w = (int(v) for v in model.image_shape)
    H, W = (int(v) for v in image_hw)
    s = sr_scale(task)
    if H % s or W % s:
        raise ValueError(f"image size {(H, W)} is not divisible by the SR scale {s}; crop it to a multiple of {s}")
    if y.dim() != 4 or y.shape[0] != 1:
        raise ValueError(f"y must have shape (1, C, H, W) for tiled restoration, got {tuple(y.shape)}")
    check_finite(y, "y")
    full_op = make_operator(task, (c, H, W), **(op_options or {}))
    expected = observation_shape(task, (c, H, W))
    if tuple(y.shape[1:]) != expected:
        raise ValueError(f"y has shape {tuple(y.shape[1:])} but task {task!r} on a {(c, H, W)} image gives {expected}")
    rows, overlap = tile_starts(H, h, overlap, s)
    cols, _ = tile_starts(W, w, overlap, s)
    mask = _mask_of(full_op)
    tiles = [(i, j) for i in rows for j in cols]
    out = torch.zeros(1, c, H, W, dtype=y.dtype, device=y.device)
    weight = torch.zeros(1, 1, H, W, dtype=y.dtype, device=y.device)
    win = _window(h, w, overlap, y.dtype).to(y.device)

    def y_tile(i: int, j: int) -> torch.Tensor:
        return y[..., i // s : (i + h) // s, j // s : (j + w) // s]

    if mask is None:  # the same operator for every tile: restore them in batches
        op = make_operator(task, (c, h, w), **{k: v for k, v in (op_options or {}).items() if k != "mask"})
        for b in range(0, len(tiles), batch):
            group = tiles[b : b + batch]
            ys = torch.cat([y_tile(i, j) for i, j in group])
            xs = restore(model, op, ys, generator=generator, **restore_kwargs)
            for (i, j), xt in zip(group, xs):
                out[..., i : i + h, j : j + w] += win * xt
                weight[..., i : i + h, j : j + w] += win
    else:  # each tile has its own part of the mask
        base = task if task != "old-photo" else "old-photo"
        for i, j in tiles:
            op = make_operator(base, (c, h, w), mask=mask[i : i + h, j : j + w])
            xt = restore(model, op, y_tile(i, j), generator=generator, **restore_kwargs)
            out[..., i : i + h, j : j + w] += win * xt[0]
            weight[..., i : i + h, j : j + w] += win
    blend = out / weight
    return full_op.A_pinv(y) + blend - full_op.A_pinv(full_op.A(blend))  # Eq. (5) on the full image
