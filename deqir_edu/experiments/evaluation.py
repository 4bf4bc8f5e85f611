"""Evaluation grid: tasks x methods on a frozen test set (`deqir-edu eval`).

``results.py`` writes the grid as JSON and Markdown.  The methods are run by ``runner.run_method`` (the
same runner as the demo and ``restore``).

Every method of one task uses the SAME noises: ``draw_noises`` with one seed for the whole test set,
then sliced per batch.  Methods with the same T therefore share x_T and every eps_k, and DeqIR
differs from DDNM only by how far its solver got.  (The numbers do not depend on the batch size,
except that Anderson's early stop, ``tol > 0``, tests the worst image of a batch.)

Notation (column / code name -> meaning, paper symbol)

    method          a method name of ``runner.py`` (pinv, ddnm, ddnm-t100, deqir-k15, deqir-picard, ...)
    psnr, ssim      mean over images, ``metrics.psnr`` / ``metrics.ssim`` on [0, 1]
    lpips           mean AlexNet-LPIPS; the string "n/a (no weights)" when the weights are absent
    consistency     mean ||A x - y||_2 of the returned x in [-1, 1] ("consistency" of the paper)
    cons            "Cons" (Table 3): ||A q(x) - y||_1 on [0, 1], q = the 8-bit image one would save
                    (DDNM's L1 form; the paper's normalisation is unpublished, compare within a table)
    evaluations     network evaluations of single states (DDNM: T; DeqIR: T per application of F)
    passes          sequential network passes, the depth of the computation (DDNM: T; DeqIR: solver passes)
    seconds         wall-clock of the method on all n images (batches of ``batch_size``)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..core.progress import progress
from ..diffusion.noises import draw_noises
from ..metrics import lpips as lpips_metric
from ..metrics.quality import consistency, psnr, ssim
from ..operators import make_operator
from .runner import parse_method, run_method

__all__ = [
    "TASKS_GREY",
    "TASKS_COLOUR",
    "DEFAULT_METHODS",
    "NA_WEIGHTS",
    "NA_SMALL",
    "default_tasks",
    "evaluate",
    "lpips_status",
]

TASKS_GREY = (
    "sr2",
    "sr4",
    "sr2-bicubic",
    "sr4-bicubic",
    "deblur-gauss",
    "deblur-aniso",
    "inpaint-text",
    "inpaint-stripes",
)
TASKS_COLOUR = TASKS_GREY + ("colorize",)
DEFAULT_METHODS = ("pinv", "ddnm", "ddnm-t100", "deqir-auto", "deqir-k5", "deqir-k10", "deqir-k15", "deqir-picard")
NA_WEIGHTS = "n/a (no weights)"
NA_SMALL = "n/a (image < 31 px)"


def default_tasks(image_shape: Sequence[int]) -> tuple[str, ...]:
    """All tasks of the grid; colorization only for 3-channel images."""
    return TASKS_COLOUR if int(image_shape[0]) == 3 else TASKS_GREY


def lpips_status() -> tuple[Callable | None, str]:
    """``(the LPIPS function, "AlexNet-LPIPS v0.1")`` if its weights are present, else ``(None, why not)``."""
    ok, why = lpips_metric.lpips_available()
    return (lpips_metric.lpips, "AlexNet-LPIPS v0.1") if ok else (None, why)


def _quantise(x: torch.Tensor) -> torch.Tensor:
    """The 8-bit image that would be saved, back in [-1, 1]."""
    return torch.round((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1


def evaluate(
    model: Any,
    images: torch.Tensor,
    tasks: Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    steps: int = 20,
    eta: float = 0.15,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int = 16,
    clip: bool = False,
    tol: float | None = None,
    lpips_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | str | None = "auto",
) -> list[dict[str, Any]]:
    """Run every method on every task; one result row (a dict) per (task, method).

    Args:
        model: eps-model (``model(x_t, t)``, ``model.image_shape``).
        images: ground truth ``(N, C, H, W)`` in [-1, 1]; moved to ``device``, dtype kept.
        tasks: task names (default ``default_tasks``); methods: names for ``runner.parse_method``.
        steps: default T of ``ddnm`` / ``deqir-kK``; eta: eta of every chain (paper: 0.15).
        seed: seeds ``draw_noises`` once per (task, T) for all N images.
        tol: the solvers' tolerance (None: each solver's own; Anderson's is on the x_0 residual, 1e-3).
        lpips_fn: ``"auto"`` (real weights if present), a callable ``(x, ref) -> (B,)``, or ``None``.
    Returns:
        rows with keys task, method, steps, iters, solver, n, psnr, ssim, lpips, consistency, cons,
        evaluations, passes, seconds (summed over batches), converged, psnr_per_image.

    Bound the memory of DeqIR's big network calls by wrapping the model in ``models.ChunkedModel``.
    Many images: inside a ``torch.distributed`` process group (``torchrun``, one process per device) the
    batches are spread over the ranks (batch b on rank b mod P) and gathered, so every rank returns the
    rows of one process: same batches, same noises (drawn for all N images), same results.
    """
    images = images.to(device) if device is not None else images
    shape, tasks = _check_grid(model, images, tasks)
    parsed = [parse_method(m, steps) for m in methods]
    if isinstance(lpips_fn, str):
        if lpips_fn != "auto":
            raise ValueError(f"lpips_fn must be 'auto', a callable or None, got {lpips_fn!r}")
        lpips_fn, _ = lpips_status()
    small = min(shape[1:]) < 31
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    batches = _Batches(batch_size, rank, world)
    rows: list[dict[str, Any]] = []
    for task in progress(tasks, "tasks"):
        op = make_operator(task, shape)
        y = op.A(images)
        noise_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for method in progress(parsed, task):
            noises = _task_noises(noise_cache, method.steps, images, seed)
            done = _run_batches(model, op, y, method, noises, batches, eta=eta, clip=clip, tol=tol)
            runs = _gathered(done, world, images.device)
            x = torch.cat([r[0] for r in runs])
            rows.append(_row(task, method, runs, x, images, y, op, _lpips_cell(lpips_fn, small, x, images)))
    return rows


def _check_grid(model: Any, images: torch.Tensor, tasks: Sequence[str] | None) -> tuple[tuple, tuple[str, ...]]:
    """The image shape ``(C, H, W)`` and the tasks of the grid, checked against the model."""
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"images must be (N, C, H, W) with (C, H, W) = {tuple(model.image_shape)}, got {tuple(images.shape)}"
        )
    shape = tuple(images.shape[1:])
    tasks = tuple(default_tasks(shape) if tasks is None else tasks)
    if "colorize" in tasks and shape[0] != 3:
        raise ValueError(f"colorize needs a 3-channel model; this one has {shape[0]} channel(s): drop it from tasks")
    return shape, tasks


def _task_noises(
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]], T: int, images: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x_T, noises)`` for all N images, drawn once per (task, T) and shared by every method with this T."""
    if not T:
        return None
    if T not in cache:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        x_T, noises = draw_noises(tuple(images.shape), T, gen, images.dtype)
        cache[T] = (x_T.to(images.device), noises.to(images.device))
    return cache[T]


