"""What a fixed-point solver may use of the map it solves: two explicit, typed contracts.

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``, map of
``sampling/fixed_point.py``)

    x, init        x_{0:T-1}            iterate, a stack (T, B, C, H, W) with x[j] = chain state x_j
    F, f           F(.; x_T, y)         the map of Eq. (8) (Eq. (9): its cumulative form)
    X              x_{0:T}              the full chain (T+1, B, C, H, W), X[T] = x_T fixed
    Q              I - A^+ A            null-space projector
    r[k-1]         r_k                  sqrt(abar_{k-1} / abar_k)
    z(eps)[k-1]    z_k                  the part of x_{k-1} that is not r_k Q x_k

Two kinds of solver, one signature (every parameter after ``init`` keyword-only, in this order)::

    solver(f, init, *, max_iter, tol, stop, reference, callback, <its own parameters>) -> (x, SolverTrace)

* A **map solver** (``picard``, ``anderson``: the paper's Algorithm 1) sees the map only as a function,
  ``f: MapFn``, ``(T, B, C, H, W) -> (T, B, C, H, W)``: it works on any fixed-point problem.
* A **chain solver** (``window_solve`` and its presets, ``auto``: beyond the paper) also uses the
  lower-triangular structure of Eq. (10); ``f: ChainMap`` names every member it may use.
  ``sampling.FixedPointMap`` satisfies both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch

from ..diffusion.chain import ChainConfig
from .trace import Callback, SolverTrace

__all__ = ["MapFn", "ChainMap", "Solver"]

MapFn = Callable[[torch.Tensor], torch.Tensor]  # x (T, B, C, H, W) -> F(x), same shape


@runtime_checkable
class ChainMap(Protocol):
    """The map F of Proposition 1 as a chain solver sees it (``sampling.FixedPointMap`` implements it).

    Attributes:
        steps: T; the unknowns are x_0..x_{T-1}.
        x_T: ``(B, C, H, W)``, the fixed initial noise (input injection).
        pinv_y: ``(B, C, H, W)``, A^+ y.
        chain: the ``ChainConfig`` (abar, c1, c2, g1, g2, timesteps; float64).
        step_noise: ``(T, B, C, H, W)``, row k-1 = the fresh noise of step k -> k-1.
        r: ``(T, 1, 1, 1, 1)``, row k-1 = r_k.
        evaluations: network evaluations of single states so far (the map counts them).
    """

    steps: int
    x_T: torch.Tensor
    pinv_y: torch.Tensor
    chain: ChainConfig
    step_noise: torch.Tensor
    r: torch.Tensor
    evaluations: int

    def __call__(self, states: torch.Tensor) -> torch.Tensor:
        """F(x_{0:T-1}), Eq. (9): ``(T, B, C, H, W) -> (T, B, C, H, W)``."""

    def Q(self, v: torch.Tensor) -> torch.Tensor:
        """``(I - A^+ A) v`` of a stack ``(..., B, C, H, W)``."""

    def evaluate(self, X: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """eps_theta(x_k) for k = lo..hi of the chain ``X`` ``(T+1, B, C, H, W)``: one counted network pass."""

    def z(self, eps: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """z_k for k = lo+1..hi from their eps ``(hi - lo, B, C, H, W)``."""


class Solver(Protocol):
    """A registered solver (``registry.SolverSpec.solve``); ``f`` is a ``MapFn``, or a ``ChainMap`` (which is one)."""

    def __call__(
        self,
        f: MapFn,
        init: torch.Tensor,
        *,
        max_iter: int,
        tol: float,
        stop: str,
        reference: torch.Tensor | None,
        callback: Callback | None,
    ) -> tuple[torch.Tensor, SolverTrace]: ...
