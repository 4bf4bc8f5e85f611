"""The coefficient set of the official DeqIR code, and samplers that take any coefficient set.

The paper (Eq. (9), Sec. 5.6) uses the DDIM eta form with eta = 0.15.  The command in the official
repository's README (``github.com/caojiezhang/DeqIR``, ``main.py ... --use_svd --etw 0.1``, T = 25 in
its example) runs something else.  Reading ``runners/diffusion.py`` (``get_additional_anderson_args_sr``)
and ``functions/ddim_anderson.py`` (``compute_multi_step_sr``), their map F is our Eq. (9) with

    c1_k = sqrt(1 - abar_{k-1}) * nw            (nw:  ``--nw``,  default 0)
    c2_k = sqrt(1 - abar_{k-1}) * sqrt(1 - etw^2)  (etw: ``--etw``, README 0.1)

and, on the non-SVD path (``--use_svd`` not given), both multiplied by DDNM's extra factor
``sigma_t = sqrt(1 - abar_{k-1}^2)`` (note the square: DDNM's ``simplified_ddnm_plus`` writes
``sigma_t = (1 - at_next**2).sqrt()``).  Hence the README setting has **no fresh noise at all**
(nw = 0: the chain is deterministic given x_T) and shrinks the predicted noise by sqrt(0.99): it is
neither DDIM eta = 0 (which would keep c2 = sqrt(1 - abar_{k-1})) nor eta = 0.15.  The official code
also draws ONE noise image and reuses it at every step (``repeat_interleave(randn_like(xT), T)``);
that matters only for nw > 0 (``official_noises`` reproduces it).

Because F of Proposition 1 is exact for ANY c1, c2, the sequential chain with these coefficients
and the parallel solve give the same x_0; ``sequential_chain`` and ``parallel_chain`` below take a
coefficient set explicitly (``ddnm_sample`` / ``deqir_sample`` compute theirs from eta).

Notation (code name -> symbol; chain convention of ``schedules.py``)

    coeffs           c^1_k, c^2_k, abar_k, tau_k   a ``ChainCoefficients``
    etw              eta_w                  weight of eps_theta: c2 = sqrt(1 - abar_{k-1}) sqrt(1 - etw^2)
    nw               n_w                    weight of fresh noise: c1 = sqrt(1 - abar_{k-1}) nw
    sigma_t          sqrt(1 - abar_{k-1}^2)  DDNM's extra factor on the non-SVD path
    x_T, noises      x_T, eps_k             as ``samplers.draw_noises``: noises[T - k] used by step k -> k-1
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .fixed_point import FixedPointMap, alphas_cumprod_of
from .samplers import ClippedModel, chain_step, draw_noises, prepare_chain
from .schedules import ChainCoefficients, alphas_cumprod, chain_coefficients, linear_betas
from .solvers import SolverTrace, anderson, picard

__all__ = ["official_coefficients", "official_noises", "sequential_chain", "parallel_chain"]


def official_coefficients(
    steps: int,
    etw: float = 0.1,
    nw: float = 0.0,
    svd: bool = True,
    alphas_cumprod_full: torch.Tensor | None = None,
    kind: str = "uniform",
) -> ChainCoefficients:
    """c1, c2 of the official DeqIR code (module docstring); defaults = its README command.

    Args:
        steps: T.  etw, nw: ``--etw`` and ``--nw`` of the official ``main.py``.
        svd: ``True`` as ``--use_svd`` (the README); ``False`` adds the factor sqrt(1 - abar_{k-1}^2).
    Returns:
        a ``ChainCoefficients`` (its ``eta`` field holds ``nw``, the weight of the fresh noise).
    """
    if not 0.0 <= float(etw) <= 1.0 or not 0.0 <= float(nw) <= 1.0:
        raise ValueError(f"etw and nw must lie in [0, 1], got etw={etw}, nw={nw}")
    ac = alphas_cumprod(linear_betas()) if alphas_cumprod_full is None else alphas_cumprod_full
    base = chain_coefficients(steps, 0.0, ac, kind)  # timesteps and abar only
    prev = base.abar[:-1]  # abar_{k-1}, k = 1..T
    sigma = (1.0 - prev**2).sqrt() if not svd else torch.ones_like(prev)  # DDNM non-SVD factor
    c1 = torch.zeros_like(base.c1)
    c2 = torch.zeros_like(base.c2)
    c1[1:] = (1.0 - prev).sqrt() * float(nw) * sigma
    c2[1:] = (1.0 - prev).sqrt() * (1.0 - float(etw) ** 2) ** 0.5 * sigma
    return ChainCoefficients(timesteps=base.timesteps, abar=base.abar, c1=c1, c2=c2, eta=float(nw))


def official_noises(
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_T, noises)`` with ONE noise image repeated at every step, as the official code does."""
    x_T, eps = draw_noises(shape, steps, generator, dtype, device)
    return x_T, eps[:1].expand_as(eps).clone()


