"""``auto``: the default parallel solver (beyond the paper), chosen by measurement (``benchmarks/solver_grid.py``).

Notation (code name -> symbol; the map and the loop are those of ``freezing.py``)

    AUTO          -             the ``WindowConfig`` preset that ``auto`` runs
    tol           -             x_0 is returned when its estimated remaining error is below tol
    T             T             chain steps: after T passes the triangular system is solved exactly

What it is: ``window_solve`` with

* the Gaussian linearisation of each chain step (``form="gauss"``) as the first guess: Eq. (9) assumes that
  x_{0|k} moves one-to-one with x_k, right at low noise and badly wrong at high noise
  (``linearised.linearisation``; data standard deviation ``sigma = 0.5`` in [-1, 1]);
* secant gains (``secant=True``): once a state has been evaluated twice, its step gains are re-fitted from
  the two evaluations, so the linearisation is the network's own (``linearised.secant_gains``);
* freezing, so that at most T passes are needed and the result after T passes is the sequential chain
  exactly (never worse than Picard with freezing);
* stopping on the restored image (``stop="x0"``, ``x0_scale="null"``): x_0 is returned once its inputs are
  fresh and its estimated remaining error ``change / (1 - rate)`` is below ``tol``, the change measured
  relative to ``|Q x_0|`` and the rate the largest of the last three observed ratios.

How it was chosen, and what it measures on the embedded models (passes, gap to the chain, the stopping
rules that were rejected): ``benchmarks/results/solver_grid_summary.md`` and ``results/stop_rule.md``.
The paper's Algorithm 1 stays available as ``"anderson"``.
"""

from __future__ import annotations

import torch

from .contract import ChainMap
from .freezing import WindowConfig, window_solve
from .trace import Callback, SolverTrace

__all__ = ["AUTO", "AUTO_TOL", "AUTO_PASS_FRACTION", "auto"]

AUTO = WindowConfig(form="gauss", sigma=0.5, secant=True, rates=3, x0_scale="null")
AUTO_TOL = 3e-3  # calibrated in benchmarks/stop_rule.py
AUTO_PASS_FRACTION = 0.597  # passes / T of auto's own stops at T = 20 (benchmarks/results/solver_grid_summary.md)


def auto(
    f: ChainMap,
    init: torch.Tensor,
    *,
    max_iter: int | None = None,
    tol: float = AUTO_TOL,
    stop: str = "x0",
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
    config: WindowConfig = AUTO,
) -> tuple[torch.Tensor, SolverTrace]:
    """The default solver: ``window_solve`` with the ``AUTO`` preset, at most ``max_iter`` (default T) passes.

    Args:
        f: the chain map; init: ``(T, B, C, H, W)`` (unused: the surrogate start is better).
        tol: relative tolerance of x_0's estimated remaining error (default ``AUTO_TOL``).
        stop: ``"x0"`` (default) or ``"per_state"`` (every state final).
        config: the preset (e.g. ``dataclasses.replace(AUTO, sigma=0.3)``).
    Returns:
        ``(x_{0:T-1}, trace)``; ``trace.converged`` is False only if ``max_iter < T`` ran out first.
    """
    steps = f.steps if max_iter is None else max_iter
    return window_solve(
        f, init, max_iter=steps, tol=tol, stop=stop, reference=reference, callback=callback, config=config
    )
