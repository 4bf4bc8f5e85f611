"""Anderson acceleration for ``x = F(x)``: Algorithm 1 of the paper, with per-image mixing weights.

Notation (code name -> paper symbol, DeqIR Eq. (11) and Algorithm 1)

    x, init        x_{0:T-1}^{(k)}     iterate, a stack (T, B, C, H, W) with x[j] = chain state x_j
    fx             F(x^{(k)})          one application of the map
    G              G_k                 the residuals g_i = F(x^{(i)}) - x^{(i)}, i = k - m_k..k, one row each
    m, m_k         m, m_k              history parameter; m_k = min(m, k): G_k has m_k + 1 columns (line 4)
    alpha          alpha_k             mixing weights, sum_i alpha_i = 1 (lines 6-7)
    lam, beta      lambda, beta        regularisation of G G^T and mixing (beta = 1: pure F mixing, line 9)

History.  ``m`` is the paper's: at iteration k the weights mix the last ``m_k + 1 = min(m, k) + 1``
iterates.  The defaults are what the official DeqIR code runs (K = 15, lambda = 1e-3, beta = 1 and its
``m = 5``, which counts the columns of G, so the paper's m = 4).

Mixing.  ``mix="image"`` (the default) solves one small system per image: all T states of an image
share one alpha.  ``mix="state"`` solves one per state and image (T x B systems), which is what the
official code does (``functions/ddim_anderson.py``: its batch dimension is the T states of its one
image); chapter 8 and ``benchmarks/official_settings.py`` compare the two.

The solution returned is the last ``F(x)`` computed (one pass of F after line 9), which for the
lower-triangular F of DeqIR is never worse than ``x``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.checks import is_integer
from .contract import MapFn
from .trace import Callback, SolverTrace, check_solver_args, record_iteration

__all__ = ["anderson", "anderson_weights"]


def anderson_weights(gram: torch.Tensor, lam: float, relative: bool = False) -> torch.Tensor:
    """Mixing weights ``alpha`` ``(..., n)`` from Gram matrices ``gram = G G^T`` ``(..., n, n)`` (rows of G: residuals).

    ``alpha`` minimises ``||G^T alpha||^2 + lam ||alpha||^2`` subject to ``1^T alpha = 1`` (Algorithm 1, line 7);
    its Lagrange conditions are the bordered system::

        [[0, 1^T], [1, G G^T + lam I]] [nu; alpha] = [1; 0]

    ``relative=True`` scales lam by the largest diagonal entry of ``gram`` (``max_i ||g_i||^2``).
    """
    n = gram.shape[-1]
    scale = gram.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None].clamp_min(1e-30) if relative else 1.0
    H = gram.new_zeros(*gram.shape[:-2], n + 1, n + 1)
    H[..., 0, 1:] = 1.0
    H[..., 1:, 0] = 1.0
    H[..., 1:, 1:] = gram + lam * scale * torch.eye(n, dtype=gram.dtype, device=gram.device)
    rhs = gram.new_zeros(*gram.shape[:-2], n + 1, 1)
    rhs[..., 0, 0] = 1.0
    return torch.linalg.solve(H, rhs)[..., 1:, 0]


def anderson(
    f: MapFn,
    init: torch.Tensor,
    *,
    max_iter: int = 15,
    tol: float = 1e-3,
    stop: str = "x0",
    reference: torch.Tensor | None = None,
    callback: Callback | None = None,
    m: int = 4,
    lam: float = 1e-3,
    beta: float = 1.0,
    relative_lam: bool = False,
    mix: str = "image",
) -> tuple[torch.Tensor, SolverTrace]:
    """Anderson acceleration, Algorithm 1, at most ``max_iter`` applications of F.

    Args:
        f, init, max_iter, tol, stop, reference, callback: as for ``picard``.
        m: the paper's history parameter (``m_k + 1 = min(m, k) + 1`` iterates are mixed); lam, beta: line 7
            and line 9 (defaults 4, 1e-3, 1: the official code's setting, module docstring).
        relative_lam: use ``lam * max_i ||g_i||^2`` instead of ``lam``.  The official absolute lam
            suits 256x256 images; on tiny images near convergence ``G G^T << lam`` and Anderson
            degrades to averaging the history (``tests/test_solvers.py`` shows this on a linear map).
        mix: ``"image"``: one alpha per image (default); ``"state"``: one per state and image, as the official code.
    Returns:
        ``(F(x_last), trace)``.
    """
    check_solver_args(init, max_iter, tol, stop, reference)
    if not is_integer(m) or m < 1:
        raise ValueError(f"the history parameter m must be an integer >= 1 (Algorithm 1), got {m!r}")
    if mix not in ("image", "state"):
        raise ValueError(f"mix must be 'image' or 'state', got {mix!r}")
    flat, unflat = _layout(init, mix)
    trace = SolverTrace(stop=stop)
    X: list[torch.Tensor] = []  # x^{(k - m_k)} .. x^{(k)}, each (R, N): one row per image (or state and image)
    FX: list[torch.Tensor] = []  # F of each
    x, fx, prev_x0 = init, init, None
    for k in range(max_iter):
        fx = f(x)  # F(x^{(k)}); for k = 0 this is line 2
        record_iteration(trace, f, x, fx, prev_x0, reference, callback)
        prev_x0 = fx[0]
        if trace.criterion() < tol:
            trace.converged = True
            break
        X, FX = (X + [flat(x)])[-(m + 1) :], (FX + [flat(fx)])[-(m + 1) :]  # m_k + 1 columns (lines 4-5)
        x = fx if k == 0 else unflat(_mix(X, FX, lam, beta, relative_lam))  # x^{(1)} = F(x^{(0)}), then line 9
    return fx, trace


def _mix(X: list[torch.Tensor], FX: list[torch.Tensor], lam: float, beta: float, relative: bool) -> torch.Tensor:
    """Lines 5-9: ``x = beta sum_i alpha_i F_i + (1 - beta) sum_i alpha_i X_i``, ``(R, N)``."""
    Xs, Fs = torch.stack(X, 1), torch.stack(FX, 1)  # (R, n, N)
    G = (Fs - Xs).to(solve_dtype(Fs.dtype))  # the small system in float32 at least (bf16/fp16 inputs)
    alpha = anderson_weights(G @ G.transpose(1, 2), lam, relative).to(Fs.dtype)[:, None, :]  # (R, 1, n)
    return (beta * (alpha @ Fs) + (1 - beta) * (alpha @ Xs))[:, 0]


def _layout(init: torch.Tensor, mix: str) -> tuple[Callable, Callable]:
    """``flat``: ``(T, B, ...) -> (R, N)``, one vector per image (or per state and image), and its inverse."""
    T, B = init.shape[:2]
    if mix == "state":
        return (lambda v: v.reshape(T * B, -1)), (lambda v: v.reshape(init.shape))
    return (lambda v: v.transpose(0, 1).reshape(B, -1)), (lambda v: v.reshape(B, T, *init.shape[2:]).transpose(0, 1))


def solve_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision iterates (``torch.linalg.solve`` has no bf16/fp16 kernels), else ``dtype``."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
