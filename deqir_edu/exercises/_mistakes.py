"""The usual wrong answers of the coding exercises, as formulas, with the hint that names each one.

Every ``*_mistakes`` function takes the inputs of one test case and returns a list of
``(output of a wrong formula, hint)``; the checks turn it into hints with ``_common._named``, so a
student's answer is recognised by what it computes on that case, whatever its code looks like.  The
hint texts are module constants, so that tests (``tests/test_exercise_hints.py``) can look for them.

Errata used here (book chapters 2 and 4): the paper typesets Eq. (3)/(4) with ``beta_t`` under the
square root and ``abar_t`` in place of ``alpha_t``, and its ``c^1_s, c^2_s`` (Proposition 1) use
``sqrt(1 - abar_s)`` where the step to the next state needs ``sqrt(1 - abar_{s-1})``.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product
from typing import Any

import torch

from ..operators.base import null_space_project, project
from ..solvers.anderson import anderson_weights

Mistakes = list[tuple[torch.Tensor, str]]

# ------------------------------------------------------------------------------------------------
# hint texts
# ------------------------------------------------------------------------------------------------
SWAPPED_NOISE = (
    "the noise weights c1 and c2 are swapped: c1 = eta sqrt(1 - abar_prev) multiplies the fresh "
    "noise, c2 = sqrt(1 - eta^2) sqrt(1 - abar_prev) the predicted eps."
)
PAPER_C = (
    "your noise weights use sqrt(1 - abar_t), as the paper prints c^1_s, c^2_s (Proposition 1); the step "
    "to the next state needs sqrt(1 - abar_prev) (errata, Chapter 4), so the last step is noise-free."
)
MISSING_SQRT = (
    "a square root of alpha-bar is missing: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), "
    "and the step weights are sqrt(abar_prev) and sqrt(1 - abar_prev)."
)
PROJECTION_SIGN = (
    "sign error in the projection, Eq. (5): x0_hat = A^+ y + x0 - A^+ A x0 (add A^+ y and x0, "
    "subtract only the range part A^+ A x0 of the estimate)."
)
RECOMPUTED_EPS = (
    "you recomputed eps from x0_hat; keep the network's eps in the c2 term: Eq. (5) replaces "
    "x_{0|t} by x0_hat only in the first term (as the DDNM code does)."
)
PAPER_POSTERIOR = (
    "that is Eq. (3) as typeset in the paper (errata, Chapter 2): beta_t stays outside the square "
    "root, sqrt(abar_prev) beta / (1 - abar_t) for x0, and sqrt(alpha_t) (1 - abar_prev) / "
    "(1 - abar_t) for x_t with alpha_t = abar_t / abar_prev, not abar_t."
)
POSTERIOR_VARIANCE = "you returned the variance (1 - abar_prev) / (1 - abar_t) * beta: return its square root."
F_NO_SQRT = (
    "the weights are square roots: sqrt(abar_j / abar_s) and sqrt(abar_j / abar_T), not the ratios "
    "themselves (r_k = sqrt(abar_{k-1} / abar_k) telescopes)."
)
F_NO_Q_SUM = (
    "the sum is projected too: apply Q to the reversed cumulative sum (x_T and every z_{s+1}, s > j), "
    "then scale by sqrt(abar_j); only z_{j+1} enters without Q."
)
ANDERSON_ORDER = (
    "the weights are in reversed order: alpha[:, i] belongs to row i of G (oldest residual first), "
    "in the order of the rows you were given."
)
ANDERSON_NO_LAM = (
    "the regularisation is missing: the Gram matrix is G G^T + lam I (lam on the diagonal; "
    "lam added to every entry does not change alpha)."
)
ANDERSON_UNNORMALISED = (
    "your weights are proportional to the right ones but do not sum to 1: divide by their "
    "sum, or solve the bordered system, whose first row is the constraint."
)
ANDERSON_NU = (
    "you returned the whole solution [nu; alpha] of the bordered system: drop the multiplier "
    "(the first entry) and return the n weights."
)
PHANTOM_SIGN = (
    "the sign is flipped: return the gradient +dL/dx_T itself, not the descent direction -dL/dx_T "
    "(the optimiser applies the minus sign)."
)
PHANTOM_START = (
    "start the damped steps from the detached fixed point star, not from x_T: the phantom "
    "gradient differentiates only the k steps taken at x*."
)
PHANTOM_STATE = (
    "differentiate the loss of x_0, which is x[0] of the stack (index j = state x_j), not x[-1] "
    "(the noisiest state x_{T-1})."
)


# ------------------------------------------------------------------------------------------------
# chapters 2-3: DDIM, DDPM posterior, DDNM
# ------------------------------------------------------------------------------------------------
def _noise_weights(abar: float, eta: float) -> tuple[float, float]:
    """``(c1, c2) = (eta sqrt(1 - abar), sqrt(1 - eta^2) sqrt(1 - abar))`` for the state with ``abar``."""
    return eta * (1 - abar) ** 0.5, (1 - eta**2) ** 0.5 * (1 - abar) ** 0.5


def _step(
    x0: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor, a_prev: float, c1: float, c2: float
) -> torch.Tensor:
    """The eta-form step ``sqrt(abar_prev) x0 + c2 eps + c1 noise``."""
    return a_prev**0.5 * x0 + c2 * eps + c1 * noise


def ddim_mistakes(
    x_t: torch.Tensor, eps: torch.Tensor, a_t: float, a_prev: float, eta: float, noise: torch.Tensor
) -> Mistakes:
    """Wrong DDIM steps: swapped c1/c2, the paper's literal c^1, c^2, and three missing square roots."""
    x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    c1, c2 = _noise_weights(a_prev, eta)
    x0_no_sqrt = (x_t - (1 - a_t) * eps) / a_t
    return [
        (_step(x0, eps, noise, a_prev, c2, c1), SWAPPED_NOISE),
        (_step(x0, eps, noise, a_prev, *_noise_weights(a_t, eta)), PAPER_C),
        (_step(x0_no_sqrt, eps, noise, a_prev, c1, c2), MISSING_SQRT),
        (a_prev * x0 + c2 * eps + c1 * noise, MISSING_SQRT),
        (_step(x0, eps, noise, a_prev, eta * (1 - a_prev), (1 - eta**2) ** 0.5 * (1 - a_prev)), MISSING_SQRT),
    ]


