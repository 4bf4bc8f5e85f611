"""Fixed-point solvers for ``x = F(x)`` (Eq. (11)): one registry, one trace type, one file per family.

``trace``, ``contract`` (what a solver may use of the map) <- ``picard``, ``anderson`` (Algorithm 1)
<- ``linearised``, ``freezing`` (freezing, windows, triangular Anderson, the Gaussian linearisation:
beyond the paper) <- ``auto`` (the default preset) <- ``registry`` (``get_solver``, ``solver_spec``,
``register``).  Solvers never import the samplers: they use the map they are given, through its contract.
"""

from .anderson import anderson, anderson_weights
from .auto import AUTO, auto
from .contract import ChainMap, MapFn, Solver
from .freezing import WindowConfig, window_solve
from .picard import picard
from .registry import SOLVERS, SolverSpec, get_solver, register, solver_names, solver_spec
from .trace import STOP_RULES, ConvergenceWarning, SolverTrace

__all__ = [
    "anderson",
    "anderson_weights",
    "auto",
    "AUTO",
    "ChainMap",
    "MapFn",
    "Solver",
    "WindowConfig",
    "window_solve",
    "picard",
    "SOLVERS",
    "SolverSpec",
    "get_solver",
    "solver_spec",
    "register",
    "solver_names",
    "STOP_RULES",
    "SolverTrace",
    "ConvergenceWarning",
]
