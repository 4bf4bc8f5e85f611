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

Launch: ``deqir-edu restore IN --task sr4 --out OUT --devices cuda:0,cuda:1`` (one process per
device via ``torch.multiprocessing``), or ``torchrun --nproc_per_node 2 -m deqir_edu.cli restore ...
--devices cuda:0,cuda:1`` (rank r uses ``devices[LOCAL_RANK]``).  Backend: NCCL for CUDA, gloo on CPU.
Requirement: the ranks must make the same calls, so they must start from the same seed (they do:
the generator is seeded identically) and run on identical hardware.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["ShardedModel", "parse_devices", "init_process", "spawn", "sample_on_devices", "restore_on_devices"]


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
    """

    def __init__(self, model: Any, device: torch.device | str | None = None) -> None:
        self.model = model
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
        rank, world = _world()
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


def parse_devices(text: str | None) -> list[torch.device]:
    """``"cuda:0,cuda:1"`` -> devices; ``"cpu,cpu"`` gives two CPU ranks (gloo)."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not names:
        raise ValueError("--devices needs a comma-separated list such as cuda:0,cuda:1 (or cpu,cpu)")
    devices = []
    for name in names:
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"unknown device {name!r} in --devices: {err}") from err
        if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"device {name} is not available here ({torch.cuda.device_count()} CUDA devices)")
        devices.append(dev)
    if len({d.type for d in devices}) > 1:
        raise ValueError(f"--devices mixes device types {names}; use only cuda:i or only cpu")
    return devices


def init_process(rank: int, world: int, init_method: str, device: torch.device) -> None:
    """Join the process group: NCCL for CUDA devices, gloo on CPU (with cores / world threads per rank)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # CPU ranks share the cores: one thread pool each would oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)


def _spawned(rank: int, fn: Callable[..., Any], devices: list[torch.device], init_method: str,
             result_path: str, args: tuple) -> None:
    init_process(rank, len(devices), init_method, devices[rank])
    try:
        result = fn(rank, len(devices), devices[rank], *args)
        if rank == 0 and result is not None:
            torch.save(result, result_path)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., Any], devices: list[torch.device | str], *args: Any) -> Any:
    """Run ``fn(rank, world, device, *args)`` in one process per device; return rank 0's result.

    ``fn`` must be importable (module level) and return tensors, numbers, lists or dicts of them.
    Rendezvous through a file in a fresh temporary folder (``init_method="file://..."``).
    """
    import torch.multiprocessing as mp

    devices = [torch.device(d) for d in devices]
    with tempfile.TemporaryDirectory() as tmp:
        init_method = Path(tmp, "rendezvous").absolute().as_uri()
        result_path = str(Path(tmp, "result.pt"))
        mp.spawn(_spawned, args=(fn, devices, init_method, result_path, args), nprocs=len(devices), join=True)
        return torch.load(result_path, weights_only=True) if os.path.exists(result_path) else None


def _sample_rank(rank: int, world: int, device: torch.device, model: Any, op: Any, y: torch.Tensor,
                 kwargs: dict[str, Any]) -> dict[str, Any]:
    from .samplers import deqir_sample

    sharded = ShardedModel(model.to(device) if hasattr(model, "to") else model, device)
    res = deqir_sample(sharded, op, y, **kwargs)
    counts = torch.zeros(world, dtype=torch.long, device=device if dist.get_backend() == "nccl" else "cpu")
    counts[rank] = sharded.evaluations
    dist.all_reduce(counts)  # images evaluated by each rank
    return {"x0": res.x0.cpu(), "passes": res.trace.iterations, "nfe": res.nfe, "rank_images": counts.cpu()}


def sample_on_devices(devices: list[torch.device | str], model: Any, op: Any, y: torch.Tensor,
                      **kwargs: Any) -> dict[str, Any]:
    """``deqir_sample(model, op, y, **kwargs)`` with every network pass split over ``devices``.

    Spawns one process per device (gloo on CPU, NCCL on GPUs); ``kwargs`` must hold picklable values
    (a ``torch.Generator`` cannot be sent to the processes: pass ``noises=draw_noises(...)``).  Returns
    ``{"x0": (B, C, H, W), "passes", "nfe", "rank_images": (P,) images each rank evaluated}``.
    """
    return spawn(_sample_rank, list(devices), model, op, y, kwargs)


def _restore_rank(rank: int, world: int, device: torch.device, args: argparse.Namespace,
                  run: Callable[..., int]) -> int:
    """One rank of ``deqir-edu restore``: the model on ``device``, sharded; only rank 0 writes and prints."""
    wrap = lambda model: ShardedModel(model.to(device), device)  # noqa: E731
    if rank == 0:
        return run(args, wrap=wrap)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        return run(argparse.Namespace(**{**vars(args), "out": str(Path(tmp, "rank.png"))}), wrap=wrap)


def restore_on_devices(args: argparse.Namespace, run: Callable[..., int]) -> int:
    """``deqir-edu restore ... --devices D0,D1``: one rank per device (or the ranks of ``torchrun``).

    ``run(args, wrap=...)`` is the CLI's restore; ``wrap`` turns the loaded model into a ``ShardedModel``.
    """
    devices = parse_devices(args.devices)
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # started by torchrun: already one process per rank
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        device = devices[int(os.environ.get("LOCAL_RANK", rank)) % len(devices)]
        init_process(rank, world, "env://", device)
        try:
            return _restore_rank(rank, world, device, args, run)
        finally:
            dist.destroy_process_group()
    if len(devices) == 1:  # world size 1: the plain model on that device
        return run(args, wrap=lambda model: ShardedModel(model.to(devices[0]), devices[0]))
    spawn(_restore_rank, devices, args, run)
    return 0