@dataclass(frozen=True)
class _Batches:
    """Batches of ``size`` images; under ``torch.distributed`` batch b goes to rank b mod ``world``."""

    size: int
    rank: int
    world: int


def _run_batches(
    model: Any,
    op: Any,
    y: torch.Tensor,
    method: Any,
    noises: tuple[torch.Tensor, torch.Tensor] | None,
    batches: _Batches,
    *,
    eta: float,
    clip: bool,
    tol: float | None,
) -> dict[int, tuple]:
    """Run ``method`` on this rank's batches: first index -> (x, evaluations, passes, converged, seconds)."""
    done: dict[int, tuple] = {}
    for lo in range(0, y.shape[0], batches.size):
        if (lo // batches.size) % batches.world != batches.rank:  # torch.distributed: batch b goes to rank b mod P
            continue
        sl = slice(lo, lo + batches.size)
        batch_noises = (noises[0][sl], noises[1][:, sl]) if noises is not None else None
        start = time.perf_counter()
        run = run_method(model, op, y[sl], method, eta, batch_noises, clip=clip, tol=tol)
        if run.x.is_cuda:  # wall-clock of finished GPU work
            torch.cuda.synchronize(run.x.device)
        done[lo] = (run.x, run.evaluations, run.passes, run.converged, time.perf_counter() - start)
    return done


def _gathered(done: dict[int, tuple], world: int, device: torch.device) -> list[tuple]:
    """The batch results of every rank in order (``torch.distributed``: gathered as CPU tensors)."""
    if world > 1:  # every rank gets every batch (CPU tensors), so the rows are those of one process
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, {lo: (v[0].cpu(), *v[1:]) for lo, v in done.items()})
        done = {lo: (v[0].to(device), *v[1:]) for part in parts for lo, v in part.items()}
    return [done[lo] for lo in sorted(done)]


def _lpips_cell(lpips_fn: Callable | None, small: bool, x: torch.Tensor, images: torch.Tensor) -> float | str:
    """Mean LPIPS of ``x`` against ``images``, or why there is none (no weights, images < 31 px)."""
    if lpips_fn is None:
        return NA_WEIGHTS
    if small:
        return NA_SMALL
    with torch.no_grad():
        return float(lpips_fn(x.float(), images.float()).mean())


def _row(
    task: str,
    method: Any,
    runs: list[tuple],
    x: torch.Tensor,
    images: torch.Tensor,
    y: torch.Tensor,
    op: Any,
    lp: float | str,
) -> dict[str, Any]:
    """The result row of one (task, method): ``x`` restored from ``y`` (all batches), ``lp`` its LPIPS cell."""
    p = psnr(x, images)
    return dict(
        task=task,
        method=method.name,
        steps=method.steps,
        iters=method.iters,
        solver=method.solver,
        n=images.shape[0],
        psnr=float(p.mean()),
        ssim=float(ssim(x, images).mean()),
        lpips=lp,
        consistency=float(consistency(x, y, op).mean()),
        cons=float(consistency(_quantise(x), y, op, norm="l1", unit_range=True).mean()),
        evaluations=max(r[1] for r in runs),
        passes=max(r[2] for r in runs),
        seconds=sum(r[4] for r in runs),
        converged=all(r[3] for r in runs),
        psnr_per_image=[round(float(v), 4) for v in p],
    )
