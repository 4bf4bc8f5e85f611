"""One registry of fixed-point solvers: every entry point (samplers, inversion, evaluation, CLI,
benchmarks) looks a solver up here by name, so each accepts every registered solver.

Notation: a solver is a callable ``solver(f, init, max_iter=..., tol=..., stop=..., reference=...,
callback=..., **options) -> (x_{0:T-1}, SolverTrace)`` on a map ``f`` (``sampling.FixedPointMap``)
and a start ``init`` ``(T, B, C, H, W)``.

    name             what it is
    auto             the default: Gaussian then secant linearisation + freezing, stops on x_0 (auto.py)
    picard           x <- F(x), Eq. (11) without acceleration (T passes are exact)
    anderson         Algorithm 1 of the paper (per-image mixing)
    picard-freeze    Eq. (9) pass by pass, final states frozen, per-state stopping
    picard-window    ... evaluating a sliding window of T/4 states per pass (ParaDiGMS)
    anderson-freeze  Algorithm 1 + freezing
    taa              triangular Anderson (one mixing per state, ParaTAA) + freezing
    gauss-freeze     the Gaussian linearisation of the step + freezing
    gauss-window     ... in a sliding window of T/4 states

``register(name, solver)`` adds one (the book's exercises do); ``get_solver(name)`` returns it or
raises a ``ValueError`` that lists the names.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from .anderson import anderson
from .auto import auto
from .freezing import WindowConfig, window_solve
from .picard import picard
from .trace import SolverTrace

__all__ = ["Solver", "SOLVERS", "register", "get_solver", "solver_names"]

Solver = Callable[..., tuple[torch.Tensor, SolverTrace]]

SOLVERS: dict[str, Solver] = {
    "auto": auto,
    "picard": picard,
    "anderson": anderson,
    "picard-freeze": partial(window_solve, config=WindowConfig()),
    "picard-window": partial(window_solve, config=WindowConfig(window=0.25)),
    "anderson-freeze": partial(window_solve, config=WindowConfig(accel="anderson")),
    "taa": partial(window_solve, config=WindowConfig(accel="taa")),
    "gauss-freeze": partial(window_solve, config=WindowConfig(form="gauss")),
    "gauss-window": partial(window_solve, config=WindowConfig(form="gauss", window=0.25)),
}


def register(name: str, solver: Solver, overwrite: bool = False) -> None:
    """Add ``solver`` under ``name``; refuse to replace an existing name unless ``overwrite``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a solver name must be a non-empty string, got {name!r}")
    if not callable(solver):
        raise ValueError(f"solver {name!r} must be callable as solver(f, init, max_iter=..., tol=..., ...)")
    if name in SOLVERS and not overwrite:
        raise ValueError(f"solver {name!r} is already registered; pass overwrite=True to replace it")
    SOLVERS[name] = solver


def solver_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(SOLVERS)


def get_solver(name: str) -> Solver:
    """The solver registered as ``name``."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; use one of {', '.join(solver_names())}")
    return SOLVERS[name]
