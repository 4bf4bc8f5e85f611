"""The parallel sampler DeqIR: the whole chain as one fixed-point system, solved in parallel (Proposition 1).

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``)

    states[k]       x_k                  the whole chain, k = 0..T; states[T] = x_T
    f               F(.; x_T, y)         the map of Eq. (8) in the cumulative form of Eq. (9) (``fixed_point.py``)
    init            x^{(0)}              start of the solver: x_i = x_T for every i (Algorithm 1, line 1)
    solver          -                    a name of ``solvers.SOLVERS`` (Picard, Anderson = Algorithm 1, ...)
    passes          -                    sequential network passes (applications of F)
    evaluations     -                    network evaluations of single states (T per full pass)

With the same noises and ``solver="picard"``, ``max_iter = T`` the result equals
``sequential.ddnm_sample`` exactly: the system is lower triangular (Eq. (10)).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from ..diffusion.chain import ChainConfig
from ..solvers.registry import get_solver
from ..solvers.trace import ConvergenceWarning, SolverTrace
from .fixed_point import FixedPointMap
from .sequential import Callback, prepare_chain, resolve_chain

__all__ = ["DeqIRResult", "deqir_sample", "default_passes"]


def default_passes(solver: str, steps: int) -> int:
    """The pass budget when none is given: K = 15 for the paper's ``"anderson"`` (Sec. 5.1), else T
    (the solvers with freezing, and Picard, solve the triangular system exactly in T passes)."""
    return 15 if solver == "anderson" else steps


@dataclass
class DeqIRResult:
    """Output of ``deqir_sample``.

    Attributes:
        x0: restored image ``x_0``, ``(B, C, H, W)``.
        states: the whole chain, ``(T + 1, B, C, H, W)``, ``states[k] = x_k`` (``states[T] = x_T``).
        trace: the solver's ``SolverTrace`` (residual per pass, evaluations, ...).
        evaluations: network evaluations of single states (T per application of F).
    """

    x0: torch.Tensor
    states: torch.Tensor
    trace: SolverTrace
    evaluations: int

    @property
    def passes(self) -> int:
        """Sequential network passes the solver made (the depth of the computation)."""
        return self.trace.passes

    @property
    def converged(self) -> bool:
        """Whether the solver stopped by its tolerance (not by ``max_iter``)."""
        return self.trace.converged


def deqir_sample(
    model: Any,
    op: Any,
    y: torch.Tensor,
    steps: int = 20,
    eta: float = 0.15,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    solver: str = "auto",
    max_iter: int | None = None,
    callback: Callback | None = None,
    chain: ChainConfig | None = None,
    **solver_options: Any,
) -> DeqIRResult:
    """Parallel restoration (DeqIR): solve ``x_{0:T-1} = F(x_{0:T-1}; x_T, y)``, Eqs. (8)-(11).

    The iterate starts at ``x_i = x_T`` for every i (Algorithm 1, line 1).  With ``solver="picard"``
    and ``max_iter = T`` the result equals ``ddnm_sample`` with the same noises (the system is lower
    triangular, Eq. (10)).

    Args:
        steps, eta: T and eta of the chain; ``chain`` (a ``ChainConfig``) replaces both when given.
        noises: ``(x_T, noises)`` from ``draw_noises``; else drawn from ``generator``.
        solver: a registered solver name (``solvers.solver_names()``): ``"auto"`` (default, ``solvers/auto.py``)
            stops by itself within 0.05 dB of the chain in the benchmarks; ``"anderson"`` is Algorithm 1.
        max_iter: at most this many sequential passes; default ``default_passes(solver, T)``: the paper's
            K = 15 for ``"anderson"``, T (exact for the triangular system) for every other solver.
        callback: per pass, ``{"iteration", "states", "residual", ...}``.
        solver_options: passed to the solver, e.g. ``tol=1e-3`` (the default), ``stop="x0"``,
            ``reference=x`` (the trace then records the x_0 error to it), ``m``, ``lam``, ``beta``.
    Memory: each pass is one network call on T x B images; ``models.ChunkedModel`` bounds it.

    Half precision (``y`` in bf16/fp16): the states and the solver run in float32 (the sums of Eq. (9)
    and the Anderson systems lose too much in 8-11 bits), the network in its own dtype; the result is
    returned in ``y``'s dtype.

    Warns (``solvers.ConvergenceWarning``) when the solver used up ``max_iter`` before its tolerance
    (``tol > 0``); ``result.converged`` says the same.
    """
    solve = get_solver(solver)
    chain = resolve_chain(model, steps, eta, chain)
    dtype = y.dtype
    half = dtype in (torch.float16, torch.bfloat16)  # the solve in float32, the network in the model's dtype
    if half:
        y = y.float()
        noises = None if noises is None else (noises[0].float(), noises[1].float())
    x_T, eps, _ = prepare_chain(model, op, y, chain, generator, noises)
    f = FixedPointMap(model, op, y, x_T, eps, chain)
    init = x_T.expand(chain.steps, *x_T.shape).clone()  # Algorithm 1, line 1
    max_iter = default_passes(solver, chain.steps) if max_iter is None else max_iter
    with torch.no_grad():
        sol, trace = solve(f, init, max_iter=max_iter, callback=callback, **solver_options)
    if solver == "picard" and max_iter >= chain.steps:  # T passes of Picard solve the triangular system
        trace.converged = True
    if not trace.converged and solver_options.get("tol", 1.0) > 0:
        warnings.warn(
            f"the parallel solver {solver!r} stopped after {trace.passes} passes (max_iter) before its "
            f"tolerance: x_0 may be far from the sequential chain; raise max_iter (T = {chain.steps} "
            f"passes are exact for every solver but anderson) or use ddnm_sample",
            ConvergenceWarning,
            stacklevel=2,
        )
    states = torch.cat([sol, x_T[None]], dim=0)
    if half:  # back to the caller's dtype
        states = states.to(dtype)
    return DeqIRResult(x0=states[0], states=states, trace=trace, evaluations=f.evaluations)
