"""Anderson acceleration for ``x = F(x)``, Algorithm 1 of the paper, with per-image mixing weights.

Notation (code name -> paper symbol, DeqIR Eq. (11) and Algorithm 1)

    x, init        x_{0:T-1}^{(k)}     iterate, a stack (T, B, ...) with x[j] = chain state x_j
    fx             F(x^{(k)})          one application of the map
    g              g_k = F(x) - x      residual
    m              m                   Anderson history length
    G              G_k                 the last m_k residuals, one row each, per image
    alpha          alpha_k             mixing weights, sum_i alpha_i = 1
    lam, beta      lambda, beta        regularisation of G G^T and mixing (beta = 1: pure F mixing)

Mixing.  ``mix="image"`` (the default) solves one small system per image: all T states of an image
share one alpha.  ``mix="state"`` solves one per state and image (T x B systems), which is what the
official code does (``functions/ddim_anderson.py``: its batch dimension is the T states of its one
image); chapter 8 and ``benchmarks/official_settings.py`` compare the two.

History.  After n applications of F the history holds the last ``min(m, n)`` pairs (X_i, F(X_i));
the first step is a plain one (Algorithm 1, line 2).  The solution returned is the last ``F(x)`` computed, which for the lower-triangular F of DeqIR is
never worse than ``x``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .trace import Callback, SolverTrace, check_solver_args, record_iteration

__all__ = ["anderson"]


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
    callback: Callback | None = None,
    relative_lam: bool = False,
    mix: str = "image",
) -> tuple[torch.Tensor, SolverTrace]:
    """Anderson acceleration, Algorithm 1, with per-image mixing weights (per state: ``mix="state"``).

    Each image b of the batch is its own problem (its T states flattened into one vector).  Given the
    last ``n = min(m, k + 1)`` iterates ``X_i`` and ``F_i = F(X_i)`` at iteration ``k = 0, 1, ...`` (the
    paper keeps ``min(m, k) + 1``, up to ``m + 1``), with ``G = F - X`` (rows), solve the
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
        mix: ``"image"``: one alpha per image (default); ``"state"``: one alpha per state and image,
            as the official code (module docstring).
    Returns:
        ``(F(x_last), trace)``.
    """
    check_solver_args(init, max_iter, tol, stop, reference)
    if not isinstance(m, int) or m < 1:
        raise ValueError(f"the history length m must be a positive integer, got {m!r}")
    if mix not in ("image", "state"):
        raise ValueError(f"mix must be 'image' or 'state', got {mix!r}")
    T, B = init.shape[:2]
    R = B if mix == "image" else T * B  # number of small systems: one per image, or one per state and image

    def flat(v: torch.Tensor) -> torch.Tensor:  # (T, B, ...) -> (R, N): one vector per image (or per state)
        return v.transpose(0, 1).reshape(B, -1) if mix == "image" else v.reshape(R, -1)

    def unflat(v: torch.Tensor) -> torch.Tensor:  # (R, N) -> (T, B, ...)
        return v.reshape(B, T, *init.shape[2:]).transpose(0, 1) if mix == "image" else v.reshape(init.shape)

    trace = SolverTrace(stop=stop)
    X: list[torch.Tensor] = []  # history of iterates, each (R, N)
    Fx: list[torch.Tensor] = []  # history of F(iterate)
    x, prev_x0, fx = init, None, init
    for k in range(max_iter):
        fx = f(x)
        record_iteration(trace, f, x, fx, prev_x0, reference, callback)
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
        Xs, Fs = torch.stack(X, 1), torch.stack(Fx, 1)  # (R, n, N)
        G = (Fs - Xs).to(_solve_dtype(Fs.dtype))  # the small system in float32 at least (bf16/fp16 inputs)
        H = torch.zeros(R, n + 1, n + 1, dtype=G.dtype, device=G.device)
        H[:, 0, 1:] = 1.0
        H[:, 1:, 0] = 1.0
        GG = G @ G.transpose(1, 2)
        scale = GG.diagonal(dim1=1, dim2=2).amax(1).view(R, 1, 1) if relative_lam else 1.0
        H[:, 1:, 1:] = GG + lam * scale * torch.eye(n, dtype=G.dtype, device=G.device)
        rhs = torch.zeros(R, n + 1, 1, dtype=G.dtype, device=G.device)
        rhs[:, 0] = 1.0
        alpha = torch.linalg.solve(H, rhs)[:, 1:].to(Fs.dtype)  # (R, n, 1), sums to one
        mixed = beta * (alpha.transpose(1, 2) @ Fs) + (1 - beta) * (alpha.transpose(1, 2) @ Xs)  # (R, 1, N)
        x = unflat(mixed[:, 0])
    return fx, trace


def _solve_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision iterates (``torch.linalg.solve`` has no bf16/fp16 kernels), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
