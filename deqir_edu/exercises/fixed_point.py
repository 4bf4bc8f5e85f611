"""Self-checks of chapters 4-7: the fixed-point map F (Eq. (9)), the Anderson weights (Algorithm 1) and the
phantom gradient (Algorithm 2)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from ..diffusion import GaussianMixturePrior, chain_config, draw_noises
from ..inversion import PhantomConfig, phantom_gradient
from ..operators import make_operator
from ..sampling import FixedPointMap
from ..solvers import anderson, picard
from ._common import _call, _close, _compare, _gen, _matches, _named, _passed, _print_hint
from ._mistakes import (
    ANDERSON_NU,
    PHANTOM_SIGN,
    PHANTOM_START,
    PHANTOM_STATE,
    F_mistakes,
    anderson_mistakes,
    phantom_variant,
)


# ---------------------------------------------------------------------------------------------
# Chapter 4: the cumulative-sum form of F, Proposition 1 / Eq. (9)
# ---------------------------------------------------------------------------------------------
def _small_chain(task: str = "sr2", steps: int = 6, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """A FixedPointMap on a random 2-component prior (3 x 8 x 8 images) and a random state stack."""
    g = _gen(seed)
    prior = GaussianMixturePrior(torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) * 0.5, 0.3)
    op = make_operator(task, (3, 8, 8))
    y = op.A(torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64))
    x_T, noises = draw_noises((2, 3, 8, 8), steps, g)
    f = FixedPointMap(prior, op, y, x_T, noises, chain_config(steps, 0.15))
    return f, torch.randn(steps, 2, 3, 8, 8, generator=g, dtype=torch.float64)


def check_F(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(z, x_T, abar, Q) -> (T, B, C, H, W)``, the right-hand side of Eq. (9) for j = 0..T-1::

        x_j = sqrt(abar_j / abar_T) Q x_T + z_{j+1} + sum_{s=j+1}^{T-1} sqrt(abar_j / abar_s) Q z_{s+1}

    with ``z[k-1] = z_k`` of shape ``(T, B, C, H, W)``, ``abar`` of shape ``(T+1,)`` (``abar[0] = 1``)
    and ``Q`` the null-space projector (it accepts stacks).  Reference: ``FixedPointMap.__call__``.
    """
    name = "F in cumulative-sum form, Eq. (9)"
    for i, task in enumerate(("sr2", "inpaint-box")):
        f, states = _small_chain(task, steps=6, seed=40 + i)
        z = f.z(f.eps(states))
        abar = f.chain.abar.clone()
        ok, got = _call(name, fn, z, f.x_T, abar, f.Q)
        if not ok:
            return False
        want = f(states)
        T, sq = f.steps, abar.sqrt().view(-1, 1, 1, 1, 1)
        double = want + f.Q(z)  # the s = j term counted as well
        no_q = want + sq[:T] / sq[T] * (f.x_T - f.Q(f.x_T))[None]
        is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
        hints = [
            (
                is_tensor and _close(got, double),
                (
                    "the sum starts at s = j + 1: z_{j+1} enters once, without Q (the paper's form starts at s = j "
                    "and splits z_{j+1} into A^+A z_{j+1} + Q z_{j+1})."
                ),
            ),
            (is_tensor and _close(got, no_q), "x_T enters through Q x_T (the range part of x_T is replaced)."),
            *_named(got, F_mistakes(z, f.x_T, abar, f.Q)),
            (
                is_tensor,
                (
                    "weights: sqrt(abar_j / abar_s) for z_{s+1} and sqrt(abar_j / abar_T) for x_T; "
                    "a reversed cumulative sum (flip, cumsum, flip) gives all j at once."
                ),
            ),
        ]
        if not _compare(name, got, want, f"task {task}, T = 6", hints):
            return False
    return _passed(name, "equals FixedPointMap.__call__ for sr2 and inpaint-box, T = 6")


