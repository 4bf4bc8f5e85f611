"""The exercise self-checks name the usual mistakes (issue #18).

For each usual wrong answer of a coding exercise we write the wrong function, run the check and
assert that it fails and prints the hint naming that mistake, and none of the other named hints of
the check.  The reference answers pass, and an unrelated wrong answer gets the check's generic hint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
import torch

import deqir_edu.exercises as ex
from deqir_edu.exercises import _mistakes as m

Fn = Callable[..., Any]


def _run(check: Fn, fn: Fn, capsys: pytest.CaptureFixture[str], **kwargs: Any) -> tuple[bool, str]:
    result = check(fn, **kwargs)
    return result, capsys.readouterr().out


def _assert_named(
    check: Fn, fn: Fn, hint: str, others: list[str], capsys: pytest.CaptureFixture[str], **kwargs: Any
) -> None:
    """The check fails, prints ``hint`` and none of ``others``."""
    ok, out = _run(check, fn, capsys, **kwargs)
    assert ok is False, out
    assert "[x]" in out and f"hint: {hint}" in out, out
    assert not [o for o in others if o != hint and o in out], out


# ------------------------------------------------------------------------------------------------
# chapter 3: the DDNM step (the four mistakes of issue #18)
# ------------------------------------------------------------------------------------------------
def _x0(x_t: torch.Tensor, eps: torch.Tensor, a_t: float) -> torch.Tensor:
    return (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5


def ddnm(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))
    c1, c2 = eta * (1 - a_prev) ** 0.5, (1 - eta**2) ** 0.5 * (1 - a_prev) ** 0.5
    return a_prev**0.5 * x0_hat + c2 * eps + c1 * noise


def ddnm_swapped(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))
    c1, c2 = eta * (1 - a_prev) ** 0.5, (1 - eta**2) ** 0.5 * (1 - a_prev) ** 0.5
    return a_prev**0.5 * x0_hat + c1 * eps + c2 * noise


def ddnm_sign_a(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = op.A_pinv(y) - x0 + op.A_pinv(op.A(x0))
    return a_prev**0.5 * x0_hat + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)


def ddnm_sign_b(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = x0 + op.A_pinv(op.A(x0)) - op.A_pinv(y)
    return a_prev**0.5 * x0_hat + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)


def ddnm_paper_c(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))
    c1, c2 = (1 - a_t) ** 0.5 * eta, (1 - a_t) ** 0.5 * (1 - eta**2) ** 0.5  # c^1_s, c^2_s as printed
    return a_prev**0.5 * x0_hat + c2 * eps + c1 * noise


def ddnm_recomputed_eps(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = _x0(x_t, eps, a_t)
    x0_hat = op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))
    eps_hat = (x_t - a_t**0.5 * x0_hat) / (1 - a_t) ** 0.5
    c1, c2 = eta * (1 - a_prev) ** 0.5, (1 - eta**2) ** 0.5 * (1 - a_prev) ** 0.5
    return a_prev**0.5 * x0_hat + c2 * eps_hat + c1 * noise


def ddnm_unrelated(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    return 1.01 * ddnm(x_t, eps, a_t, a_prev, eta, noise, op, y)


DDNM_HINTS = [m.SWAPPED_NOISE, m.PROJECTION_SIGN, m.PAPER_C, m.RECOMPUTED_EPS]
DDNM_GENERIC = "x0_hat = A^+ y + x0 - A^+ A x0 replaces x0 only in the first term"


def test_ddnm_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    ok, out = _run(ex.check_ddnm_step, ddnm, capsys)
    assert ok is True and out.startswith("[ok] DDNM step") and "hint" not in out, out


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (ddnm_swapped, m.SWAPPED_NOISE),
        (ddnm_sign_a, m.PROJECTION_SIGN),
        (ddnm_sign_b, m.PROJECTION_SIGN),
        (ddnm_paper_c, m.PAPER_C),
        (ddnm_recomputed_eps, m.RECOMPUTED_EPS),
    ],
    ids=["swapped", "sign-a", "sign-b", "paper-c", "recomputed-eps"],
)
def test_ddnm_names_the_mistake(fn: Fn, hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_named(ex.check_ddnm_step, fn, hint, [*DDNM_HINTS, DDNM_GENERIC], capsys)


def test_ddnm_every_sign_pattern_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    """All seven wrong sign patterns of s1 A^+ y + s2 x0 + s3 A^+ A x0 get the sign hint."""
    for s1, s2, s3 in [(1, 1, 1), (1, -1, -1), (1, -1, 1), (-1, 1, 1), (-1, 1, -1), (-1, -1, 1), (-1, -1, -1)]:

        def fn(x_t, eps, a_t, a_prev, eta, noise, op, y, s=(s1, s2, s3)):  # type: ignore[no-untyped-def]
            x0 = _x0(x_t, eps, a_t)
            x0_hat = s[0] * op.A_pinv(y) + s[1] * x0 + s[2] * op.A_pinv(op.A(x0))
            return a_prev**0.5 * x0_hat + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)

        _assert_named(ex.check_ddnm_step, fn, m.PROJECTION_SIGN, [*DDNM_HINTS, DDNM_GENERIC], capsys)


def test_ddnm_unrelated_mistake_gets_the_generic_hint(capsys: pytest.CaptureFixture[str]) -> None:
    _assert_named(ex.check_ddnm_step, ddnm_unrelated, DDNM_GENERIC, DDNM_HINTS, capsys)


def test_ddnm_plain_ddim_keeps_its_hint(capsys: pytest.CaptureFixture[str]) -> None:
    def plain(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
        return a_prev**0.5 * _x0(x_t, eps, a_t) + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)

    _assert_named(ex.check_ddnm_step, plain, "this is the plain DDIM step", DDNM_HINTS, capsys)


# ------------------------------------------------------------------------------------------------
# chapter 2: the DDIM step and the DDPM posterior
# ------------------------------------------------------------------------------------------------
def ddim(
    x_t,
    eps,
    a_t,
    a_prev,
    eta,
    noise,
    swap=False,
    paper=False,
    sqrt_x0=True,  # type: ignore[no-untyped-def]
    sqrt_prev=True,
    sqrt_noise=True,
):
    """The DDIM step of chapter 2; each keyword switches on one usual mistake."""
    x0 = _x0(x_t, eps, a_t) if sqrt_x0 else (x_t - (1 - a_t) * eps) / a_t
    s = 1 - (a_t if paper else a_prev)
    s = s**0.5 if sqrt_noise else s
    c1, c2 = eta * s, (1 - eta**2) ** 0.5 * s
    if swap:
        c1, c2 = c2, c1
    return (a_prev**0.5 if sqrt_prev else a_prev) * x0 + c2 * eps + c1 * noise


DDIM_HINTS = [m.SWAPPED_NOISE, m.PAPER_C, m.MISSING_SQRT]


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"swap": True}, m.SWAPPED_NOISE),
        ({"paper": True}, m.PAPER_C),
        ({"sqrt_x0": False}, m.MISSING_SQRT),
        ({"sqrt_prev": False}, m.MISSING_SQRT),
        ({"sqrt_noise": False}, m.MISSING_SQRT),
    ],
    ids=["swapped", "paper-c", "no-sqrt-x0", "no-sqrt-abar-prev", "no-sqrt-noise"],
)
def test_ddim_names_the_mistake(kwargs: dict[str, bool], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_named(ex.check_ddim_step, lambda *args: ddim(*args, **kwargs), hint, DDIM_HINTS, capsys)


def test_ddim_reference_and_generic(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(ex.check_ddim_step, ddim, capsys)[0] is True
    _assert_named(
        ex.check_ddim_step, lambda *a: 0.9 * ddim(*a), "with eta = 0 the step is deterministic", DDIM_HINTS, capsys
    )


def posterior(x_t, x0, a_t, a_prev, paper=False, paper_x0=False, variance=False):  # type: ignore[no-untyped-def]
    """The DDPM posterior of chapter 2; ``paper``: Eq. (3) as typeset, ``paper_x0``: only its x0 weight."""
    beta = 1 - a_t / a_prev
    w0 = (a_prev * beta) ** 0.5 / (1 - a_t) if paper or paper_x0 else a_prev**0.5 * beta / (1 - a_t)
    wt = (a_t * (1 - a_prev)) ** 0.5 / (1 - a_t) if paper else (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t)
    mean = w0 * x0 + wt * x_t
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean, var if variance else var**0.5


def test_posterior_hints(capsys: pytest.CaptureFixture[str]) -> None:
    named = [m.PAPER_POSTERIOR, m.POSTERIOR_VARIANCE, "the two weights are swapped"]
    assert _run(ex.check_ddpm_posterior, posterior, capsys)[0] is True
    _assert_named(ex.check_ddpm_posterior, lambda *a: posterior(*a, paper=True), m.PAPER_POSTERIOR, named, capsys)
    _assert_named(ex.check_ddpm_posterior, lambda *a: posterior(*a, paper_x0=True), m.PAPER_POSTERIOR, named, capsys)
    _assert_named(ex.check_ddpm_posterior, lambda *a: posterior(*a, variance=True), m.POSTERIOR_VARIANCE, named, capsys)
    _assert_named(
        ex.check_ddpm_posterior,
        lambda *a: (1.1 * posterior(*a)[0], posterior(*a)[1]),
        "mean = sqrt(abar_prev) beta",
        named,
        capsys,
    )


# ------------------------------------------------------------------------------------------------
# chapters 4, 5, 7: F, the Anderson weights, the phantom gradient
# ------------------------------------------------------------------------------------------------
def cumulative_F(z, x_T, abar, Q, sqrt=True, project=True):  # type: ignore[no-untyped-def]
    T, w = z.shape[0], (abar.sqrt() if sqrt else abar).view(-1, 1, 1, 1, 1)
    tail = torch.cat([z[1:] / w[1:T], x_T[None] / w[T:]]).flip(0).cumsum(0).flip(0)
    return w[:T] * (Q(tail) if project else tail) + z


def test_F_hints(capsys: pytest.CaptureFixture[str]) -> None:
    named = [m.F_NO_SQRT, m.F_NO_Q_SUM, "the sum starts at s = j + 1", "x_T enters through Q x_T"]
    assert _run(ex.check_F, cumulative_F, capsys)[0] is True
    _assert_named(ex.check_F, lambda *a: cumulative_F(*a, sqrt=False), m.F_NO_SQRT, named, capsys)
    _assert_named(ex.check_F, lambda *a: cumulative_F(*a, project=False), m.F_NO_Q_SUM, named, capsys)
    _assert_named(
        ex.check_F,
        lambda z, x_T, abar, Q: cumulative_F(z, x_T, abar, Q) + 0.1 * z,
        "weights: sqrt(abar_j / abar_s)",
        named,
        capsys,
    )


# [nu, alpha] of the bordered system: the reference solution of tests/test_book.py (slice [:, 1:])
weights = importlib.import_module("test_book")._bordered


@pytest.mark.parametrize(
    ("fn", "hint"),
    [
        (lambda G, lam: weights(G, lam)[:, 1:].flip(1), m.ANDERSON_ORDER),
        (lambda G, lam: weights(G, 0.0)[:, 1:], m.ANDERSON_NO_LAM),
        (lambda G, lam: 3.0 * weights(G, lam)[:, 1:], m.ANDERSON_UNNORMALISED),
        (weights, m.ANDERSON_NU),
        (lambda G, lam: torch.full(G.shape[:2], 1.0 / G.shape[1], dtype=G.dtype), "solve [[0, 1^T]"),
    ],
    ids=["order", "no-lam", "unnormalised", "nu", "generic"],
)
def test_anderson_hints(fn: Fn, hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    named = [m.ANDERSON_ORDER, m.ANDERSON_NO_LAM, m.ANDERSON_UNNORMALISED, m.ANDERSON_NU]
    _assert_named(ex.check_anderson_weights, fn, hint, named, capsys)


def test_anderson_reference_passes_with_and_without_lam(capsys: pytest.CaptureFixture[str]) -> None:
    def right(G: torch.Tensor, lam: float) -> torch.Tensor:
        return weights(G, lam)[:, 1:]

    assert _run(ex.check_anderson_weights, right, capsys)[0] is True
    ok, out = _run(ex.check_anderson_weights, right, capsys, lam=0.0)
    assert ok is True and m.ANDERSON_NO_LAM not in out


def phantom(make_map, star, x_T, loss, tau, k, sign=1.0, from_x_T=False, state=0):  # type: ignore[no-untyped-def]
    x_T = x_T.detach().requires_grad_(True)
    F = make_map(x_T)
    x = x_T.expand_as(star) if from_x_T else star.detach()
    for _ in range(k):
        x = (1 - tau) * x + tau * F(x)
    return sign * torch.autograd.grad(loss(x[state]).sum(), x_T)[0]


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"sign": -1.0}, m.PHANTOM_SIGN),
        ({"from_x_T": True}, m.PHANTOM_START),
        ({"state": -1}, m.PHANTOM_STATE),
        ({"sign": 1.3}, "start from star (detached), not from x_T; differentiate"),
    ],
    ids=["sign", "start", "state", "generic"],
)
def test_phantom_hints(kwargs: dict[str, Any], hint: str, capsys: pytest.CaptureFixture[str]) -> None:
    named = [m.PHANTOM_SIGN, m.PHANTOM_START, m.PHANTOM_STATE, "the damping tau multiplies the step"]
    _assert_named(ex.check_phantom_gradient, lambda *a: phantom(*a, **kwargs), hint, named, capsys)


def test_phantom_reference_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(ex.check_phantom_gradient, phantom, capsys)[0] is True
