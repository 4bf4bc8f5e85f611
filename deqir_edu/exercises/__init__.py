"""Self-checks for the coding exercises of the book ("stub + self-check").

Each ``check_*`` function runs the student's function on seeded random inputs, compares it with the
package's own implementation and prints a short verdict: what differs, the largest error, and a
hint that points at the usual mistake.  It returns ``True`` or ``False`` and never raises, so a
notebook with an unfinished stub (``raise NotImplementedError``) still runs from top to bottom.

Notation (exercise argument -> paper symbol)

    op            A, A^dagger        an operator with ``op.A(x)`` and ``op.A_pinv(y)``
    x0, y         x_{0|t}, y         a clean-image estimate and the measurement
    x_t, eps      x_t, eps_theta     a state of the chain and the predicted noise
    abar_t, abar_prev                alpha-bar of the current and of the next (less noisy) state
    eta           eta                stochasticity of DDIM/DDNM, 0 <= eta < 1
    z, abar, Q    z_k, abar_k, I - A^+ A   pieces of Proposition 1 / Eq. (9) (``check_F``)
    G, lam        G_k, lambda        Anderson residual history (rows) and regularisation, Algorithm 1
    tau, k        tau, k             damping and number of phantom steps, Algorithm 2 / Eq. (13)

The checks live in ``exercises/diffusion.py`` (chapters 1-3) and ``exercises/fixed_point.py``
(chapters 4-7); ``exercises/_common.py`` runs and compares.  A wrong answer is also compared with
the usual wrong formulas on the same case (``exercises/_mistakes.py``): when it equals one of them,
the hint names that mistake and its fix, otherwise it is the check's generic hint.
"""

from __future__ import annotations

from .diffusion import check_ddim_step, check_ddnm_step, check_ddpm_posterior, check_null_space_projection
from .fixed_point import check_anderson_weights, check_F, check_phantom_gradient

__all__ = [
    "check_F",
    "check_anderson_weights",
    "check_ddim_step",
    "check_ddnm_step",
    "check_ddpm_posterior",
    "check_null_space_projection",
    "check_phantom_gradient",
]
