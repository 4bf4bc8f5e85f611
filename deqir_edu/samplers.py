"""Samplers: unconditional DDIM, sequential DDNM (Eqs. (4)-(5)) and parallel DeqIR (Proposition 1).

Notation (code name -> paper symbol; chain convention of ``schedules.py``)

    x_T, states[k]    x_T, x_k              chain states, k = T..0; x_0 is the restored image
    noises[T - k]     eps_k                 fresh noise of the step k -> k-1 (see ``draw_noises``)
    eps               eps_theta(x_k, tau_k) network noise prediction at chain state k
    x0_pred           x_{0|k}               (x_k - sqrt(1 - abar_k) eps) / sqrt(abar_k)
    x0_hat            hat x_{0|k}           A^+ y + (I - A^+ A) x_{0|k}, Eq. (5)
    op.A, op.A_pinv   A, A^+                degradation and its pseudo-inverse
    c1, c2            c^1_k, c^2_k          see ``chain_coefficients``

One step ``k -> k-1`` (DDNM with the DDIM eta form, the update whose unrolling is Eq. (9))::

    x_{k-1} = sqrt(abar_{k-1}) hat x_{0|k} + c2_k eps_theta(x_k) + c1_k eps_k

``ddnm_sample`` runs this step T times; ``deqir_sample`` solves the fixed-point system
``x_{0:T-1} = F(x_{0:T-1}; x_T, y)`` (Eq. (8), ``fixed_point.py``) with Picard or Anderson
(``solvers.py``).  With the same noises both give the same chain (Proposition 1).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import check_finite, check_image
from .fixed_point import FixedPointMap, alphas_cumprod_of
from .schedules import ChainCoefficients, alphas_cumprod, chain_coefficients, linear_betas
from .solvers import SolverTrace, anderson, picard

__all__ = [
    "ClippedModel",
    "draw_noises",
    "ddim_sample",
    "ddnm_sample",
    "deqir_sample",
    "DeqIRResult",
    "prepare_chain",
]

Callback = Callable[[dict[str, Any]], None]


def progress(it: Iterable, desc: str, total: int | None = None) -> Iterable:
    """tqdm bar for long loops; silent when ``TQDM_DISABLE`` is set or output is not a terminal."""
    from tqdm.auto import tqdm

    disable = True if os.environ.get("TQDM_DISABLE") else None
    return tqdm(it, desc=desc, total=total, leave=False, disable=disable)


class ClippedModel:
    """Wrap an eps-model so that its clean estimate is clipped to ``[-1, 1]``.

    ``eps' = (x_t - sqrt(abar_t) clip(x_{0|t}, -1, 1)) / sqrt(1 - abar_t)``.  Because the clipping
    happens inside the model, the sequential and the parallel sampler see the same function and
    Proposition 1 still holds.  Keeps ``image_shape`` and ``alphas_cumprod`` of the wrapped model.
    """

    def __init__(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.model = model
        self.image_shape = tuple(model.image_shape)
        ac = alphas_cumprod_of(model)
        self.alphas_cumprod = ac if ac is not None else alphas_cumprod(linear_betas())

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.model(x_t, t)  # (B, C, H, W)
        a = self.alphas_cumprod.to(x_t.device)[t.to(x_t.device)].to(x_t.dtype).view(-1, 1, 1, 1)
        x0 = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1.0, 1.0)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def draw_noises(
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw all the randomness of a T-step chain up front, in ONE documented order.

    One call ``torch.randn((T + 1, B, C, H, W))``; slice 0 is ``x_T``, slice ``1 + i`` is the noise
    of the ``(i+1)``-th step in sampling order ``k = T, T-1, ..., 1``, so ``noises[T - k]`` is used
    by the step ``k -> k-1`` (``noises[0]`` by ``T -> T-1``).  Noises are drawn even for eta = 0 so
    that a generator gives the same ``x_T`` whatever eta is.

    Returns:
        ``x_T`` of shape ``(B, C, H, W)`` and ``noises`` of shape ``(T, B, C, H, W)``.
    """
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    z = torch.randn((steps + 1, *shape), generator=generator, dtype=dtype, device=device)
    return z[0], z[1:]


