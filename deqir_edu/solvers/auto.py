"""``auto``: the default parallel solver, chosen by measurement (``benchmarks/solver_grid.py``).

Notation (code name -> symbol; the map and the loop are those of ``freezing.py``)

    AUTO          -             the ``WindowConfig`` preset that ``auto`` runs
    tol           -             x_0 is returned when its estimated remaining error is below tol
    T             T             chain steps: after T passes the triangular system is solved exactly

What it is: ``window_solve`` with

* the Gaussian linearisation of each chain step (``form="gauss"``) as the first guess: Eq. (9) assumes that
  x_{0|k} moves one-to-one with x_k, which is right at low noise and badly wrong at high noise, where the
  network's estimate hardly depends on x_k; the Gaussian form moves between the two with the noise
  level (``FixedPointMap.linearisation``; data standard deviation ``sigma = 0.5`` in [-1, 1]);
* secant gains (``secant=True``): once a state has been evaluated twice, its step gains (null-space part and
  range part, per image) are re-fitted from the two evaluations, so the linearisation is the network's own
  (``freezing._secant_gains``).  This replaced triangular Anderson mixing (history 2, restarted): on the
  12 cells at T = 20 that both were measured on, 1-3 passes fewer in 11 and as many in one, and no history;
* freezing, so that at most T passes are needed and the result after T passes is the sequential chain
  exactly (never worse than Picard with freezing);
* stopping on the restored image (``stop="x0"``, ``x0_scale="null"``): x_0 is returned once its inputs are
  fresh and its estimated remaining error ``change / (1 - rate)`` is below ``tol``, the change measured
  relative to ``|Q x_0|`` (the part of x_0 the prior fills in) and the rate the largest of the last three observed
  ratios (one ratio can dip by chance and stop too early); the states near x_T need not be final.
  ``tol = 3e-3`` kept every image of the benchmark grid within 0.05 dB of the chain
  (``benchmarks/results/solver_grid_summary.md``, 8 images per cell, worst gap 0.028 dB): 6-18 passes at T = 20
  (mean 0.60 T), 14-71 at T = 100 (mean 0.37 T; 14-17 at eta = 0.85, 27-71 at eta <= 0.15); the first pass within
  0.05 dB comes 1-17 passes earlier, the price of a stopping rule that needs no reference.
  ``benchmarks/stop_rule.py`` replays other rules on recorded passes (``results/stop_rule.md``): every larger
  tol, one ratio, or the sharper estimate ``change * rate / (1 - rate)`` fails on photo32, x4 SR, T = 100, where
  x_0 settles while the states above it still move (0.21-0.95 dB); two ratios, or tol 1e-2 with a test on the
  residual of the states above x_0, stay within 0.03 dB but save only 0.01-0.03 T (measured on the same cells).

The paper's Algorithm 1 stays available as ``"anderson"`` (the book uses it by name).
"""

from __future__ import annotations

from typing import Any

import torch

from .freezing import WindowConfig, window_solve
from .trace import Callback, SolverTrace

__all__ = ["AUTO", "AUTO_TOL", "AUTO_PASS_FRACTION", "auto"]

AUTO = WindowConfig(form="gauss", sigma=0.5, secant=True, rates=3, x0_scale="null")
AUTO_TOL = 3e-3
# passes / T where auto stopped by itself: the mean over the 18 cells at T = 20 of
# benchmarks/results/solver_grid_summary.md (both embedded models, 3 tasks each, eta 0, 0.15, 0.85; at T = 100 the
# mean was 0.365, so this is the cautious side); sampler="auto" (experiments/choice.py) uses it
AUTO_PASS_FRACTION = 0.597


def auto(
    f: Any,
    init: torch.Tensor,
    max_iter: int | None = None,
    tol: float = AUTO_TOL,
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
    stop: str = "x0",
    **options: Any,
) -> tuple[torch.Tensor, SolverTrace]:
    """The default solver: ``window_solve`` with the ``AUTO`` preset, at most ``max_iter`` (default T) passes.

    Args:
        f: a ``sampling.FixedPointMap``; init: ``(T, B, C, H, W)`` (unused: the surrogate start is better).
        tol: relative tolerance of x_0's estimated remaining error (default ``AUTO_TOL``).
        stop: ``"x0"`` (default) or ``"per_state"`` (every state final).
        options: fields of ``WindowConfig`` to override, e.g. ``m=3``.
    Returns:
        ``(x_{0:T-1}, trace)``; ``trace.converged`` is False only if ``max_iter < T`` ran out first.
    """
    steps = f.steps if max_iter is None else max_iter
    return window_solve(
        f, init, max_iter=steps, tol=tol, config=AUTO, reference=reference, callback=callback, stop=stop, **options
    )
