"""Fixed-point solvers for ``x = F(x)`` (Eq. (11)): one registry, one trace type, one file per family.

``trace`` <- ``picard``, ``anderson`` (Algorithm 1), ``freezing`` (freezing, windows, triangular
Anderson, the Gaussian linearisation) <- ``auto`` (the default preset) <- ``registry`` (``get_solver``, ``register``).  Solvers never
import the samplers: they ask the map they are given.
"""

from .anderson import anderson
from .auto import AUTO, auto
from .freezing import WindowConfig, window_solve
from .picard import picard
from .registry import SOLVERS, Solver, get_solver, register, solver_names
from .trace import STOP_RULES, ConvergenceWarning, SolverTrace

__all__ = [
    "anderson",
    "auto",
    "AUTO",
    "WindowConfig",
    "window_solve",
    "picard",
    "SOLVERS",
    "Solver",
    "get_solver",
    "register",
    "solver_names",
    "STOP_RULES",
    "SolverTrace",
    "ConvergenceWarning",
]
