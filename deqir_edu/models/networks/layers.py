"""Small building blocks shared by the two UNets (ADM and the "simple" DDPM).

Notation (code name -> paper / config symbol)

    t              t            integer (or real) diffusion time, shape (B,)
    dim            d            width of the sinusoidal time embedding (= base channels C)
    max_period     10000        longest period of the sinusoids (Transformer, Vaswani et al. 2017)
    shift          0 or 1       ADM divides by d/2, the DDPM code by d/2 - 1
    sin_first      -            DDPM puts [sin, cos], ADM puts [cos, sin]
    GroupNorm32    GN           group normalisation (Wu & He 2018), always computed in float32
    heads          h            number of attention heads; head width d_h = C / h

Precision policy.  A network may be cast with ``.to(torch.bfloat16)`` (or float16) or run under
``torch.autocast``.  The time embedding is computed in float32 and then cast to the dtype of the
first linear layer; group normalisation is computed in float32 and cast back, so the statistics
do not suffer from the 8-bit mantissa of bfloat16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["timestep_embedding", "as_timesteps", "GroupNorm32", "attention", "check_network_input"]


def timestep_embedding(
    t: torch.Tensor, dim: int, *, max_period: float = 10000.0, shift: int = 0, sin_first: bool = False
) -> torch.Tensor:
    """Sinusoidal embedding of the times ``t`` (B,) -> ``(B, dim)`` in float32.

    ``freq_i = max_period ** (-i / (dim/2 - shift))`` for ``i = 0..dim/2-1``; the embedding is
    ``[cos(t freq), sin(t freq)]`` (ADM, ``shift=0``) or ``[sin, cos]`` (DDPM, ``shift=1``).
    An odd ``dim`` is padded with one zero column.
    """
    half = dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * i / (half - shift))
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # (B, dim/2)
    parts = [torch.sin(args), torch.cos(args)] if sin_first else [torch.cos(args), torch.sin(args)]
    emb = torch.cat(parts, dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def as_timesteps(t: torch.Tensor | int | float, batch: int, device: torch.device) -> torch.Tensor:
    """Turn ``t`` (a number, a 0-d tensor or a ``(B,)`` tensor, long or float) into float32 ``(B,)``."""
    t = torch.as_tensor(t, device=device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(
            f"timesteps must be a number or a tensor of shape ({batch},) matching the batch, got shape {tuple(t.shape)}"
        )
    return t.to(torch.float32)


class GroupNorm32(nn.GroupNorm):
    """``nn.GroupNorm`` computed in float32 whatever the input dtype; output in the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(d_h)) v``.

    q, k, v: ``(B, heads, T, d_h)`` with ``T = H * W`` pixels -> ``(B, heads, T, d_h)``.
    """
    return F.scaled_dot_product_attention(q, k, v)


def check_network_input(x: torch.Tensor, in_channels: int, factor: int, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, H, W)`` with ``H, W`` divisible by ``factor``."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects x of shape (B, C, H, W), got {shape}; add a batch dimension with x[None]")
    if x.shape[1] != in_channels:
        raise ValueError(
            f"{name} was built for {in_channels} input channels but x has {x.shape[1]} "
            f"(shape {tuple(x.shape)}); convert grey <-> RGB or build the network with in_channels={x.shape[1]}"
        )
    if x.shape[2] % factor or x.shape[3] % factor:
        raise ValueError(
            f"{name} halves the image {int(math.log2(factor))} times, so H and W must be divisible by "
            f"{factor}; got {tuple(x.shape[2:])}. Pad or crop the image"
        )