# ---------------------------------------------------------------------------------------------
# Chapter 5: the Anderson weights of Algorithm 1 (bordered least-squares system)
# ---------------------------------------------------------------------------------------------
def check_anderson_weights(fn: Callable[[torch.Tensor, float], torch.Tensor], lam: float = 1e-3) -> bool:
    """Check ``fn(G, lam) -> alpha``: ``G`` of shape ``(B, n, N)`` holds the last n residuals (rows) of
    each image, ``alpha`` of shape ``(B, n)`` minimises ``||G^T alpha||^2 + lam ||alpha||^2`` subject to
    ``sum(alpha) = 1``.  Then an Anderson solve that uses ``fn`` (the paper's m = 4: the last m + 1 = 5
    iterates, beta = 1, first step plain, as
    ``solvers.anderson``) must reproduce the package's ``anderson`` on a small DeqIR map."""
    name = "Anderson weights, Algorithm 1"
    g = _gen(50)
    G = torch.randn(3, 4, 40, generator=g, dtype=torch.float64)
    ok, alpha = _call(name, fn, G, lam)
    if not ok:
        return False
    if not (isinstance(alpha, torch.Tensor) and alpha.reshape(-1).shape[0] == 12):
        print(f"[x] {name}: expected a tensor of shape (B, n) = (3, 4), got {getattr(alpha, 'shape', type(alpha))}")
        if isinstance(alpha, torch.Tensor) and alpha.reshape(-1).shape[0] == 15:
            print(f"    hint: {ANDERSON_NU}")
        return False
    alpha = alpha.reshape(3, 4).to(torch.float64)
    named = _named(alpha, anderson_mistakes(alpha, G, lam))
    sums = alpha.sum(1)
    if float((sums - 1).abs().max()) > 1e-10:
        print(f"[x] {name}: the weights must sum to 1, got sums {sums.tolist()}")
        _print_hint([*named, (True, "the constraint 1^T alpha = 1 is the first row of the bordered system.")])
        return False
    grad = (G @ G.transpose(1, 2) + lam * torch.eye(4, dtype=torch.float64)) @ alpha[..., None]  # = nu 1
    if float((grad - grad.mean(1, keepdim=True)).abs().max()) > 1e-8 * float(grad.abs().max()):
        print(f"[x] {name}: not the minimiser: (G G^T + lam I) alpha must be a multiple of the ones vector.")
        _print_hint(
            [*named, (True, ("solve [[0, 1^T], [1, G G^T + lam I]] [nu; alpha] = [1; 0] with torch.linalg.solve."))]
        )
        return False
    f, _ = _small_chain("inpaint-box", steps=6, seed=51)
    init = f.x_T.expand(6, *f.x_T.shape).clone()
    want, _ = anderson(f, init, max_iter=6, tol=0.0, lam=lam)
    T, B = init.shape[:2]
    X, Fx, x, fx = [], [], init, init
    for k in range(6):  # the loop of solvers.anderson with the student's weights
        fx = f(x)
        X, Fx = (X + [x.transpose(0, 1).reshape(B, -1)])[-5:], (Fx + [fx.transpose(0, 1).reshape(B, -1)])[-5:]  # m + 1
        if k == 0:
            x = fx
            continue
        Fs = torch.stack(Fx, 1)
        a = fn(torch.stack(Fx, 1) - torch.stack(X, 1), lam).reshape(B, 1, -1).to(Fs)
        x = (a @ Fs)[:, 0].reshape(B, T, *init.shape[2:]).transpose(0, 1)
    if not _compare(name, fx, want, "full solve on a DeqIR map, T = 6", [(True, "check the shape (B, n)")]):
        return False
    return _passed(name, f"optimal for lam = {lam:g}, and reproduces solvers.anderson on a DeqIR map")


# ---------------------------------------------------------------------------------------------
# Chapter 7: the damped phantom gradient of DEQ inversion, Eq. (13) with M ~ I
# ---------------------------------------------------------------------------------------------
def check_phantom_gradient(fn: Callable[..., torch.Tensor]) -> bool:
    """Check ``fn(make_map, star, x_T, loss, tau, k) -> dL/dx_T`` of shape ``(B, C, H, W)``: starting at the
    detached fixed point ``star`` (``(T, B, C, H, W)``), take ``k`` damped steps ``x <- (1 - tau) x + tau F(x)``
    with ``F = make_map(x_T)`` differentiable in ``x_T``, then differentiate ``loss(x_0).sum()`` w.r.t. ``x_T``.
    Reference: ``inversion.phantom_gradient`` with the loss of ``x_0``."""
    name = "phantom gradient, Algorithm 2"
    f, _ = _small_chain("inpaint-box", steps=6, seed=60)
    model, op, y, noises, chain = f.model, f.op, f.y, f.step_noise.flip(0), f.chain
    target = torch.randn(f.x_T.shape, generator=_gen(61), dtype=torch.float64)

    def loss(x0: torch.Tensor) -> torch.Tensor:  # (B,)
        return (x0 - target).flatten(1).pow(2).sum(1)

    def make_map(x_T: torch.Tensor) -> FixedPointMap:
        return FixedPointMap(model, op, y, x_T, noises, chain)

    star, _ = picard(f, f.x_T.expand(6, *f.x_T.shape).clone(), max_iter=6, tol=0.0)
    for tau, k in ((0.1, 1), (0.5, 3), (1.0, 6)):
        ok, got = _call(name, fn, make_map, star.clone(), f.x_T.clone(), loss, tau, k)
        if not ok:
            return False
        phantom = PhantomConfig(loss=lambda c: loss(c.x0), phantom_steps=k, tau=tau)
        want = phantom_gradient(model, op, y, f.x_T, noises, chain=chain, phantom=phantom, states=star).grad
        is_tensor = isinstance(got, torch.Tensor) and got.shape == want.shape
        variant = functools.partial(phantom_variant, make_map, x_T=f.x_T, loss=loss, tau=tau, k=k)
        hints = [
            (
                is_tensor and _close(got, want / tau),
                (
                    "the damping tau multiplies the step: x <- (1 - tau) x + tau F(x), so one step gives tau "
                    "times the undamped gradient."
                ),
            ),
            (
                is_tensor and float(got.abs().max()) == 0.0,
                (
                    "the gradient is zero: build the map with x_T.requires_grad_(True) and compute the steps "
                    "with gradients enabled."
                ),
            ),
            (is_tensor and _matches(got, -want), PHANTOM_SIGN),
            (lambda g=got, v=variant: _matches(g, v(None)), PHANTOM_START),  # x_T, with graph
            (lambda g=got, v=variant: _matches(g, v(f.x_T.expand_as(star))), PHANTOM_START),
            (lambda g=got, v=variant: _matches(g, v(star, state=-1)), PHANTOM_STATE),
            (True, "start from star (detached), not from x_T; differentiate loss(x[0]).sum()."),
        ]
        if not _compare(name, got, want, f"tau={tau}, k={k}", hints):
            return False
    return _passed(name, "matches inversion.phantom_gradient for (tau, k) = (0.1, 1), (0.5, 3), (1, 6)")
