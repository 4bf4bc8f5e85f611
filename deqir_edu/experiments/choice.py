"""``sampler="auto"``: run the parallel sampler only where it is predicted faster than the sequential chain.

Notation (code name -> symbol)

    t1          t(B)        seconds of one network call on the B images of one chain state
    tT          t(T B)      seconds of one call on all T states of the chain (the parallel pass)
    passes      K           sequential passes the parallel solver is expected to need (``AUTO_PASS_FRACTION`` T)
    sequential  T t(B)      predicted seconds of DDNM (T calls one after the other)
    parallel    K t(T B)    predicted seconds of DeqIR (K passes over all states)

DeqIR does more work than DDNM (every pass evaluates many states), so it can only win where a call on
T B images costs little more than a call on B: on a GPU with room to spare, not on a CPU, where the cost
grows almost in proportion to the batch (book, chapter 6).  ``predict_sampler`` measures t(n) on the
model's own device once per (model, device, dtype, n) and keeps it for the process; chunked calls
(``max_batch``) are counted as ``ceil(T B / max_batch)`` calls of that size.  The result is the same at
equal quality: ``auto`` stops within 0.05 dB of the chain (``benchmarks/results/solver_grid_*.md``).
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

import torch

from ..core.checks import is_integer
from ..models.budget import model_device
from ..solvers.auto import AUTO_PASS_FRACTION

__all__ = ["SamplerChoice", "predict_sampler", "call_seconds"]

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {(device, dtype, n): seconds}


@dataclass(frozen=True)
class SamplerChoice:
    """The prediction behind ``sampler="auto"``; ``sampler`` is ``"deqir"`` or ``"ddnm"``."""

    steps: int
    batch: int
    t1: float
    tT: float
    passes: float
    sequential: float
    parallel: float
    sampler: str

    def describe(self) -> str:
        """One line: the choice and the times behind it."""
        return (
            f"sampler auto -> {self.sampler}: predicted {_s(self.sequential)} sequential (T = {self.steps} calls "
            f"of {_s(self.t1)}) against {_s(self.parallel)} parallel (~{self.passes:.0f} passes of {_s(self.tT)})"
        )


def _s(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def call_seconds(model: Any, n: int, like: torch.Tensor | None = None) -> float:
    """Seconds of one network call on ``n`` images (the faster of two after a warm-up), cached per process."""
    device = like.device if like is not None else model_device(model)
    dtype = like.dtype if like is not None else torch.float32
    key = (str(device), str(dtype), int(n))
    try:
        cache = _CACHE.setdefault(model, {})
    except TypeError:  # a model that cannot be weakly referenced: measured every time
        cache = {}
    if key not in cache:
        c, h, w = (int(v) for v in model.image_shape)
        x = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(0)).to(device, dtype)
        t = torch.full((n,), 500, dtype=torch.long, device=device)
        best = math.inf
        with torch.no_grad():
            model(x, t)  # warm-up: kernels, allocator
            for _ in range(2):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x, t)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best = min(best, time.perf_counter() - start)
        cache[key] = best
    return cache[key]


def predict_sampler(
    model: Any,
    steps: int,
    batch: int = 1,
    max_batch: int | None = None,
    like: torch.Tensor | None = None,
    passes: float | None = None,
) -> SamplerChoice:
    """Predict DDNM's and DeqIR's seconds for a chain of ``steps`` states on ``batch`` images; choose the faster.

    ``max_batch``: images per call (``models.ChunkedModel``; default no limit).  ``passes``: expected
    passes of the parallel solver (default ``AUTO_PASS_FRACTION * steps``, measured).  Ties go to DDNM.
    """
    if not is_integer(steps) or steps < 1 or not is_integer(batch) or batch < 1:
        raise ValueError(f"steps and batch must be positive integers, got {steps!r}, {batch!r}")
    steps, batch = int(steps), int(batch)
    cap = max_batch or steps * batch
    t1 = call_seconds(model, min(batch, cap), like) * math.ceil(batch / cap)
    whole = steps * batch
    tT = call_seconds(model, min(whole, cap), like) * math.ceil(whole / cap)
    k = max(1.0, AUTO_PASS_FRACTION * steps) if passes is None else float(passes)
    sequential, parallel = steps * t1, k * tT
    return SamplerChoice(steps, batch, t1, tT, k, sequential, parallel, "deqir" if parallel < sequential else "ddnm")