def posterior_mistakes(x_t: torch.Tensor, x0: torch.Tensor, a_t: float, a_prev: float) -> Mistakes:
    """Wrong posterior means: Eq. (3) as printed (both terms, or one of them), term by term."""
    beta, alpha = 1 - a_t / a_prev, a_t / a_prev
    w0, wt = a_prev**0.5 * beta / (1 - a_t), alpha**0.5 * (1 - a_prev) / (1 - a_t)
    p0 = (a_prev * beta) ** 0.5 / (1 - a_t)  # beta under the root
    pts = [(a_t * (1 - a_prev)) ** 0.5 / (1 - a_t), a_t**0.5 * (1 - a_prev) / (1 - a_t)]  # abar_t for alpha_t
    means = [p0 * x0 + pt * x_t for pt in pts] + [p0 * x0 + wt * x_t] + [w0 * x0 + pt * x_t for pt in pts]
    return [(mean, PAPER_POSTERIOR) for mean in means]


def ddnm_mistakes(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    a_t: float,
    a_prev: float,
    eta: float,
    noise: torch.Tensor,
    op: Any,
    y: torch.Tensor,
) -> Mistakes:
    """Wrong DDNM steps: swapped c1/c2, any other sign pattern of Eq. (5), the paper's literal c^1, c^2,
    and eps recomputed from the corrected estimate, ``(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``."""
    x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    pinv_y, range_x0 = op.A_pinv(y), project(op, x0)
    x0_hat = null_space_project(op, x0, y, pinv_y)
    c1, c2 = _noise_weights(a_prev, eta)
    eps_hat = (x_t - a_t**0.5 * x0_hat) / (1 - a_t) ** 0.5
    signs = [s for s in product((1.0, -1.0), repeat=3) if s != (1.0, 1.0, -1.0)]
    return [
        (_step(x0_hat, eps, noise, a_prev, c2, c1), SWAPPED_NOISE),
        *(
            (_step(s1 * pinv_y + s2 * x0 + s3 * range_x0, eps, noise, a_prev, c1, c2), PROJECTION_SIGN)
            for s1, s2, s3 in signs
        ),
        (_step(x0_hat, eps, noise, a_prev, *_noise_weights(a_t, eta)), PAPER_C),
        (_step(x0_hat, eps_hat, noise, a_prev, c1, c2), RECOMPUTED_EPS),
    ]


