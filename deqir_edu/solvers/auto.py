"""``auto``: the default parallel solver, chosen by measurement (``benchmarks/solver_grid.py``).

Notation (code name -> symbol; the map and the loop are those of ``freezing.py``)

    AUTO          -             the ``WindowConfig`` preset that ``auto`` runs
    tol           -             x_0 is returned when its estimated remaining error is below tol
    T             T             chain steps: after T passes the triangular system is solved exactly

What it is: ``window_solve`` with

* the Gaussian linearisation of each chain step (``form="gauss"``): Eq. (9) assumes that x_{0|k}
  moves one-to-one with x_k, which is right at low noise and badly wrong at high noise, where the
  network's estimate hardly depends on x_k; the Gaussian form moves between the two with the noise
  level (``FixedPointMap.linearisation``; data standard deviation ``sigma = 0.5`` in [-1, 1]);
* triangular Anderson mixing (``accel="taa"``, history m = 2: longer histories were less stable at eta = 0.85): each state mixes with weights fitted on
  the residuals of the states above it only, so the lower-triangular structure (Eq. (10)) is kept;
* the restart safeguard: when a pass makes the residual grow, the history is dropped and the next pass
  is a plain (linearised) step;
* freezing, so that at most T passes are needed and the result after T passes is the sequential chain
  exactly (never worse than Picard with freezing);
* stopping on the restored image (``stop="x0"``): x_0 is returned once its inputs are fresh and its
  estimated remaining error ``change / (1 - rate)`` is below ``tol``; the states near x_T need not be
  final.  ``tol = 3e-3`` (relative) kept every image of the benchmark grid within 0.05 dB of the chain
  (``benchmarks/results/solver_grid_summary.md``: 9-20 passes at T = 20, mean 0.675 T; the first pass within
  0.05 dB comes 1-6 passes earlier, the price of a stopping rule that needs no reference).  It stopped no later
  than the best named solver in 11 of the 12 cells, one pass later in one (photo32, sr4, eta = 0: 20 against 19).

The paper's Algorithm 1 stays available as ``"anderson"`` (the book uses it by name).
"""
from __future__ import annotations

from typing import Any

import torch

from .freezing import WindowConfig, window_solve
from .trace import Callback, SolverTrace

__all__ = ["AUTO", "AUTO_TOL", "AUTO_PASS_FRACTION", "auto"]

AUTO = WindowConfig(form="gauss", sigma=0.5, accel="taa", m=2, restart=True)
AUTO_TOL = 3e-3
# passes / T where auto stopped by itself: the mean over the 12 cells of benchmarks/results/solver_grid_summary.md
# (both embedded models, 2 tasks each, eta 0, 0.15, 0.85, T = 20); sampler="auto" (experiments/choice.py) uses it
AUTO_PASS_FRACTION = 0.675


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
    return window_solve(f, init, max_iter=steps, tol=tol, config=AUTO, reference=reference, callback=callback,
                        stop=stop, **options)
