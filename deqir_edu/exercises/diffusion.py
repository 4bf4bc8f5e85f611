"""Self-checks of chapters 1-3: the null-space projection (Eq. (5)), the DDIM step, the DDPM posterior and
the DDNM step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..diffusion import chain_config
from ..operators import make_operator, null_space, null_space_project, project
from ..sampling import chain_step
from ._common import _call, _close, _compare, _gen, _named, _passed
from ._mistakes import (
    POSTERIOR_VARIANCE,
    ddim_mistakes,
    ddnm_mistakes,
    posterior_mistakes,
)


# ---------------------------------------------------------------------------------------------
# Chapter 1 and 3: Eq. (5), the null-space projection
# ---------------------------------------------------------------------------------------------
def check_null_space_projection(fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(op, x0, y) -> x0_hat = A^+ y + (I - A^+ A) x0`` (Eq. (5)) on four tasks."""
    name = "null-space projection, Eq. (5)"
    tasks = ("sr4", "inpaint-box", "colorize", "deblur-gauss")
    for i, task in enumerate(tasks):
        g = _gen(i)
        op = make_operator(task, (3, 16, 16))
        x, x0 = (torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))
        y = op.A(x)
        ok, got = _call(name, fn, op, x0, y)
        if not ok:
            return False
        want = null_space_project(op, x0, y)
        hints = [
            (
                isinstance(got, torch.Tensor) and _close(got, null_space(op, x0)),
                "the range part A^+ y is missing: add op.A_pinv(y).",
            ),
            (
                isinstance(got, torch.Tensor) and _close(got, op.A_pinv(y) + project(op, x0)),
                "you kept the range part of x0 (A^+ A x0); the null-space part is x0 - A^+ A x0.",
            ),
            (
                isinstance(got, torch.Tensor) and got.shape == x0.shape and not _close(op.A(got), y),
                "A(x0_hat) should equal y exactly; check the sign of A^+ A x0.",
            ),
            (True, "Eq. (5) reads A^+ y + (I - A^+ A) x0: write each term with op.A and op.A_pinv."),
        ]
        if not _compare(name, got, want, f"task {task}", hints):
            return False
    return _passed(name, f"tasks {', '.join(tasks)}; A(x0_hat) = y holds")


# ---------------------------------------------------------------------------------------------
# Chapter 2: the DDIM update (eta form) and the DDPM posterior, Eqs. (2)-(3)
# ---------------------------------------------------------------------------------------------
class _ConstantEps:
    """A stand-in model that returns a fixed noise prediction (so the step sees a known eps)."""

    def __init__(self, eps: torch.Tensor) -> None:
        self.eps, self.image_shape = eps, tuple(eps.shape[1:])

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.eps


