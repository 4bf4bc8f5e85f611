"""The record of a fixed-point solve, shared by every solver, and the argument checks they share.

Notation (code name -> paper symbol, DeqIR Eq. (11) and Algorithm 1)

    x               x_{0:T-1}^{(n)}     iterate, a stack (T, B, ...) with x[j] = chain state x_j
    fx              F(x^{(n)})          one application of the map
    passes          n                   sequential network passes (applications of F) so far
    evaluations     -                   network evaluations of single states so far (T per full pass)

Two counters only: ``passes`` (the depth of the computation: what parallel hardware waits for) and
``evaluations`` (the work: what a single device pays for).

Stopping rules (``stop=``; which ones a solver accepts is a fact of the registry), all relative residuals
``||F(x)_j - x_j|| / (||F(x)_j|| + 1e-5)``:

    "x0"         the residual of state 0 (the restored image), worst image of the batch
    "per_state"  the largest residual over all states and images
    "global"     one norm over everything, ``||F(x) - x|| / (||F(x)|| + 1e-5)``, as in the official code

The global rule is dominated by the large noisy states near x_T; it can stop while x_0 is still far
from the fixed point (``tests/test_solvers.py`` shows a case), hence the default ``"x0"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.checks import is_integer

__all__ = ["ConvergenceWarning", "SolverTrace", "STOP_RULES", "record_iteration", "check_solver_args", "Callback"]

STOP_RULES = ("x0", "per_state", "global")


class ConvergenceWarning(UserWarning):
    """A fixed-point solve stopped at its pass budget before its tolerance: x_0 may differ from the chain."""


Callback = Callable[[dict[str, Any]], None]


@dataclass
class SolverTrace:
    """Per-pass record of a fixed-point solve (one entry per sequential network pass).

    Attributes:
        residual: global relative residual ``||F(x) - x|| / ||F(x)||``.
        state_residual: ``(T,)`` tensors, relative residual of each state (worst image of the batch).
        x0_change: relative change of the returned x_0 since the previous pass (``nan`` at first).
        x0_error: max-abs error of the returned x_0 to ``reference`` (empty without a reference).
        evaluations: network evaluations of single states so far, after each pass.
        window, boundary: states ``(lo, hi)`` evaluated and the frozen boundary ``b`` of each pass
            (solvers with freezing only; empty otherwise).
        converged, passes, stop: outcome, number of passes, the rule used.
    """

    residual: list[float] = field(default_factory=list)
    state_residual: list[torch.Tensor] = field(default_factory=list)
    x0_change: list[float] = field(default_factory=list)
    x0_error: list[float] = field(default_factory=list)
    evaluations: list[int] = field(default_factory=list)
    window: list[tuple[int, int]] = field(default_factory=list)
    boundary: list[int] = field(default_factory=list)
    converged: bool = False
    passes: int = 0
    stop: str = "x0"

    def criterion(self) -> float:
        """The last value of the quantity that the stopping rule compares to ``tol``."""
        if self.stop == "global":
            return self.residual[-1]
        if self.stop == "per_state":
            return float(self.state_residual[-1].max())
        return float(self.state_residual[-1][0])

    def record_pass(
        self,
        x0: torch.Tensor,
        residual: float,
        state_residual: torch.Tensor,
        x0_change: float,
        evaluations: int,
        reference: torch.Tensor | None,
        window: tuple[int, int] | None = None,
        boundary: int | None = None,
    ) -> None:
        """Append one pass: the returned ``x0`` ``(B, C, H, W)``, its residuals and the map's evaluation count."""
        self.residual.append(residual)
        self.state_residual.append(state_residual)
        self.x0_change.append(x0_change)
        if reference is not None:
            self.x0_error.append(float((x0 - reference).abs().max()))
        self.passes += 1
        self.evaluations.append(evaluations)
        if window is not None:
            self.window.append(window)
        if boundary is not None:
            self.boundary.append(boundary)


def record_iteration(
    trace: SolverTrace,
    f: Callable,
    x: torch.Tensor,
    fx: torch.Tensor,
    prev_x0: torch.Tensor | None,
    reference: torch.Tensor | None,
    callback: Callback | None,
) -> None:
    """Append one pass of a map solver (the residual at ``x``, the candidate ``fx``) to ``trace``."""
    g = (fx - x).flatten(2)  # (T, B, N)
    fnorm = fx.flatten(2).norm(dim=2)  # (T, B)
    state_res = (g.norm(dim=2) / (fnorm + 1e-5)).max(dim=1).values.detach().cpu()
    x0 = fx[0]
    change = float("nan") if prev_x0 is None else float((x0 - prev_x0).norm() / (x0.norm() + 1e-5))
    residual = float(g.norm() / (fx.norm() + 1e-5))
    evaluations = int(getattr(f, "evaluations", trace.passes + 1))  # a plain function: one per pass
    trace.record_pass(x0, residual, state_res, change, evaluations, reference)
    if callback is not None:
        callback(
            {
                "iteration": trace.passes,
                "states": fx,
                "residual": residual,
                "state_residual": state_res,
                "criterion": trace.criterion(),
            }
        )


def check_solver_args(
    init: torch.Tensor,
    max_iter: int,
    tol: float,
    stop: str,
    reference: torch.Tensor | None,
    rules: tuple[str, ...] = STOP_RULES,
) -> None:
    """Raise ``ValueError`` with the fix for a bad start, budget, tolerance, rule (one of ``rules``) or reference."""
    if not isinstance(init, torch.Tensor) or init.dim() < 2:
        raise ValueError("the initial iterate must be a stack of shape (T, B, ...) with x[j] = state j")
    if not is_integer(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if stop not in rules:
        raise ValueError(f"unknown stopping rule {stop!r} for this solver; use one of {rules}")
    if reference is not None and tuple(reference.shape) != tuple(init.shape[1:]):
        raise ValueError(f"reference must have the shape of x_0, {tuple(init.shape[1:])}, got {tuple(reference.shape)}")
