"""DEQ inversion: optimise the initial noise x_T with phantom gradients (Algorithm 2, Eqs. (12)-(13)).

Notation (code name -> paper symbol, DeqIR Sec. 4.2)

    x_T                 x_T                   the optimised initial noise
    states[k]           x_k^*                 fixed point of F (the chain), states[T] = x_T
    fmap                F(.; x_T, y)          ``fixed_point.FixedPointMap``
    tau, phantom_steps  tau, k                damped phantom iteration x <- (1 - tau) x + tau F(x; x_T)
    loss                ell(phi(x_0^*), varphi(y)), Eq. (12): any callable of a ``Chain``
    clean[k-1]          x_{0|k}               the model's clean estimate at state k

Gradient.  By the implicit function theorem, Eq. (13),
dL/dx_T = dL/dx^* (I - J_F)^{-1} dF/dx_T.  The phantom gradient replaces (I - J_F)^{-1} by the
gradient of ``phantom_steps`` damped iterations started at the (detached) fixed point: one step
gives tau dL/dx^* dF/dx_T, i.e. M = I up to the scale tau that Adam ignores.  F is strictly lower
triangular, so J_F is nilpotent and ``phantom_steps = T``, ``tau = 1`` gives the exact gradient.
What one step misses: dF/dx_T is dominated by the term sqrt(abar_j / abar_T) Q x_T of Eq. (9), so the
phantom gradient lives (almost) in the null space of A.  For losses of x_0 alone the exact gradient
does too and the two agree; for the default chain loss the exact gradient also has a large
range-space part (noise in the observed part of x_T changes the intermediate estimates), which the
phantom gradient drops, while its null-space part matches (``tests/test_inversion.py``).

Default loss.  The paper's example loss ||A(x_0^*) - y||^2 is identically zero for a surjective A:
the last DDNM step has abar_0 = 1, c1 = c2 = 0, so x_0 = A^+ y + (I - A^+ A) x_{0|1} and
A x_0 = A A^+ y = y whatever x_T is; its gradient is zero (``measurement_loss``, tested).  The
default is therefore ``chain_consistency_loss``: how far the prior's own clean estimates along the
chain are from the measurement, sum_k w_k ||A(x_{0|k}) - y||^2 with w_k proportional to abar_k.  It
needs no ground truth, is zero when the unconditional prior already agrees with y at every step
(so the projections of Eq. (5) have nothing to correct), and down-weights the very noisy states
whose estimates are blurred means anyway.  On the exact prior it repairs chains that committed to
the wrong mixture component (random-pixel inpainting, T = 10: 9 of 64 images below 15 dB -> 1);
where DDNM is already right it cannot help (PSNR moves by -0.1 to -0.6 dB).  It costs T network
evaluations with a graph per step; a loss of x_0 alone keeps the graph to one evaluation.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .fixed_point import FixedPointMap
from .samplers import ClippedModel, chain_step, prepare_chain, progress
from .solvers import anderson, picard

__all__ = [
    "Chain",
    "GradientResult",
    "InversionResult",
    "chain_consistency_loss",
    "measurement_loss",
    "reference_loss",
    "exact_chain_gradient",
    "phantom_gradient",
    "deq_invert",
]


@dataclass
class Chain:
    """A restoration chain as a loss sees it.

    Attributes:
        states: ``(T + 1, B, C, H, W)``, ``states[k] = x_k`` (``states[0]`` the restored image).
        op, y: the degradation and the measurement.
        abar: ``(T + 1,)`` float64, ``abar[0] = 1``.
        clean: ``(T, B, C, H, W)`` clean estimates ``x_{0|k}``, k = 1..T (index k-1); computed
            lazily by ``fmap`` if not given.
    """

    states: torch.Tensor
    op: Any
    y: torch.Tensor
    abar: torch.Tensor
    fmap: FixedPointMap | None = None
    _clean: torch.Tensor | None = field(default=None, repr=False)

    @property
    def x0(self) -> torch.Tensor:
        return self.states[0]

    @property
    def clean(self) -> torch.Tensor:
        if self._clean is None:
            self._clean = self.fmap.clean_estimates(self.states[:-1])  # T more network evaluations
        return self._clean


Loss = Callable[[Chain], torch.Tensor]


def measurement_loss(chain: Chain) -> torch.Tensor:
    """``||A(x_0) - y||^2`` per image, ``(B,)``.  Identically 0 for surjective A (module docstring)."""
    return (chain.op.A(chain.x0) - chain.y).flatten(1).pow(2).sum(1)


def reference_loss(x_ref: torch.Tensor) -> Loss:
    """``||x_0 - x_ref||^2`` per image: the supervised loss of Sec. 4.2 (needs the ground truth)."""
    return lambda chain: (chain.x0 - x_ref).flatten(1).pow(2).sum(1)


def chain_consistency_loss(chain: Chain) -> torch.Tensor:
    """``sum_k w_k ||A(x_{0|k}) - y||^2 / n_y`` with ``w_k = abar_k / sum_j abar_j``, per image ``(B,)``."""
    clean = chain.clean  # (T, B, C, H, W)
    T, B = clean.shape[:2]
    r = (chain.op.A(clean.reshape(T * B, *clean.shape[2:])) - chain.y.repeat(T, *[1] * (chain.y.dim() - 1)))
    per_state = r.reshape(T, B, -1).pow(2).mean(2)  # (T, B)
    w = chain.abar[1:].to(per_state) / chain.abar[1:].sum()
    return (w[:, None] * per_state).sum(0)


@dataclass
class GradientResult:
    """``loss`` ``(B,)`` at x_T, its gradient ``grad`` ``(B, C, H, W)``, and the chain ``states``."""

    loss: torch.Tensor
    grad: torch.Tensor
    states: torch.Tensor


def _setup(model, op, y, steps, eta, x_T, noises, clip):
    model = ClippedModel(model) if clip and not isinstance(model, ClippedModel) else model
    coeffs, x_T, noises, pinv_y = prepare_chain(model, op, y, steps, eta, None, (x_T, noises))
    return model, coeffs, pinv_y


def exact_chain_gradient(
    model: Any, op: Any, y: torch.Tensor, x_T: torch.Tensor, noises: torch.Tensor,
    steps: int = 20, eta: float = 0.15, loss: Loss | None = None, clip: bool = False,
) -> GradientResult:
    """Exact ``dL/dx_T`` by backpropagation through the whole sequential chain (memory ~ T steps).

    ``x_T`` ``(B, C, H, W)`` and ``noises`` ``(T, B, C, H, W)`` as from ``draw_noises``.
    """
    loss = chain_consistency_loss if loss is None else loss
    model, coeffs, pinv_y = _setup(model, op, y, steps, eta, x_T, noises, clip)
    x_T = x_T.detach().requires_grad_(True)
    x, states, clean = x_T, [x_T], []
    with torch.enable_grad():
        for k in range(steps, 0, -1):  # Eqs. (4)-(5), k = T..1
            x, x0_pred, _ = chain_step(model, op, pinv_y, x, k, coeffs, noises[steps - k])
            states.append(x)
            clean.append(x0_pred)
        chain = Chain(torch.stack(states[::-1]), op, y, coeffs.abar, _clean=torch.stack(clean[::-1]))
        value = loss(chain)
        (grad,) = torch.autograd.grad(value.sum(), x_T, allow_unused=True)
    grad = torch.zeros_like(x_T) if grad is None else grad
    return GradientResult(value.detach(), grad.detach(), chain.states.detach())


def phantom_gradient(
    model: Any, op: Any, y: torch.Tensor, x_T: torch.Tensor, noises: torch.Tensor,
    steps: int = 20, eta: float = 0.15, loss: Loss | None = None, phantom_steps: int = 1,
    tau: float = 0.1, states: torch.Tensor | None = None, solver: str = "picard",
    max_iter: int | None = None, tol: float = 0.0, clip: bool = False, chunk_size: int | None = None,
    **solver_options: Any,
) -> GradientResult:
    """Phantom gradient of Eq. (13): fixed point without gradient, then damped steps with gradient.

    Args:
        states: warm start ``(T, B, C, H, W)`` for the solver (default: ``x_T`` everywhere).
        solver, max_iter, tol: fixed-point solve (default Picard with T iterations: exact).
        phantom_steps, tau: ``x <- (1 - tau) x + tau F(x; x_T)`` this many times, graph attached.
        chunk_size: states per network call (``FixedPointMap``), bounds the memory of the solve.

    Memory: with a frozen model, one phantom step, and a loss of x_0 only, the graph holds a single
    network evaluation (at x_T; see ``FixedPointMap.eps``).  The default chain loss evaluates the
    model on all T phantom states with a graph, like the exact chain gradient.
    """
    if not isinstance(phantom_steps, int) or phantom_steps < 1:
        raise ValueError(f"phantom_steps must be a positive integer, got {phantom_steps!r}")
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must lie in (0, 1], got {tau}")
    solvers = {"anderson": anderson, "picard": picard}
    if solver not in solvers:
        raise ValueError(f"unknown solver {solver!r}; use one of {sorted(solvers)}")
    loss = chain_consistency_loss if loss is None else loss
    model, coeffs, _ = _setup(model, op, y, steps, eta, x_T, noises, clip)
    x_T = x_T.detach()
    init = x_T.expand(steps, *x_T.shape).clone() if states is None else states.detach()
    with torch.no_grad():  # Algorithm 2, lines 3-4
        star, _ = solvers[solver](FixedPointMap(model, op, y, x_T, noises, coeffs, chunk_size), init,
                                  max_iter=steps if max_iter is None else max_iter, tol=tol, **solver_options)
    x_T = x_T.requires_grad_(True)
    with torch.enable_grad():  # Algorithm 2, line 5
        fmap = FixedPointMap(model, op, y, x_T, noises, coeffs, chunk_size)
        x = star
        for _ in range(phantom_steps):
            x = (1 - tau) * x + tau * fmap(x)
        chain = Chain(torch.cat([x, x_T[None]]), op, y, coeffs.abar, fmap)
        value = loss(chain)
        (grad,) = torch.autograd.grad(value.sum(), x_T, allow_unused=True)
    grad = torch.zeros_like(x_T) if grad is None else grad
    return GradientResult(value.detach(), grad.detach(), chain.states.detach())


@dataclass
class InversionResult:
    """Output of ``deq_invert``.

    Attributes:
        x_T: optimised noise ``(B, C, H, W)``; x0: its restoration ``(B, C, H, W)``.
        states: final chain ``(T + 1, B, C, H, W)``.
        loss_history: ``(S + 1, B)`` loss at every x_T visited (row 0: the initial noise).
        x0_initial: restoration from the initial noise, for comparison.
    """

    x_T: torch.Tensor
    x0: torch.Tensor
    states: torch.Tensor
    loss_history: torch.Tensor
    x0_initial: torch.Tensor


def deq_invert(
    model: Any, op: Any, y: torch.Tensor, steps: int = 20, eta: float = 0.15,
    x_T: torch.Tensor | None = None, generator: torch.Generator | None = None,
    noises: torch.Tensor | None = None, n_steps: int = 20, lr: float = 0.05,
    phantom_steps: int = 1, tau: float = 0.1, loss: Loss | None = None, solver: str = "picard",
    max_iter: int | None = None, tol: float = 0.0, clip: bool = False, chunk_size: int | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None, **solver_options: Any,
) -> InversionResult:
    """Algorithm 2: ``n_steps`` Adam steps on ``x_T`` along the phantom gradient of ``loss``.

    Args:
        x_T, noises: ``(B, C, H, W)`` start and ``(T, B, C, H, W)`` step noises (kept fixed);
            missing ones are drawn from ``generator`` in the order of ``draw_noises``.
        n_steps, lr: number of updates S and Adam's learning rate.
        loss: callable ``Chain -> (B,)``; default ``chain_consistency_loss`` (module docstring).
        solver, max_iter, tol: fixed-point solves, warm-started from the previous chain
            (default Picard with T iterations: exact).
        callback: after every update, ``{"step", "loss", "x_T", "states"}`` (loss and states of the
            x_T before the update, x_T after it).
    """
    if not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    model = ClippedModel(model) if clip and not isinstance(model, ClippedModel) else model
    given = None if x_T is None or noises is None else (x_T, noises)
    _, x0_T, noise_all, _ = prepare_chain(model, op, y, steps, eta, generator, given)
    x_T = (x0_T if x_T is None else x_T).detach().clone()
    noises = noise_all if noises is None else noises
    opt = torch.optim.Adam([x_T.requires_grad_(True)], lr=lr)
    kw = dict(steps=steps, eta=eta, loss=loss, phantom_steps=phantom_steps, tau=tau, solver=solver,
              max_iter=max_iter, tol=tol, chunk_size=chunk_size, **solver_options)
    history, states, x0_initial = [], None, None
    for step in progress(range(n_steps + 1), "DEQ inversion", total=n_steps + 1):
        res = phantom_gradient(model, op, y, x_T.detach(), noises, states=states, **kw)
        states = res.states[:-1]
        history.append(res.loss)
        if x0_initial is None:
            x0_initial = res.states[0]
        if step == n_steps:  # the last pass only evaluates the final x_T
            break
        opt.zero_grad()
        x_T.grad = res.grad
        opt.step()  # Algorithm 2, line 7 (Adam instead of plain gradient descent)
        if callback is not None:
            callback({"step": step + 1, "loss": res.loss, "x_T": x_T.detach(), "states": res.states})
    return InversionResult(x_T.detach(), res.states[0], res.states, torch.stack(history), x0_initial)
