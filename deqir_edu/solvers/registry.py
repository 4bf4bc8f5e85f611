"""One registry of fixed-point solvers: every entry point (samplers, inversion, evaluation, CLI,
benchmarks) looks a solver up here by name, and asks the registry, never the name, what it needs to know.

Notation: a solver is ``solve(f, init, *, max_iter, tol, stop, reference, callback, **its own parameters)
-> (x_{0:T-1}, SolverTrace)`` (``contract.Solver``); its ``SolverSpec`` says what the sampler needs.

    name             map   exact after T   default K   what it is
    picard           F     yes             T           x <- F(x), Eq. (11) without acceleration
    anderson         F     no              15          Algorithm 1 of the paper (per-image mixing)
    auto             chain yes             T           beyond the paper, the default: Gaussian then secant
                                                       linearisation + freezing, stops on x_0 (auto.py)
    picard-freeze    chain yes             T           beyond: Eq. (9) pass by pass, final states frozen
    picard-window    chain yes             T           beyond: ... a sliding window of T/4 states (ParaDiGMS)
    anderson-freeze  chain yes             T           beyond: Algorithm 1 + freezing
    taa              chain yes             T           beyond: triangular Anderson (ParaTAA) + freezing
    gauss-freeze     chain yes             T           beyond: the Gaussian linearisation of the step + freezing
    gauss-window     chain yes             T           beyond: ... in a sliding window of T/4 states

"map F" solvers call only ``f(x)`` (``contract.MapFn``); "chain" solvers use the ``contract.ChainMap``.
``register(name, solve, ...)`` adds one (the book's exercises do); ``get_solver(name)`` returns its
``solve``, ``solver_spec(name)`` its ``SolverSpec``; both raise a ``ValueError`` that lists the names.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from ..core.checks import is_integer
from .anderson import anderson
from .auto import AUTO, auto
from .contract import Solver
from .freezing import WINDOW_STOP_RULES, WindowConfig, window_solve
from .picard import picard
from .trace import STOP_RULES

__all__ = ["Solver", "SolverSpec", "SOLVERS", "register", "get_solver", "solver_spec", "solver_names", "preset"]


@dataclass(frozen=True)
class SolverSpec:
    """A registered solver and the facts a sampler needs about it.

    Attributes:
        solve: the solver (``contract.Solver``).
        chain: True if it uses the chain structure (``contract.ChainMap``), False if only ``f(x)``.
        exact_after_T: T passes solve the lower-triangular system exactly (the result is the sequential chain).
        passes: the default pass budget K; None: T.
        stop_rules: the stopping rules it accepts; the first is its default.
        runner_tol: the tolerance of the method ``deqir-NAME`` without K (``experiments.parse_method``);
            None: the solver's own.  Picard's 0 runs all T passes: the sequential chain (Proposition 1).
        config: the ``WindowConfig`` preset of a solver with freezing (override it with
            ``solver_options={"config": dataclasses.replace(spec.config, secant=True)}``); None otherwise.
    """

    solve: Solver
    chain: bool = False
    exact_after_T: bool = False
    passes: int | None = None
    stop_rules: tuple[str, ...] = STOP_RULES
    runner_tol: float | None = None
    config: WindowConfig | None = None

    def default_passes(self, steps: int) -> int:
        """K when the caller gives none: ``passes`` or T."""
        return steps if self.passes is None else self.passes

    def checked_options(
        self, name: str, options: Mapping[str, Any] | None, caller: str = "deqir_sample"
    ) -> dict[str, Any]:
        """``options`` (the solver's keyword parameters, e.g. ``{"tol": 0.0}``) as a dict, checked against ``solve``.

        Raises ``ValueError`` for a non-mapping, the caller's own ``max_iter``/``callback``, a stopping rule the
        solver lacks, or a key that ``solve`` does not take (naming its options).
        """
        if options is None:
            return {}
        if not isinstance(options, Mapping):
            raise ValueError(f"solver_options must be a mapping such as {{'tol': 1e-3}}, got {type(options).__name__}")
        own = {"max_iter", "callback"} & set(options)
        if own:
            raise ValueError(f"give {', '.join(sorted(own))} to {caller} itself, not in solver_options")
        stop = options.get("stop")
        if stop is not None and stop not in self.stop_rules:
            raise ValueError(f"solver {name!r} has no stopping rule {stop!r}; use one of {self.stop_rules}")
        params = inspect.signature(self.solve).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            known = [key for key in list(params)[2:] if key not in ("max_iter", "callback")]
            unknown = sorted(set(options) - set(known))
            if unknown:
                field = f" (for a WindowConfig field: config=dataclasses.replace(solver_spec({name!r}).config, ...))"
                raise ValueError(
                    f"solver {name!r} has no option {', '.join(unknown)}; its options are {', '.join(known)}"
                    + field * (self.config is not None)
                )
        return dict(options)


def preset(config: WindowConfig) -> Solver:
    """``window_solve`` with a fixed ``WindowConfig`` (a registered solver with freezing; ``config=`` overrides it)."""
    return partial(window_solve, config=config)


def _window(**fields: object) -> SolverSpec:
    config = replace(WindowConfig(), **fields)
    return SolverSpec(preset(config), True, True, stop_rules=WINDOW_STOP_RULES, config=config)


SOLVERS: dict[str, SolverSpec] = {
    "auto": SolverSpec(auto, chain=True, exact_after_T=True, stop_rules=("x0", "per_state"), config=AUTO),
    "picard": SolverSpec(picard, exact_after_T=True, runner_tol=0.0),
    "anderson": SolverSpec(anderson, passes=15),
    "picard-freeze": _window(),
    "picard-window": _window(window=0.25),
    "anderson-freeze": _window(accel="anderson"),
    "taa": _window(accel="taa"),
    "gauss-freeze": _window(form="gauss"),
    "gauss-window": _window(form="gauss", window=0.25),
}


def register(
    name: str,
    solve: Solver,
    *,
    chain: bool = False,
    exact_after_T: bool = False,
    passes: int | None = None,
    stop_rules: tuple[str, ...] = STOP_RULES,
    overwrite: bool = False,
) -> None:
    """Add ``solve`` under ``name`` with its facts (``SolverSpec``); refuse to replace a name unless ``overwrite``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a solver name must be a non-empty string, got {name!r}")
    if not callable(solve):
        raise ValueError(f"solver {name!r} must be callable as solve(f, init, *, max_iter=..., tol=..., ...)")
    if name in SOLVERS and not overwrite:
        raise ValueError(f"solver {name!r} is already registered; pass overwrite=True to replace it")
    if passes is not None and (not is_integer(passes) or passes < 1):
        raise ValueError(f"passes (the default budget K) must be a positive integer or None, got {passes!r}")
    SOLVERS[name] = SolverSpec(solve, chain, exact_after_T, passes, tuple(stop_rules))


def solver_names() -> list[str]:
    """The registered names, sorted."""
    return sorted(SOLVERS)


def solver_spec(name: str) -> SolverSpec:
    """The ``SolverSpec`` registered as ``name``."""
    if not isinstance(name, str) or name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; use one of {', '.join(solver_names())}")
    return SOLVERS[name]


def get_solver(name: str) -> Solver:
    """The solver registered as ``name``."""
    return solver_spec(name).solve
