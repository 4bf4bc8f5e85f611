"""Multi-device DeqIR: the states of every batched network pass split across ranks (torch.distributed).

DeqIR's work is one network call on all T states at once (Eq. (9)); on P devices each rank
evaluates a contiguous slice of those states and ``all_gather`` hands every rank the whole result.
Every rank then runs the same (cheap) solver step on the same data, so all ranks hold the same
iterate without further communication (single program, multiple data).  The wrapper is a model
(``ShardedModel``), so every sampler and solver of the package runs unchanged; with one process
(world size 1, no process group) it is the plain model: one code path for one device and several.

Notation (code name -> symbol)

    world, rank     P, p             processes (one per device) and this process's index
    N               T * B            images in one network call (T states x B images of the batch)
    n               ceil(N / P)      images per rank (the last ranks are padded, then trimmed)
    x, t            x_k, tau_k       network inputs (N, C, H, W) and their times (N,)

Launching the processes (one per device, or the ranks of ``torchrun``): ``apps/launch.py``.
Requirement: the ranks must make the same calls, so they must start from the same seed (they do:
the generator is seeded identically) and run on identical hardware.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["ShardedModel"]


def _world() -> tuple[int, int]:
    """``(rank, world)`` of the default process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedModel:
    """eps-model whose batch is split across the ranks of the default process group.

    ``model(x (N, C, H, W), t (N,)) -> eps (N, C, H, W)``: rank p evaluates rows ``p n .. p n + n - 1``
    on ``device`` and ``all_gather`` assembles all N rows on every rank, in the caller's device and
    dtype.  Keeps ``image_shape`` and ``alphas_cumprod``; ``evaluations`` counts this rank's images.
    ``split=False``: never split (each rank works on its own images, ``apps.restore_folder``); the model
    just runs on ``device``.
    """

    def __init__(self, model: Any, device: torch.device | str | None = None, split: bool = True) -> None:
        self.model, self.split = model, split
        self.device = torch.device(device) if device is not None else None
        self.image_shape = tuple(model.image_shape)
        if getattr(model, "alphas_cumprod", None) is not None:
            self.alphas_cumprod = model.alphas_cumprod
        self.evaluations = 0

    def _local(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        dev = self.device or x.device
        self.evaluations += x.shape[0]
        return self.model(x.to(dev), t.to(dev))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        rank, world = _world() if self.split else (0, 1)
        if world == 1:  # plain model
            return self._local(x, t).to(x.device, x.dtype)
        N = x.shape[0]
        n = math.ceil(N / world)
        lo, hi = min(rank * n, N), min(rank * n + n, N)
        xs, ts = x[lo:hi], t[lo:hi]
        if hi - lo < n:  # pad with copies of row 0 so that every rank sends n rows
            pad = n - (hi - lo)
            xs = torch.cat([xs, x[:1].expand(pad, *x.shape[1:])])
            ts = torch.cat([ts, t[:1].expand(pad)])
        out = self._local(xs, ts)  # (n, C, H, W) on this rank's device
        comm = out.device if dist.get_backend() == "nccl" else torch.device("cpu")
        out = out.to(comm).contiguous()
        parts = [torch.empty_like(out) for _ in range(world)]
        dist.all_gather(parts, out)  # every rank receives every slice
        return torch.cat(parts)[:N].to(x.device, x.dtype)
