"""Fixed-point solvers for ``x = F(x)``: Picard iteration and Anderson acceleration (Algorithm 1).

Notation (code name -> paper symbol, DeqIR Eq. (11) and Algorithm 1)

    x, init        x_{0:T-1}^{(k)}     iterate, a stack (T, B, ...) with x[j] = chain state x_j
    fx             F(x^{(k)})          one application of the map
    g              g_k = F(x) - x      residual
    m              m                   Anderson history length
    G              G_k                 the last m_k residuals, one row each, per image
    alpha          alpha_k             mixing weights, sum_i alpha_i = 1
    lam, beta      lambda, beta        regularisation of G G^T and mixing (beta = 1: pure F mixing)

Stopping rules (``stop=``), all relative residuals ``||F(x)_j - x_j|| / (||F(x)_j|| + 1e-5)``:

    "x0"         the residual of state 0 (the restored image), worst image of the batch
    "per_state"  the largest residual over all states and images
    "global"     one norm over everything, ``||F(x) - x|| / (||F(x)|| + 1e-5)``, as in the official code

The global rule is dominated by the large noisy states near x_T; it can stop while x_0 is still far
from the fixed point (``tests/test_solvers.py`` shows a case), hence the default ``"x0"``.

Both solvers count one iteration per application of F (``max_iter`` = applications of F) and return
``(solution, trace)``; the solution is the last ``F(x)`` computed, which for the lower-triangular F
of DeqIR is never worse than ``x``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["SolverTrace", "picard", "anderson", "STOP_RULES"]

STOP_RULES = ("x0", "per_state", "global")


@dataclass
class SolverTrace:
    """Per-iteration record of a fixed-point solve (one entry per application of F).

    Attributes:
        residual: global relative residual ``||F(x) - x|| / ||F(x)||``.
        state_residual: ``(T,)`` tensors, relative residual of each state (worst image of the batch).
        x0_change: relative change of the returned x_0 since the previous iteration (``nan`` at first).
        x0_error: max-abs error of the returned x_0 to ``reference`` (empty without a reference).
        nfe: network evaluations so far (``f.nfe`` if the map counts them, else applications of F).
        converged, iterations, stop: outcome, number of applications of F, the rule used.
    """

    residual: list[float] = field(default_factory=list)
    state_residual: list[torch.Tensor] = field(default_factory=list)
    x0_change: list[float] = field(default_factory=list)
    x0_error: list[float] = field(default_factory=list)
    nfe: list[int] = field(default_factory=list)
    converged: bool = False
    iterations: int = 0
    stop: str = "x0"

    def criterion(self) -> float:
        """The last value of the quantity that the stopping rule compares to ``tol``."""
        if self.stop == "global":
            return self.residual[-1]
        if self.stop == "per_state":
            return float(self.state_residual[-1].max())
        return float(self.state_residual[-1][0])


def _record(trace: SolverTrace, f: Callable, x: torch.Tensor, fx: torch.Tensor, prev_x0: torch.Tensor | None,
            reference: torch.Tensor | None, callback: Callable | None) -> None:
    """Append one iteration (the residual at ``x``, the candidate ``fx``) to ``trace``."""
    g = (fx - x).flatten(2)  # (T, B, N)
    fnorm = fx.flatten(2).norm(dim=2)  # (T, B)
    trace.residual.append(float(g.norm() / (fx.norm() + 1e-5)))
    trace.state_residual.append((g.norm(dim=2) / (fnorm + 1e-5)).max(dim=1).values.detach().cpu())
    x0 = fx[0]
    trace.x0_change.append(float("nan") if prev_x0 is None else float((x0 - prev_x0).norm() / (x0.norm() + 1e-5)))
    if reference is not None:
        trace.x0_error.append(float((x0 - reference).abs().max()))
    trace.iterations += 1
    trace.nfe.append(int(getattr(f, "nfe", trace.iterations)))
    if callback is not None:
        callback({"iteration": trace.iterations, "states": fx, "residual": trace.residual[-1],
                  "state_residual": trace.state_residual[-1], "criterion": trace.criterion()})


def _check_args(init: torch.Tensor, max_iter: int, tol: float, stop: str, reference: torch.Tensor | None) -> None:
    if not isinstance(init, torch.Tensor) or init.dim() < 2:
        raise ValueError("the initial iterate must be a stack of shape (T, B, ...) with x[j] = state j")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stopping rule {stop!r}; use one of {STOP_RULES}")
    if reference is not None and tuple(reference.shape) != tuple(init.shape[1:]):
        raise ValueError(f"reference must have the shape of x_0, {tuple(init.shape[1:])}, got {tuple(reference.shape)}")


def picard(
    f: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    max_iter: int = 15,
    tol: float = 1e-3,
    stop: str = "x0",
    reference: torch.Tensor | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
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
    _check_args(init, max_iter, tol, stop, reference)
    trace = SolverTrace(stop=stop)
    x, prev_x0 = init, None
    for _ in range(max_iter):
        fx = f(x)
        _record(trace, f, x, fx, prev_x0, reference, callback)
        x, prev_x0 = fx, fx[0]
        if trace.criterion() < tol:
            trace.converged = True
            break
    return x, trace


def anderson(
    f: Callable[[torch.Tensor], torch.Tensor],
    init: torch.Tensor,
    m: int = 5,
    lam: float = 1e-3,
    beta: float = 1.0,
    max_iter: int = 15,
    tol: float = 1e-3,
    stop: str = "x0",
    reference: torch.Tensor | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    relative_lam: bool = False,
) -> tuple[torch.Tensor, SolverTrace]:
    """Anderson acceleration, Algorithm 1, with per-image mixing weights.

    Each image b of the batch is its own problem (its T states flattened into one vector).  Given the
    last ``n = min(m, k)`` iterates ``X_i`` and ``F_i = F(X_i)``, with ``G = F - X`` (rows), solve the
    bordered system (Lagrange form of ``min ||G^T alpha|| s.t. 1^T alpha = 1``, regularised)::

        [[0, 1^T], [1, G G^T + lam I]] [nu; alpha] = [1; 0]                       (Algorithm 1, line 7)

    and move to ``x = beta sum_i alpha_i F_i + (1 - beta) sum_i alpha_i X_i`` (line 9).  The first
    two iterates are ``init`` and ``F(init)`` (lines 1-2).

    Args:
        f, init, max_iter, tol, stop, reference, callback: as for ``picard``.
        m: history length; lam: regularisation; beta: mixing (official defaults 5, 1e-3, 1).
        relative_lam: use ``lam * max_i ||G_i||^2`` instead of ``lam``.  The official absolute lam
            suits 256x256 images; on tiny images near convergence ``G G^T << lam`` and Anderson
            degrades to averaging the history (``tests/test_solvers.py`` shows this on a linear map).
    Returns:
        ``(F(x_last), trace)``.
    """
    _check_args(init, max_iter, tol, stop, reference)
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"the history length m must be a positive integer, got {m!r}")
    T, B = init.shape[:2]
    flat = lambda v: v.transpose(0, 1).reshape(B, -1)  # (T, B, ...) -> (B, N): one vector per image
    unflat = lambda v: v.reshape(B, T, *init.shape[2:]).transpose(0, 1)
    trace = SolverTrace(stop=stop)
    X: list[torch.Tensor] = []  # history of iterates, each (B, N)
    Fx: list[torch.Tensor] = []  # history of F(iterate)
    x, prev_x0, fx = init, None, init
    for k in range(max_iter):
        fx = f(x)
        _record(trace, f, x, fx, prev_x0, reference, callback)
        prev_x0 = fx[0]
        if trace.criterion() < tol:
            trace.converged = True
            break
        X.append(flat(x))
        Fx.append(flat(fx))
        X, Fx = X[-m:], Fx[-m:]
        if k == 0:  # Algorithm 1, line 2: one plain step first
            x = fx
            continue
        n = len(X)
        Xs, Fs = torch.stack(X, 1), torch.stack(Fx, 1)  # (B, n, N)
        G = Fs - Xs
        H = torch.zeros(B, n + 1, n + 1, dtype=G.dtype, device=G.device)
        H[:, 0, 1:] = 1.0
        H[:, 1:, 0] = 1.0
        GG = G @ G.transpose(1, 2)
        scale = GG.diagonal(dim1=1, dim2=2).amax(1).view(B, 1, 1) if relative_lam else 1.0
        H[:, 1:, 1:] = GG + lam * scale * torch.eye(n, dtype=G.dtype, device=G.device)
        rhs = torch.zeros(B, n + 1, 1, dtype=G.dtype, device=G.device)
        rhs[:, 0] = 1.0
        alpha = torch.linalg.solve(H, rhs)[:, 1:]  # (B, n, 1), sums to one
        mixed = beta * (alpha.transpose(1, 2) @ Fs) + (1 - beta) * (alpha.transpose(1, 2) @ Xs)  # (B, 1, N)
        x = unflat(mixed[:, 0])
    return fx, trace