def prepare_chain(
    model: Any,
    op: Any | None,
    y: torch.Tensor | None,
    steps: int,
    eta: float,
    generator: torch.Generator | None,
    noises: tuple[torch.Tensor, torch.Tensor] | None,
    batch: int | None = None,
) -> tuple[ChainCoefficients, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate the inputs of a sampler; return ``(coeffs, x_T, noises, A^+ y)``.

    ``y`` fixes batch, dtype and device; without an operator (``ddim_sample``) ``batch`` does.
    ``noises`` is ``(x_T, noises)`` as returned by ``draw_noises``; it takes precedence over
    ``generator``.
    """
    shape = tuple(model.image_shape)
    pinv_y = None
    if op is not None:
        if not isinstance(y, torch.Tensor) or y.dim() < 2:
            raise ValueError("y must be a batched tensor, e.g. y = op.A(x) of a (B, C, H, W) image")
        check_finite(y, "y")
        try:
            pinv_y = op.A_pinv(y)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"y of shape {tuple(y.shape)} does not fit the operator: {err}") from err
        check_image(pinv_y, shape, f"A_pinv(y) (y of shape {tuple(y.shape)})")
        batch, dtype, device = y.shape[0], y.dtype, y.device
    else:
        dtype, device = torch.float64, None
    coeffs = chain_coefficients(steps, eta, alphas_cumprod_of(model))
    if noises is None:
        x_T, eps = draw_noises((batch, *shape), steps, generator, dtype, device)
    else:
        if not (isinstance(noises, (tuple, list)) and len(noises) == 2):
            raise ValueError("noises must be the pair (x_T, noises) returned by draw_noises")
        x_T, eps = noises
        check_image(x_T, shape, "x_T")
        if batch is not None and x_T.shape[0] != batch:
            raise ValueError(f"x_T has batch {x_T.shape[0]} but y has batch {batch}")
        if not isinstance(eps, torch.Tensor) or tuple(eps.shape) != (steps, *x_T.shape):
            got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
            raise ValueError(f"noises must have shape (T, B, C, H, W) = {(steps, *x_T.shape)}, got {got}")
        check_finite(eps, "noises")
    return coeffs, x_T, eps, pinv_y


def chain_step(
    model: Any,
    op: Any | None,
    pinv_y: torch.Tensor | None,
    x_k: torch.Tensor,
    k: int,
    coeffs: ChainCoefficients,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step ``x_k -> x_{k-1}`` (Eqs. (4)-(5)); without ``op`` it is plain DDIM.

    Returns ``(x_{k-1}, x_{0|k}, hat x_{0|k})``, each ``(B, C, H, W)``.
    """
    a_k, a_prev = coeffs.abar[k].item(), coeffs.abar[k - 1].item()
    t = torch.full((x_k.shape[0],), int(coeffs.timesteps[k - 1]), dtype=torch.long, device=x_k.device)
    eps = model(x_k, t)
    x0_pred = (x_k - (1 - a_k) ** 0.5 * eps) / a_k**0.5  # x_{0|k}
    x0_hat = x0_pred if op is None else pinv_y + x0_pred - op.A_pinv(op.A(x0_pred))  # Eq. (5)
    x_prev = a_prev**0.5 * x0_hat + coeffs.c2[k].item() * eps + coeffs.c1[k].item() * noise  # Eq. (4)
    return x_prev, x0_pred, x0_hat


def _run_chain(model, op, pinv_y, coeffs, x_T, eps, callback, desc) -> torch.Tensor:
    x = x_T
    steps = coeffs.steps
    for k in progress(range(steps, 0, -1), desc, total=steps):
        x_prev, x0_pred, x0_hat = chain_step(model, op, pinv_y, x, k, coeffs, eps[steps - k])
        if callback is not None:
            callback({"k": k, "t": int(coeffs.timesteps[k - 1]), "x": x, "x0_pred": x0_pred,
                      "x0_hat": x0_hat, "x_next": x_prev})
        x = x_prev
    return x


def ddim_sample(
    model: Any,
    shape: int | tuple[int, int, int, int],
    steps: int = 20,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Unconditional DDIM (eta form of ``schedules.py``); ``shape`` is ``n`` or ``(n, C, H, W)``.

    Returns ``x_0`` of shape ``(n, C, H, W)`` (float64 unless ``noises`` say otherwise).
    """
    n = shape if isinstance(shape, int) else int(shape[0])
    if not isinstance(shape, int) and tuple(shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"shape {tuple(shape)} does not match the model's image_shape {model.image_shape}")
    coeffs, x_T, eps, _ = prepare_chain(model, None, None, steps, eta, generator, noises, batch=n)
    with torch.no_grad():
        return _run_chain(model, None, None, coeffs, x_T, eps, callback, "DDIM")


def ddnm_sample(
    model: Any,
    op: Any,
    y: torch.Tensor,
    steps: int = 20,
    eta: float = 0.15,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    callback: Callback | None = None,
    clip: bool = False,
) -> torch.Tensor:
    """Sequential restoration (DDNM): T steps of Eqs. (4)-(5) from ``x_T``.

    Args:
        y: measurement ``A(x)``, batch ``B``; dtype and device of the result follow ``y``.
        noises: ``(x_T, noises)`` from ``draw_noises``; else drawn from ``generator``.
        callback: called once per step with ``{"k", "t", "x", "x0_pred", "x0_hat", "x_next"}``.
        clip: wrap ``model`` in ``ClippedModel``.
    Returns:
        ``x_0`` of shape ``(B, C, H, W)``.
    """
    model = ClippedModel(model) if clip and not isinstance(model, ClippedModel) else model
    coeffs, x_T, eps, pinv_y = prepare_chain(model, op, y, steps, eta, generator, noises)
    with torch.no_grad():
        return _run_chain(model, op, pinv_y, coeffs, x_T, eps, callback, "DDNM")


@dataclass
class DeqIRResult:
    """Output of ``deqir_sample``.

    Attributes:
        x0: restored image ``x_0``, ``(B, C, H, W)``.
        states: the whole chain, ``(T + 1, B, C, H, W)``, ``states[k] = x_k`` (``states[T] = x_T``).
        trace: the solver's ``SolverTrace`` (residual per iteration, network evaluations, ...).
        nfe: network evaluations of single states (T per application of F).
    """

    x0: torch.Tensor
    states: torch.Tensor
    trace: SolverTrace
    nfe: int


def deqir_sample(
    model: Any,
    op: Any,
    y: torch.Tensor,
    steps: int = 20,
    eta: float = 0.15,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    solver: str = "anderson",
    max_iter: int = 15,
    tol: float = 1e-3,
    callback: Callback | None = None,
    clip: bool = False,
    chunk_size: int | None = None,
    reference: torch.Tensor | None = None,
    **solver_options: Any,
) -> DeqIRResult:
    """Parallel restoration (DeqIR): solve ``x_{0:T-1} = F(x_{0:T-1}; x_T, y)``, Eqs. (8)-(11).

    The iterate starts at ``x_i = x_T`` for every ``i`` (Algorithm 1, line 1).  With ``solver="picard"``
    and ``max_iter = T`` the result equals ``ddnm_sample`` with the same noises (the system is lower
    triangular, Eq. (10)).

    Args:
        solver: ``"anderson"`` (Algorithm 1), ``"picard"``, or a name of ``parallel_solvers.PARALLEL_SOLVERS``.
        max_iter, tol: number of applications of F and the tolerance of the stopping rule.
        callback: per solver iteration, ``{"iteration", "states", "residual", ...}``.
        chunk_size: states per network call (bounds memory); default all T at once.
        reference: optional ``(B, C, H, W)`` image; the trace then records the x_0 error to it.
        solver_options: passed on, e.g. ``stop="x0"|"per_state"|"global"``, ``m``, ``lam``, ``beta``.
    """
    from .parallel_solvers import PARALLEL_SOLVERS  # faster solvers by name (lazy: no import cycle)

    solvers = {"anderson": anderson, "picard": picard, **PARALLEL_SOLVERS}
    if solver not in solvers:
        raise ValueError(f"unknown solver {solver!r}; use one of {sorted(solvers)}")
    model = ClippedModel(model) if clip and not isinstance(model, ClippedModel) else model
    coeffs, x_T, eps, _ = prepare_chain(model, op, y, steps, eta, generator, noises)
    f = FixedPointMap(model, op, y, x_T, eps, coeffs, chunk_size=chunk_size)
    init = x_T.expand(steps, *x_T.shape).clone()  # Algorithm 1, line 1
    with torch.no_grad():
        sol, trace = solvers[solver](f, init, max_iter=max_iter, tol=tol, reference=reference,
                                     callback=callback, **solver_options)
    states = torch.cat([sol, x_T[None]], dim=0)
    return DeqIRResult(x0=sol[0], states=states, trace=trace, nfe=f.nfe)
