"""Picard iteration for ``x = F(x)``: ``x^{(n)} = F(x^{(n-1)})`` (DeqIR Eq. (11) without acceleration).

Notation (code name -> paper symbol): ``x``, ``fx``, ``passes`` as ``trace.py``.  For the lower-triangular
F of DeqIR (Eq. (10)) the states x_{T-n..T-1} are exact after n passes, so ``max_iter = T`` is exact.
"""

from __future__ import annotations

import torch

from .contract import MapFn
from .trace import Callback, SolverTrace, check_solver_args, record_iteration

__all__ = ["picard"]


def picard(
    f: MapFn,
    init: torch.Tensor,
    *,
    max_iter: int = 15,
    tol: float = 1e-3,
    stop: str = "x0",
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
) -> tuple[torch.Tensor, SolverTrace]:
    """Picard iteration ``x^{(n)} = F(x^{(n-1)})``.

    Args:
        f: the map, ``(T, B, ...) -> (T, B, ...)``.
        init: ``x^{(0)}``, shape ``(T, B, ...)``.
        max_iter: applications of F; for a lower-triangular F with T states, ``max_iter = T`` is exact.
        tol, stop: stop as soon as the rule's residual at ``x^{(n-1)}`` is ``< tol``.
        reference: optional x_0 ``(B, ...)`` whose error is traced.
    Returns:
        ``(x^{(n)}, trace)`` where n is the number of iterations done.
    """
    check_solver_args(init, max_iter, tol, stop, reference)
    trace = SolverTrace(stop=stop)
    x, prev_x0 = init, None
    for _ in range(max_iter):
        fx = f(x)
        record_iteration(trace, f, x, fx, prev_x0, reference, callback)
        x, prev_x0 = fx, fx[0]
        if trace.criterion() < tol:
            trace.converged = True
            break
    return x, trace
