"""Images of any size by tiles: each tile restored by ``experiments.restore``, blended, projected once more.

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
from typing import Any

import torch

from ..core.checks import check_finite
from ..experiments.runner import restore
from ..operators import TASKS, Inpainting, make_operator, observation_shape, sr_scale

__all__ = ["restore_tiled", "tile_starts"]


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
