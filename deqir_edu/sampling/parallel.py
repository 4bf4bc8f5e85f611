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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..diffusion.chain import ChainConfig
from ..solvers.registry import SolverSpec, solver_spec
from ..solvers.trace import ConvergenceWarning, SolverTrace
from .fixed_point import FixedPointMap
from .sequential import Callback, check_inputs, prepare_chain, resolve_chain

__all__ = ["DeqIRResult", "deqir_sample", "default_passes"]


def default_passes(solver: str, steps: int) -> int:
    """The pass budget when none is given, a fact of the registry (``SolverSpec.default_passes``): K = 15 for
    the paper's ``"anderson"`` (Sec. 5.1), else T (the solvers with freezing, and Picard, are exact in T passes)."""
    return solver_spec(solver).default_passes(steps)


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
    steps: int | None = None,
    eta: float | None = None,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    solver: str = "auto",
    max_iter: int | None = None,
    callback: Callback | None = None,
    chain: ChainConfig | None = None,
    solver_options: Mapping[str, Any] | None = None,
) -> DeqIRResult:
    """Parallel restoration (DeqIR): solve ``x_{0:T-1} = F(x_{0:T-1}; x_T, y)``, Eqs. (8)-(11).

    The default ``solver="auto"`` goes beyond the paper (a linearised chain step, freezing and a stop on
    x_0, ``solvers/auto.py``) because the paper's Anderson iteration with K = 15 passes can end far from the
    sequential chain on small models; ``solver="anderson"`` runs the paper's path: Eq. (9) through
    ``FixedPointMap.__call__`` and Algorithm 1 from ``x_i = x_T`` (line 1), K = 15.
    With ``solver="picard"`` and ``max_iter = T`` the result equals ``ddnm_sample`` with the same noises
    (the system is lower triangular, Eq. (10)).

    Args:
        steps, eta: T and eta of the chain (default 20 and 0.15); or ``chain`` (a ``ChainConfig``), not both.
        generator, noises: the pair ``(x_T, noises)`` from ``draw_noises``, or a generator to draw it; not both.
        solver: a registered name (``solvers.solver_names()``).
        max_iter: at most this many sequential passes; default the registry's (``SolverSpec.default_passes``):
            K = 15 for ``"anderson"``, T (exact for the triangular system) for every other solver.
        callback: per pass, ``{"iteration", "states", "residual", ...}``.
        solver_options: the solver's keyword parameters, e.g. ``{"tol": 0.0, "stop": "x0", "reference": x,
            "m": 4, "lam": 1e-3}`` (``reference``: the trace records the x_0 error to it).
    Memory: each pass is one network call on T x B images; ``models.ChunkedModel`` bounds it.
    Half precision (``y`` in bf16/fp16): the states and the solver run in float32 (the sums of Eq. (9)
    and the Anderson systems lose too much in 8-11 bits), the network in its own dtype; the result in ``y``'s.

    Warns (``solvers.ConvergenceWarning``) when the solver used up ``max_iter`` before its tolerance (``tol > 0``;
    ``result.converged``).  Raises ``ValueError`` for a ``y`` that requires grad (``sequential.check_inputs``).
    """
    check_inputs(model, op, y, "deqir_sample")
    spec = solver_spec(solver)
    options = spec.checked_options(solver, solver_options)  # unknown options refused, naming the solver's
    chain = resolve_chain(model, steps, eta, chain)
    dtype = y.dtype
    half = dtype in (torch.float16, torch.bfloat16)  # the solve in float32, the network in the model's dtype
    if half:
        y, noises = y.float(), None if noises is None else tuple(v.float() for v in noises)
    x_T, fresh, _ = prepare_chain(model, op, y, chain, generator, noises)
    f = FixedPointMap(model, op, y, x_T, fresh, chain)
    init = x_T.expand(chain.steps, *x_T.shape).clone()  # Algorithm 1, line 1
    max_iter = spec.default_passes(chain.steps) if max_iter is None else max_iter
    with torch.no_grad():
        sol, trace = spec.solve(f, init, max_iter=max_iter, callback=callback, **options)
    trace.converged |= spec.exact_after_T and trace.passes >= chain.steps  # the triangular system is solved
    if not trace.converged and options.get("tol", 1.0) > 0:
        _warn_budget(solver, spec, trace.passes, chain.steps)
    states = torch.cat([sol, x_T[None]], dim=0)
    if half:  # back to the caller's dtype
        states = states.to(dtype)
    return DeqIRResult(x0=states[0], states=states, trace=trace, evaluations=f.evaluations)


def _warn_budget(solver: str, spec: SolverSpec, passes: int, steps: int) -> None:
    exact = f"T = {steps} passes are exact for this solver" if spec.exact_after_T else "this solver is not exact"
    warnings.warn(
        f"the parallel solver {solver!r} stopped after {passes} passes (max_iter) before its tolerance: x_0 may "
        f"be far from the sequential chain; raise max_iter ({exact}) or use ddnm_sample",
        ConvergenceWarning,
        stacklevel=3,
    )
