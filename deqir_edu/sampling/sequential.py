"""Sequential samplers: unconditional DDIM and DDNM restoration (Eqs. (4)-(5)), one step after the other.

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``)

    x_T, states[k]    x_T, x_k              chain states, k = T..0; x_0 is the restored image
    noises[T - k]     eps_k                 fresh noise of the step k -> k-1 (see ``draw_noises``)
    noise             eps_k                 the fresh noise of one step (``eps`` names only the network's output)
    eps               eps_theta(x_k, tau_k) network noise prediction at chain state k
    x0_pred           x_{0|k}               (x_k - sqrt(1 - abar_k) eps) / sqrt(abar_k)
    x0_hat            hat x_{0|k}           A^+ y + (I - A^+ A) x_{0|k}, Eq. (5)
    op.A, op.A_pinv   A, A^+                degradation and its pseudo-inverse
    chain             T, tau_k, c^1_k, c^2_k  a ``diffusion.ChainConfig`` (``chain_config``, ``official_chain``)

One step ``k -> k-1`` (DDNM with the DDIM eta form, the update whose unrolling is Eq. (9))::

    x_{k-1} = sqrt(abar_{k-1}) hat x_{0|k} + c2_k eps_theta(x_k) + c1_k eps_k

``ddnm_sample`` runs this step T times; ``parallel.deqir_sample`` solves the fixed-point system
``x_{0:T-1} = F(x_{0:T-1}; x_T, y)`` (Eq. (8), ``fixed_point.py``) with a registered solver.  With
the same noises both give the same chain (Proposition 1).  Clipping of the clean estimate and
chunked network calls are model wrappers (``models.ClippedModel``, ``models.ChunkedModel``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.checks import NotFiniteError, check_finite, check_image, is_integer
from ..core.progress import progress
from ..diffusion.chain import ChainConfig, chain_config
from ..diffusion.noises import draw_noises
from ..diffusion.schedules import alphas_cumprod_of
from ..operators.base import null_space_project

__all__ = ["ddim_sample", "ddnm_sample", "chain_step", "prepare_chain", "resolve_chain", "check_inputs", "call_model"]

Callback = Callable[[dict[str, Any]], None]


def resolve_chain(
    model: Any, steps: int | None, eta: float | None, chain: ChainConfig | None, default_eta: float = 0.15
) -> ChainConfig:
    """``chain`` checked against the model's noise schedule, else ``chain_config(steps, eta)`` for the model.

    ``steps`` and ``eta`` default to 20 and ``default_eta``; giving them with ``chain`` is an error (which would win?).
    """
    if chain is None:
        return chain_config(
            20 if steps is None else steps, default_eta if eta is None else eta, alphas_cumprod_of(model)
        )
    if steps is not None or eta is not None:
        raise ValueError("give either steps and eta or chain (a ChainConfig that fixes both), not both")
    if not isinstance(chain, ChainConfig):
        raise ValueError("chain must be a ChainConfig: diffusion.chain_config(T, eta) or official_chain(T)")
    chain.check_schedule(alphas_cumprod_of(model))
    return chain


def check_inputs(model: Any, op: Any | None, y: torch.Tensor | None, sampler: str) -> None:
    """Check what a sampler is given before any work: an eps-model with an ``image_shape``, an operator with
    ``A`` and ``A_pinv``, and ``y`` a finite batch of at least one measurement, with data (not on the meta
    device) and without grad (the samplers run under ``no_grad``: a result silently detached from ``y``
    would break a caller's backward pass, so it is refused).  One ``ValueError`` that says what to pass."""
    if not callable(model) or getattr(model, "image_shape", None) is None:
        raise ValueError(
            f"{sampler}: model must be an eps-model model(x_t, t) -> eps with an image_shape (C, H, W), e.g. "
            f"models.load_model('fashion32'), got {type(model).__name__}"
        )
    if op is None:
        return
    missing = [m for m in ("A", "A_pinv") if not callable(getattr(op, m, None))]
    if missing:
        raise ValueError(
            f"{sampler}: op must be an operator with the methods A(x) and A_pinv(y) (operators.make_operator"
            f"(task, shape), or a class of your own: see operators/base.py); {type(op).__name__} has no "
            + " and no ".join(missing)
        )
    _check_y(y, f"{sampler}: ")
    if y.requires_grad:
        raise ValueError(
            f"{sampler}: y requires grad, but the sampler runs without gradients (its result would be silently "
            "detached from y); pass y.detach(), or differentiate through the chain with deqir_edu.inversion"
        )


def _check_y(y: Any, where: str = "") -> None:
    """``y``: a finite batch of at least one measurement, with data (not on the meta device)."""
    if not isinstance(y, torch.Tensor) or y.dim() < 2:
        raise ValueError(f"{where}y must be a batched tensor, e.g. y = op.A(x) of a (B, C, H, W) image")
    if y.device.type == "meta":
        raise ValueError(f"{where}y is on the meta device (a shape without data); pass a real tensor, e.g. y.to('cpu')")
    if y.shape[0] < 1:
        raise ValueError(f"{where}y has batch 0 (shape {tuple(y.shape)}); pass at least one measurement")
    check_finite(y, "y")


def call_model(model: Any, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``model(x, t)``, checked: eps must have ``x``'s shape and be finite (a broken network is named as such,
    not the user's image, which is checked before any work)."""
    eps = model(x, t)
    if not isinstance(eps, torch.Tensor) or eps.shape != x.shape:
        got = tuple(eps.shape) if isinstance(eps, torch.Tensor) else type(eps).__name__
        raise ValueError(
            f"the model returned {got} for an input of shape {tuple(x.shape)}; an eps-model must return eps of "
            "its input's shape (a network with learned variance: wrap it in models.DiffusionModel, which keeps "
            "the first C channels)"
        )
    if not bool(torch.isfinite(eps).all()):
        if bool(torch.isfinite(x).all()):
            raise NotFiniteError(
                "the network returned NaN or infinite values on finite inputs: the model or its checkpoint is "
                "broken (download or train it again), or half precision overflowed (use float32 or bfloat16)"
            )
        raise NotFiniteError(
            "the states given to the network hold NaN or infinite values: the parallel solver diverged; use "
            "another solver (picard is exact in T passes) or the sequential sampler (ddnm)"
        )
    return eps


def prepare_chain(
    model: Any,
    op: Any | None,
    y: torch.Tensor | None,
    chain: ChainConfig,
    generator: torch.Generator | None,
    noises: tuple[torch.Tensor, torch.Tensor] | None,
    batch: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Validate the inputs of a sampler; return ``(x_T, noises, A^+ y)``.

    ``y`` fixes batch, dtype and device; without an operator (``ddim_sample``) ``batch`` does.
    ``noises`` is the pair ``(x_T, noises)`` as returned by ``draw_noises``, else it is drawn from ``generator``;
    giving both is an error.
    """
    if noises is not None and generator is not None:
        raise ValueError(
            "give either noises (the pair (x_T, noises) of draw_noises) or a generator to draw them, not both"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"generator must be a torch.Generator, e.g. torch.Generator().manual_seed(0), got {generator!r}"
        )
    shape = tuple(model.image_shape)
    pinv_y = None
    if op is not None:
        _check_y(y)
        try:
            pinv_y = op.A_pinv(y)
        except (RuntimeError, IndexError) as err:
            raise ValueError(f"y of shape {tuple(y.shape)} does not fit the operator: {err}") from err
        check_image(pinv_y, shape, f"A_pinv(y) (y of shape {tuple(y.shape)})")
        batch, dtype, device = y.shape[0], y.dtype, y.device
    else:
        dtype, device = torch.float64, None
    if noises is None:
        x_T, fresh = draw_noises((batch, *shape), chain.steps, generator, dtype, device)
    else:
        x_T, fresh = _given_noises(noises, shape, chain.steps, batch)
    return x_T, fresh, pinv_y


def _given_noises(
    noises: Any, shape: tuple[int, ...], steps: int, batch: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair ``(x_T, noises)`` a caller gave, checked against the model's shape, T and the batch."""
    if not (isinstance(noises, (tuple, list)) and len(noises) == 2):
        raise ValueError("noises must be the pair (x_T, noises) returned by draw_noises")
    x_T, fresh = noises
    check_image(x_T, shape, "x_T")
    if batch is not None and x_T.shape[0] != batch:
        raise ValueError(f"x_T has batch {x_T.shape[0]} but y has batch {batch}")
    if not isinstance(fresh, torch.Tensor) or tuple(fresh.shape) != (steps, *x_T.shape):
        got = tuple(fresh.shape) if isinstance(fresh, torch.Tensor) else type(fresh).__name__
        raise ValueError(f"noises must have shape (T, B, C, H, W) = {(steps, *x_T.shape)}, got {got}")
    check_finite(fresh, "noises")
    return x_T, fresh


def chain_step(
    model: Any,
    op: Any | None,
    pinv_y: torch.Tensor | None,
    x_k: torch.Tensor,
    k: int,
    chain: ChainConfig,
    noise: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step ``x_k -> x_{k-1}`` (Eqs. (4)-(5)); without ``op`` it is plain DDIM.

    Returns ``(x_{k-1}, x_{0|k}, hat x_{0|k})``, each ``(B, C, H, W)``.
    """
    a_k, a_prev = chain.abar[k].item(), chain.abar[k - 1].item()
    t = torch.full((x_k.shape[0],), int(chain.timesteps[k - 1]), dtype=torch.long, device=x_k.device)
    eps = call_model(model, x_k, t)
    x0_pred = (x_k - (1 - a_k) ** 0.5 * eps) / a_k**0.5  # x_{0|k}
    x0_hat = x0_pred if op is None else null_space_project(op, x0_pred, None, pinv_y)  # Eq. (5)
    x_prev = a_prev**0.5 * x0_hat + chain.c2[k].item() * eps + chain.c1[k].item() * noise  # Eq. (4)
    return x_prev, x0_pred, x0_hat


def _run_chain(
    model: Any,
    op: Any | None,
    pinv_y: torch.Tensor | None,
    chain: ChainConfig,
    x_T: torch.Tensor,
    noises: torch.Tensor,
    callback: Callback | None,
    desc: str,
) -> torch.Tensor:
    x = x_T
    steps = chain.steps
    for k in progress(range(steps, 0, -1), desc, total=steps):
        x_prev, x0_pred, x0_hat = chain_step(model, op, pinv_y, x, k, chain, noises[steps - k])
        if callback is not None:
            callback(
                {
                    "k": k,
                    "t": int(chain.timesteps[k - 1]),
                    "x": x,
                    "x0_pred": x0_pred,
                    "x0_hat": x0_hat,
                    "x_next": x_prev,
                }
            )
        x = x_prev
    return x


def ddim_sample(
    model: Any,
    shape: int | tuple[int, int, int, int],
    steps: int | None = None,
    eta: float | None = None,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    callback: Callback | None = None,
    chain: ChainConfig | None = None,
) -> torch.Tensor:
    """Unconditional DDIM (eta form of ``diffusion/chain.py``); ``shape`` is ``n`` or ``(n, C, H, W)``.

    ``steps`` and ``eta`` default to 20 and 0 (deterministic DDIM); or ``chain`` (a ``ChainConfig``), not both.
    ``noises`` (the pair of ``draw_noises``) or ``generator``, not both.
    Returns ``x_0`` of shape ``(n, C, H, W)`` (float64 unless ``noises`` say otherwise).
    """
    check_inputs(model, None, None, "ddim_sample")
    n = shape if is_integer(shape) else shape[0] if isinstance(shape, (tuple, list)) and len(shape) == 4 else None
    if not is_integer(n) or n < 1:
        raise ValueError(f"ddim_sample: shape must be a number of images n >= 1 or (n, C, H, W), got {shape!r}")
    if not is_integer(shape) and tuple(shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"shape {tuple(shape)} does not match the model's image_shape {model.image_shape}")
    n = int(n)
    chain = resolve_chain(model, steps, eta, chain, default_eta=0.0)
    x_T, fresh, _ = prepare_chain(model, None, None, chain, generator, noises, batch=n)
    with torch.no_grad():
        return _run_chain(model, None, None, chain, x_T, fresh, callback, "DDIM")


def ddnm_sample(
    model: Any,
    op: Any,
    y: torch.Tensor,
    steps: int | None = None,
    eta: float | None = None,
    generator: torch.Generator | None = None,
    noises: tuple[torch.Tensor, torch.Tensor] | None = None,
    callback: Callback | None = None,
    chain: ChainConfig | None = None,
) -> torch.Tensor:
    """Sequential restoration (DDNM): T steps of Eqs. (4)-(5) from ``x_T``.

    Args:
        y: measurement ``A(x)``, batch ``B``; dtype and device of the result follow ``y``.
        steps, eta: T and eta of the chain (``diffusion.chain_config``; default 20 and 0.15).
        generator, noises: the pair ``(x_T, noises)`` from ``draw_noises``, or a generator to draw it; not both.
        callback: called once per step with ``{"k", "t", "x", "x0_pred", "x0_hat", "x_next"}``.
        chain: a ``ChainConfig`` (e.g. ``official_chain(T)``) instead of ``steps`` and ``eta``.
    Returns:
        ``x_0`` of shape ``(B, C, H, W)``.
    Raises ``ValueError`` for a ``y`` that requires grad (the chain runs without gradients; see ``check_inputs``).
    """
    check_inputs(model, op, y, "ddnm_sample")
    chain = resolve_chain(model, steps, eta, chain)
    x_T, fresh, pinv_y = prepare_chain(model, op, y, chain, generator, noises)
    with torch.no_grad():
        return _run_chain(model, op, pinv_y, chain, x_T, fresh, callback, "DDNM")