def check_ddim_step(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x_t, eps, abar_t, abar_prev, eta, noise) -> x_prev``, one DDIM step in the eta form::

        x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) (sqrt(1 - eta^2) eps + eta noise),
        x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t),

    against ``sampling.chain_step`` (no operator) for T = 20 steps and eta in {0, 0.15, 0.8}.
    """
    name = "DDIM step (eta form)"
    for i, eta in enumerate((0.0, 0.15, 0.8)):
        coeffs = chain_config(20, eta)
        g = _gen(10 + i)
        for k in (20, 11, 2, 1):
            x_t, eps, noise = (torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
            a_t, a_prev = float(coeffs.abar[k]), float(coeffs.abar[k - 1])
            ok, got = _call(name, fn, x_t, eps, a_t, a_prev, eta, noise)
            if not ok:
                return False
            want = chain_step(_ConstantEps(eps), None, None, x_t, k, coeffs, noise)[0]
            x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
            sigma_ddim = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
            paper_form = a_prev**0.5 * x0 + (1 - a_prev - sigma_ddim**2) ** 0.5 * eps + sigma_ddim * noise
            is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
            hints = [
                (
                    is_tensor and eta > 0 and _close(got, paper_form),
                    (
                        "that is the DDIM paper's sigma(eta); this book (like DDNM and DeqIR) uses "
                        "sigma = eta * sqrt(1 - abar_prev)."
                    ),
                ),
                *_named(got, ddim_mistakes(x_t, eps, a_t, a_prev, eta, noise)),
                (
                    is_tensor and eta == 0,
                    (
                        "with eta = 0 the step is deterministic: check x0 = (x_t - sqrt(1 - abar_t) eps) / "
                        "sqrt(abar_t) and the weight sqrt(1 - abar_prev) of eps."
                    ),
                ),
                (
                    is_tensor,
                    (
                        "the noise weights must satisfy c1^2 + c2^2 = 1 - abar_prev: c1 = eta sqrt(1 - abar_prev) for "
                        "the fresh noise, c2 = sqrt(1 - eta^2) sqrt(1 - abar_prev) for eps."
                    ),
                ),
            ]
            if not _compare(name, got, want, f"eta={eta}, step k={k}", hints):
                return False
    return _passed(name, "matches the package's chain_step for eta = 0, 0.15, 0.8 and 4 steps each")


def check_ddpm_posterior(fn: Callable[..., tuple[torch.Tensor, Any]]) -> bool:
    """Check ``fn(x_t, x0, abar_t, abar_prev) -> (mean, std)`` of q(x_prev | x_t, x0), Eq. (3).

    For a sub-sequence of times the step's beta is ``1 - abar_t / abar_prev``.  The reference is the
    package's eta-form step with the true noise and ``eta_t = sqrt(beta / (1 - abar_t))`` (DDPM is
    the member of the DDIM family with this eta), so the check also confirms that identity.
    """
    name = "DDPM posterior, Eq. (3)"
    base = chain_config(20, 0.0)
    g = _gen(20)
    for k in (20, 12, 5, 2):
        a_t, a_prev = float(base.abar[k]), float(base.abar[k - 1])
        beta = 1 - a_t / a_prev
        coeffs = chain_config(20, (beta / (1 - a_t)) ** 0.5)  # eta_t
        x0, noise = (torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
        x_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * noise
        true_eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
        want_mean = chain_step(_ConstantEps(true_eps), None, None, x_t, k, coeffs, torch.zeros_like(x_t))[0]
        ok, got = _call(name, fn, x_t, x0, a_t, a_prev)
        if not ok:
            return False
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            print(f"[x] {name}: return the pair (mean, std)")
            return False
        mean, std = got
        hints = _posterior_hints(mean, x_t, x0, a_t, a_prev)
        if not _compare(name, mean, want_mean, f"mean at step k={k}", hints):
            return False
        if not _posterior_std_ok(name, k, std, float(coeffs.c1[k])):
            return False
    return _passed(name, "mean and std equal the eta-form step with eta_t = sqrt(beta_t / (1 - abar_t))")


def _posterior_hints(mean: Any, x_t: torch.Tensor, x0: torch.Tensor, a_t: float, a_prev: float) -> list:
    """The hints of a wrong posterior mean: swapped weights, the usual mistakes, else the formula."""
    beta = 1 - a_t / a_prev
    swapped = (
        isinstance(mean, torch.Tensor)
        and mean.shape == x_t.shape
        and _close(mean, a_prev**0.5 * beta / (1 - a_t) * x_t + (a_t / a_prev) ** 0.5 * (1 - a_prev) / (1 - a_t) * x0)
    )
    return [
        (
            swapped,
            (
                "the two weights are swapped: sqrt(abar_prev) beta / (1 - abar_t) multiplies x0, "
                "sqrt(alpha_t) (1 - abar_prev) / (1 - abar_t) multiplies x_t (alpha_t = abar_t / abar_prev)."
            ),
        ),
        *_named(mean, posterior_mistakes(x_t, x0, a_t, a_prev)),
        (
            True,
            (
                "mean = sqrt(abar_prev) beta / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_prev) / "
                "(1 - abar_t) x_t with beta = 1 - alpha_t."
            ),
        ),
    ]


def _posterior_std_ok(name: str, k: int, std: Any, want_std: float) -> bool:
    """Compare the returned std with ``want_std``; print the verdict and a hint (the variance?) if it differs."""
    std_value = float(std.flatten()[0]) if isinstance(std, torch.Tensor) else float(std)
    if abs(std_value - want_std) > 1e-10 * max(1.0, want_std):
        print(f"[x] {name} (std at step k={k}): got {std_value:.6g}, expected {want_std:.6g}.")
        if abs(std_value - want_std**2) <= 1e-10 * max(1.0, want_std**2):
            print(f"    hint: {POSTERIOR_VARIANCE}")
        else:
            print("    hint: the variance is (1 - abar_prev) / (1 - abar_t) * beta; return its square root.")
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Chapter 3: one DDNM step, Eqs. (4)-(5) in the eta form
# ---------------------------------------------------------------------------------------------
def check_ddnm_step(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(x_t, eps, abar_t, abar_prev, eta, noise, op, y) -> x_prev``: the DDIM step of
    ``check_ddim_step`` with ``x_{0|t}`` replaced by ``A^+ y + (I - A^+ A) x_{0|t}`` (Eq. (5)),
    against ``sampling.chain_step`` with the operator, for three tasks.

    A wrong answer is compared with the usual wrong formulas (``_mistakes.ddnm_mistakes``) on the same
    case, and the hint names the one it equals: c1 and c2 swapped, a sign error in Eq. (5), the paper's
    literal ``sqrt(1 - abar_t)`` in c1, c2, or eps recomputed from ``x0_hat``."""
    name = "DDNM step, Eqs. (4)-(5)"
    for i, task in enumerate(("sr2", "inpaint-box", "colorize")):
        op = make_operator(task, (3, 8, 8))
        coeffs = chain_config(20, 0.15)
        g = _gen(30 + i)
        for k in (20, 7, 1):
            x_t, eps, noise, x = (torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(4))
            y = op.A(x)
            a_t, a_prev = float(coeffs.abar[k]), float(coeffs.abar[k - 1])
            ok, got = _call(name, fn, x_t, eps, a_t, a_prev, 0.15, noise, op, y)
            if not ok:
                return False
            model = _ConstantEps(eps)
            want = chain_step(model, op, op.A_pinv(y), x_t, k, coeffs, noise)[0]
            plain = chain_step(model, None, None, x_t, k, coeffs, noise)[0]
            is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
            hints = [
                (is_tensor and _close(got, plain), "this is the plain DDIM step: project x_{0|t} with Eq. (5) first."),
                *_named(got, ddnm_mistakes(x_t, eps, a_t, a_prev, 0.15, noise, op, y)),
                (
                    is_tensor and k == 1 and not _close(op.A(got), y),
                    "the last step (abar_prev = 1) must return x0_hat exactly, so A(x_0) = y.",
                ),
                (
                    True,
                    (
                        "x0_hat = A^+ y + x0 - A^+ A x0 replaces x0 only in the first term; the eps and noise "
                        "terms are those of DDIM."
                    ),
                ),
            ]
            if not _compare(name, got, want, f"task {task}, step k={k}", hints):
                return False
    return _passed(name, "matches the package's chain_step on sr2, inpaint-box and colorize")
