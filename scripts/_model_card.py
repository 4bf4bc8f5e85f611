"""What the model-card scripts share: DDNM over T x eta x clipping with the same noises per T."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch

import deqir_edu as dq


def ddnm_grid(
    model: Any,
    op: Any,
    y: torch.Tensor,
    shape: tuple[int, ...],
    steps: Sequence[int],
    etas: Sequence[float] = (0.15, 0.85),
) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
    """Sequential DDNM for every T in ``steps``, eta in ``etas``, without and with clipping.

    All rows of one T share the noises (seed 0, float64).  Yields ``({"T", "eta", "clip", "seconds"}, x0)``.
    """
    for T in steps:
        noises = dq.draw_noises(tuple(shape), T, torch.Generator().manual_seed(0), dtype=torch.float64)
        for eta in etas:
            for clip in (False, True):
                t0 = time.perf_counter()
                x0 = dq.ddnm_sample(dq.ClippedModel(model) if clip else model, op, y, steps=T, eta=eta, noises=noises)
                yield {"T": T, "eta": eta, "clip": clip, "seconds": round(time.perf_counter() - t0, 1)}, x0