def _setup(model: Any, op: Any, y: torch.Tensor, coeffs: ChainCoefficients, noises: tuple[torch.Tensor, torch.Tensor],
           clip: bool) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(coeffs, ChainCoefficients):
        raise ValueError("coeffs must be a ChainCoefficients: official_coefficients(T) or chain_coefficients(T, eta)")
    model = ClippedModel(model) if clip and not isinstance(model, ClippedModel) else model
    ref = alphas_cumprod_of(model)
    if ref is not None and not torch.allclose(coeffs.abar[1:], ref[coeffs.timesteps]):
        raise ValueError("coeffs were built for another noise schedule; pass alphas_cumprod_full=model.alphas_cumprod")
    # prepare_chain validates y, the noises and A^+ y (its own coefficients are discarded)
    _, x_T, eps, pinv_y = prepare_chain(model, op, y, coeffs.steps, 0.0, None, noises)
    return model, x_T, eps, pinv_y


def sequential_chain(
    model: Any,
    op: Any,
    y: torch.Tensor,
    coeffs: ChainCoefficients,
    noises: tuple[torch.Tensor, torch.Tensor],
    clip: bool = False,
) -> torch.Tensor:
    """DDNM's T sequential steps (Eqs. (4)-(5)) with the given coefficients; returns x_0 ``(B, C, H, W)``."""
    model, x, eps, pinv_y = _setup(model, op, y, coeffs, noises, clip)
    T = coeffs.steps
    with torch.no_grad():
        for k in range(T, 0, -1):
            x, _, _ = chain_step(model, op, pinv_y, x, k, coeffs, eps[T - k])
    return x


def parallel_chain(
    model: Any,
    op: Any,
    y: torch.Tensor,
    coeffs: ChainCoefficients,
    noises: tuple[torch.Tensor, torch.Tensor],
    solver: str = "anderson",
    max_iter: int = 15,
    tol: float = 1e-3,
    clip: bool = False,
    callback: Callable[[dict[str, Any]], None] | None = None,
    chunk_size: int | None = None,
    **solver_options: Any,
) -> tuple[torch.Tensor, SolverTrace, int]:
    """DeqIR with the given coefficients: solve ``x = F(x)`` (Eq. (8)) from ``x_i = x_T``.

    Returns ``(x_0, trace, nfe)``; ``x_0`` is ``(B, C, H, W)``, ``nfe`` counts single-state evaluations.
    """
    solvers = {"anderson": anderson, "picard": picard}
    if solver not in solvers:
        raise ValueError(f"unknown solver {solver!r}; use one of {sorted(solvers)}")
    model, x_T, eps, _ = _setup(model, op, y, coeffs, noises, clip)
    f = FixedPointMap(model, op, y, x_T, eps, coeffs, chunk_size=chunk_size)
    init = x_T.expand(coeffs.steps, *x_T.shape).clone()  # Algorithm 1, line 1
    with torch.no_grad():
        sol, trace = solvers[solver](f, init, max_iter=max_iter, tol=tol, callback=callback, **solver_options)
    return sol[0], trace, f.nfe
