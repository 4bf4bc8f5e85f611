"""Launch work on several devices: one process per device (``torch.multiprocessing``) or the ranks of
``torchrun``, each holding a ``models.ShardedModel`` so that every network pass is split over the devices.

Notation (code name -> symbol)

    world, rank     P, p        processes (one per device) and this process's index
    devices         -           one ``torch.device`` per rank: ``cuda:i`` (NCCL) or ``cpu`` (gloo)
    wrap            -           ``model -> ShardedModel(model on this rank's device)``

The work is a picklable callable ``fn(wrap) -> tensors`` (e.g. ``functools.partial`` of a module-level
function): every rank runs it on the same inputs, rank 0's result comes back.  Nothing here knows the
command line.  Launch: ``deqir-edu restore IN --task sr4 --out OUT --devices cuda:0,cuda:1``, or
``torchrun --nproc_per_node 2 -m deqir_edu.apps.cli restore ... --devices cuda:0,cuda:1`` (rank r uses
``devices[LOCAL_RANK]``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..core.checks import check_device
from ..core.files import atomic_path
from ..models import ShardedModel
from ..sampling import deqir_sample

__all__ = ["parse_devices", "init_process", "spawn", "sample_on_devices", "run_sharded"]


def parse_devices(text: str | None) -> list[torch.device]:
    """``"cuda:0,cuda:1"`` -> devices; ``"cpu,cpu"`` gives two CPU ranks (gloo)."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    if not names:
        raise ValueError("--devices needs a comma-separated list such as cuda:0,cuda:1 (or cpu,cpu)")
    devices = [check_device(name) for name in names]
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


_PASSED_ON = (ValueError, FileNotFoundError, PermissionError, KeyError, RuntimeError)  # re-raised as themselves


def _spawned(
    rank: int, fn: Callable[..., Any], devices: list[torch.device], init_method: str, result_path: str, args: tuple
) -> None:
    try:
        init_process(rank, len(devices), init_method, devices[rank])
        try:
            result = fn(rank, len(devices), devices[rank], *args)
            if rank == 0 and result is not None:
                with atomic_path(result_path) as tmp:
                    torch.save(result, tmp)
        finally:
            dist.destroy_process_group()
    except Exception as err:  # the parent re-raises it as one error, not a traceback per process
        with atomic_path(f"{result_path}.error{rank}", suffix=".txt") as tmp:
            Path(tmp).write_text(f"{type(err).__name__}\n{err}")
        raise


def _raise_child_error(result_path: str, world: int, err: BaseException) -> None:
    """Re-raise the first error a rank recorded, as its own type when it is a user error."""
    for rank in range(world):
        path = Path(f"{result_path}.error{rank}")
        if path.is_file():
            name, _, message = path.read_text().partition("\n")
            cls = next((c for c in _PASSED_ON if c.__name__ == name), RuntimeError)
            raise cls(f"{message} (rank {rank} of {world})") from None
    raise RuntimeError(f"a worker process failed ({' '.join(str(err).split())[:200]})") from None


def spawn(fn: Callable[..., Any], devices: list[torch.device | str], *args: Any) -> Any:
    """Run ``fn(rank, world, device, *args)`` in one process per device; return rank 0's result.

    ``fn`` must be importable (module level) and return tensors, numbers, lists or dicts of them.
    Rendezvous through a file in a fresh temporary folder (``init_method="file://..."``).
    """
    devices = [torch.device(d) for d in devices]
    with tempfile.TemporaryDirectory() as tmp:
        init_method = Path(tmp, "rendezvous").absolute().as_uri()
        result_path = str(Path(tmp, "result.pt"))
        try:
            mp.spawn(_spawned, args=(fn, devices, init_method, result_path, args), nprocs=len(devices), join=True)
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as err:
            _raise_child_error(result_path, len(devices), err)
        return torch.load(result_path, weights_only=True) if os.path.exists(result_path) else None


def _sample_rank(
    rank: int, world: int, device: torch.device, model: Any, op: Any, y: torch.Tensor, kwargs: dict[str, Any]
) -> dict[str, Any]:
    sharded = ShardedModel(model.to(device) if hasattr(model, "to") else model, device)
    res = deqir_sample(sharded, op, y, **kwargs)
    counts = torch.zeros(world, dtype=torch.long, device=device if dist.get_backend() == "nccl" else "cpu")
    counts[rank] = sharded.evaluations
    dist.all_reduce(counts)  # images evaluated by each rank
    return {"x0": res.x0.cpu(), "passes": res.passes, "evaluations": res.evaluations, "rank_images": counts.cpu()}


def sample_on_devices(
    devices: list[torch.device | str], model: Any, op: Any, y: torch.Tensor, **kwargs: Any
) -> dict[str, Any]:
    """``deqir_sample(model, op, y, **kwargs)`` with every network pass split over ``devices``.

    Spawns one process per device (gloo on CPU, NCCL on GPUs); ``kwargs`` must hold picklable values
    (a ``torch.Generator`` cannot be sent to the processes: pass ``noises=draw_noises(...)``).  Returns
    ``{"x0": (B, C, H, W), "passes", "evaluations", "rank_images": (P,) images each rank evaluated}``.
    """
    return spawn(_sample_rank, list(devices), model, op, y, kwargs)


def _wrapper(device: torch.device) -> Callable[[Any], ShardedModel]:
    return lambda model: ShardedModel(model.to(device) if hasattr(model, "to") else model, device)


def _run_rank(rank: int, world: int, device: torch.device, fn: Callable[[Callable], Any]) -> Any:
    return fn(_wrapper(device))


def run_sharded(devices: list[torch.device], fn: Callable[[Callable[[Any], ShardedModel]], Any]) -> Any:
    """Run ``fn(wrap)`` on one rank per device and return rank 0's result (``None`` on other torchrun ranks).

    ``wrap(model)`` puts the model on the rank's device inside a ``ShardedModel``.  Under ``torchrun``
    (``RANK`` and ``WORLD_SIZE`` set) this process is already one rank; with one device no process is
    started.  ``fn`` must be picklable (module-level function or ``functools.partial`` of one).
    """
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # started by torchrun
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        device = devices[int(os.environ.get("LOCAL_RANK", rank)) % len(devices)]
        init_process(rank, world, "env://", device)
        try:
            result = fn(_wrapper(device))
        finally:
            dist.destroy_process_group()
        return result if rank == 0 else None
    if len(devices) == 1:  # world size 1: the plain model on that device
        return fn(_wrapper(devices[0]))
    return spawn(_run_rank, devices, fn)
