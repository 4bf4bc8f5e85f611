"""All the randomness of a T-step chain, drawn up front in one documented order.

Notation (code name -> paper symbol; chain convention of ``diffusion/schedules.py``)

    x_T            x_T       initial noise, (B, C, H, W)
    noises[T - k]  eps_k     fresh noise of the step k -> k-1, (T, B, C, H, W): noises[0] is used by T -> T-1

Sequential and parallel samplers given the same ``(x_T, noises)`` compute the same chain.
"""

from __future__ import annotations

import torch

from ..core.checks import is_integer

__all__ = ["draw_noises", "official_noises"]


def draw_noises(
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``(x_T, noises)`` for a T-step chain of images of ``shape`` ``(B, C, H, W)``.

    One call ``torch.randn((T + 1, B, C, H, W))``; slice 0 is ``x_T``, slice ``1 + i`` is the noise
    of the ``(i+1)``-th step in sampling order ``k = T, T-1, ..., 1``, so ``noises[T - k]`` is used
    by the step ``k -> k-1``.  Noises are drawn even for eta = 0 so that a generator gives the same
    ``x_T`` whatever eta is.

    Returns:
        ``x_T`` of shape ``(B, C, H, W)`` and ``noises`` of shape ``(T, B, C, H, W)``.
    """
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    if not is_integer(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps = int(steps)
    z = torch.randn((steps + 1, *shape), generator=generator, dtype=dtype, device=device)
    return z[0], z[1:]


def official_noises(
    shape: tuple[int, int, int, int],
    steps: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_T, noises)`` with ONE noise image repeated at every step, as the official DeqIR code does."""
    x_T, noises = draw_noises(shape, steps, generator, dtype, device)
    return x_T, noises[:1].expand_as(noises).clone()