# ------------------------------------------------------------------------------------------------
# chapters 4, 5, 7: F, the Anderson weights, the phantom gradient
# ------------------------------------------------------------------------------------------------
def _cumsum_F(
    z: torch.Tensor, x_T: torch.Tensor, w: torch.Tensor, Q: Callable[[torch.Tensor], torch.Tensor], project: bool = True
) -> torch.Tensor:
    """``F_j = w_j P(x_T / w_T + sum_{s>j} z_{s+1} / w_s) + z_{j+1}`` with ``P = Q`` or ``I``."""
    T, w = z.shape[0], w.view(-1, *([1] * (z.dim() - 1)))
    tail = torch.cat([z[1:] / w[1:T], x_T[None] / w[T:]]).flip(0).cumsum(0).flip(0)
    return w[:T] * (Q(tail) if project else tail) + z


def F_mistakes(
    z: torch.Tensor, x_T: torch.Tensor, abar: torch.Tensor, Q: Callable[[torch.Tensor], torch.Tensor]
) -> Mistakes:
    """Wrong F: ratios of alpha-bar without the square root; the sum left unprojected."""
    return [(_cumsum_F(z, x_T, abar, Q), F_NO_SQRT), (_cumsum_F(z, x_T, abar.sqrt(), Q, project=False), F_NO_Q_SUM)]


def bordered_weights(G: torch.Tensor, lam: float) -> torch.Tensor:
    """The minimiser of ``||G^T alpha||^2 + lam ||alpha||^2`` with ``sum(alpha) = 1``, shape ``(B, n)``."""
    return anderson_weights(G @ G.transpose(1, 2), lam)


def anderson_mistakes(alpha: torch.Tensor, G: torch.Tensor, lam: float) -> Mistakes:
    """Wrong weights of shape ``(B, n)`` for the student's ``alpha``: the right ones in reversed order, the
    ones for ``lam = 0``, and the right ones scaled by the student's row sums (``alpha`` is proportional
    to the right weights exactly when it equals that scaling: the 1^T alpha = 1 step was left out)."""
    want = bordered_weights(G, lam)
    out = [(want.flip(1), ANDERSON_ORDER)]
    if lam > 0:
        out.append((bordered_weights(G, 0.0), ANDERSON_NO_LAM))
    sums = alpha.sum(1, keepdim=True)
    if float(sums.abs().min()) > 1e-12:  # alpha proportional to want <=> alpha / sum(alpha) = want
        out.append((want * sums, ANDERSON_UNNORMALISED))
    return out


def phantom_variant(
    make_map: Callable[[torch.Tensor], Any],
    start: torch.Tensor | None,
    x_T: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    tau: float,
    k: int,
    state: int = 0,
) -> torch.Tensor:
    """The damped k-step phantom gradient from ``start`` (``None``: from x_T, with its graph), for ``x[state]``."""
    x_T = x_T.detach().requires_grad_(True)
    with torch.enable_grad():
        F = make_map(x_T)
        x = x_T.expand(F.steps, *x_T.shape) if start is None else start.detach()
        for _ in range(k):
            x = (1 - tau) * x + tau * F(x)
        (grad,) = torch.autograd.grad(loss(x[state]).sum(), x_T, allow_unused=True)
    return torch.zeros_like(x_T) if grad is None else grad
