"""Model wrappers: any network as the eps-model the samplers take (``model(x_t, t) -> eps``), clipping
of the clean estimate, and chunked calls that bound memory.

Notation (code name -> paper symbol)

    x_t               x_t              noisy image at time t, shape (B, C, H, W)
    t                 t                integer times in [0, 999], long tensor (B,)
    eps               eps_theta(x_t,t) predicted noise, shape (B, C, H, W)
    alphas_cumprod    abar_t           float64 (1000,), Eq. (2); default linear beta 1e-4..0.02
    image_shape       (C, H, W)        shape of one image the network was trained on
    learn_sigma       -                network outputs 2C channels: [eps, v] (ADM); only eps is kept

Samplers never look inside: they call the wrapper and read ``image_shape`` and ``alphas_cumprod``.
Precision: the input is cast to the network's dtype (cast the network with ``.to(torch.bfloat16)``)
or, with ``autocast_dtype``, run under ``torch.autocast``; eps comes back in the input's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..core.checks import check_image, is_integer
from ..diffusion.schedules import alphas_cumprod as _alphas_cumprod
from ..diffusion.schedules import alphas_cumprod_of, linear_betas

__all__ = ["DiffusionModel", "ClippedModel", "ChunkedModel"]


def _infer_image_shape(network: nn.Module) -> tuple[int, int, int]:
    c = getattr(network, "in_channels", None)
    size = getattr(network, "image_size", None) or getattr(network, "resolution", None)
    if c is None or size is None:
        raise ValueError(f"cannot infer image_shape from {type(network).__name__}; pass image_shape=(C, H, W)")
    return int(c), int(size), int(size)


class DiffusionModel(nn.Module):
    """eps-model ``model(x_t (B, C, H, W), t (B,) long) -> eps (B, C, H, W)`` around a UNet.

    Args:
        network: a module ``network(x, t) -> (B, C or 2C, H, W)`` (``ADMUNet``, ``DDPMUNet``, ...).
        image_shape: ``(C, H, W)``; by default read from ``network.in_channels`` and
            ``network.image_size`` / ``network.resolution``.
        alphas_cumprod: float64 ``(N,)`` abar schedule; default linear betas 1e-4..0.02 over 1000 steps.
        autocast_dtype: e.g. ``torch.bfloat16`` to run the network under ``torch.autocast`` (about 2x
            faster on CPU); ``None`` runs in the network's own dtype.
    """

    def __init__(
        self,
        network: nn.Module,
        image_shape: Sequence[int] | None = None,
        alphas_cumprod: torch.Tensor | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        shape = tuple(int(s) for s in image_shape) if image_shape is not None else _infer_image_shape(network)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {shape}")
        self.image_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        out_ch = getattr(network, "out_channels", shape[0])
        if out_ch not in (shape[0], 2 * shape[0]):
            raise ValueError(
                f"the network outputs {out_ch} channels; an eps-model needs C={shape[0]} (eps) "
                f"or 2C={2 * shape[0]} (eps and variance, learn_sigma)"
            )
        self.learn_sigma = out_ch == 2 * shape[0]
        if alphas_cumprod is None:
            alphas_cumprod = _alphas_cumprod(linear_betas(1000, 1e-4, 0.02))
        abar = torch.as_tensor(alphas_cumprod).detach().to(torch.float64)
        if abar.dim() != 1 or not bool(((abar > 0) & (abar <= 1)).all()) or not bool((abar[1:] <= abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be a 1-D decreasing sequence in (0, 1]")
        # a plain attribute, not a buffer: ``.to(torch.bfloat16)`` must never round the schedule
        self.alphas_cumprod: torch.Tensor = abar
        if autocast_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast_dtype must be None, torch.bfloat16 or torch.float16, got {autocast_dtype}")
        self.autocast_dtype = autocast_dtype

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the network's parameters."""
        return next(self.network.parameters()).dtype

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """x_t: (B, C, H, W), t: (B,) long (or a number) -> eps (B, C, H, W) in x_t's dtype."""
        check_image(x_t, self.image_shape, name="x_t")
        t = torch.as_tensor(t, device=x_t.device)
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        if t.shape != (x_t.shape[0],):
            raise ValueError(f"t must have shape ({x_t.shape[0]},) (one time per image), got {tuple(t.shape)}")
        n = self.alphas_cumprod.shape[0]
        if not torch.is_floating_point(t) and bool(((t < 0) | (t >= n)).any()):
            raise ValueError(f"times t must lie in [0, {n - 1}], got {t.tolist()}")
        x = x_t.to(self.dtype)
        if self.autocast_dtype is None:
            out = self.network(x, t)
        else:
            with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
                out = self.network(x, t)
        return out[:, : self.image_shape[0]].to(x_t.dtype)  # eps; drop v when learn_sigma


def sampling_defaults(model: Any) -> tuple[float, bool]:
    """``(eta, clip)`` the model recommends (its config's ``"sampling"``, set by ``zoo.load_model``),
    looked up through the wrappers (``ClippedModel``, ``ChunkedModel``, ``ShardedModel``); the paper's
    ``(0.15, False)`` for a model that names none."""
    for _ in range(8):  # wrappers hold the wrapped model as ``.model``
        if hasattr(model, "default_eta"):
            return float(model.default_eta), bool(getattr(model, "default_clip", False))
        model = getattr(model, "model", None)
        if model is None:
            break
    return 0.15, False


class ClippedModel:
    """Wrap an eps-model so that its clean estimate is clipped to ``[-1, 1]``.

    ``eps' = (x_t - sqrt(abar_t) clip(x_{0|t}, -1, 1)) / sqrt(1 - abar_t)``.  Because the clipping
    happens inside the model, the sequential and the parallel sampler see the same function and
    Proposition 1 still holds.  Keeps ``image_shape`` and ``alphas_cumprod`` of the wrapped model;
    wrapping twice is the same as once.
    """

    def __new__(cls, model: Any) -> ClippedModel:
        return model if isinstance(model, ClippedModel) else super().__new__(cls)

    def __init__(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        if model is self:  # already clipped (``__new__`` returned it)
            return
        self.model = model
        self.image_shape = tuple(model.image_shape)
        ac = alphas_cumprod_of(model)
        self.alphas_cumprod = ac if ac is not None else _alphas_cumprod(linear_betas())

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        eps = self.model(x_t, t)  # (B, C, H, W)
        a = self.alphas_cumprod.to(x_t.device)[t.to(x_t.device)].to(x_t.dtype).view(-1, 1, 1, 1)
        x0 = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1.0, 1.0)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


class ChunkedModel:
    """Evaluate an eps-model on at most ``max_batch`` images per call: bounds the memory of the big
    batched calls of the parallel sampler (T states x B images) and of tiles x samples.

    ``model(x (N, C, H, W), t (N,))`` is computed as ``ceil(N / max_batch)`` calls, concatenated.
    Keeps ``image_shape`` and ``alphas_cumprod``.
    """

    def __init__(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], max_batch: int) -> None:
        if not is_integer(max_batch) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer (images per network call), got {max_batch!r}")
        self.model, self.max_batch = model, int(max_batch)
        self.image_shape = tuple(model.image_shape)
        if getattr(model, "alphas_cumprod", None) is not None:
            self.alphas_cumprod = model.alphas_cumprod

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x_t.shape[0] <= self.max_batch:
            return self.model(x_t, t)
        step = self.max_batch
        return torch.cat([self.model(x_t[i : i + step], t[i : i + step]) for i in range(0, x_t.shape[0], step)])
