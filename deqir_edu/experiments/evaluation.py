"""Evaluation grid: tasks x methods on a frozen test set (`deqir-edu eval`); ``results.py`` writes it as JSON and Markdown.

The methods are run by ``runner.run_method`` (the same runner as the demo and ``restore``).

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
from typing import Any

import torch
import torch.distributed as dist

from ..core.progress import progress
from ..diffusion.noises import draw_noises
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
    from ..metrics.lpips import lpips, lpips_available

    ok, why = lpips_available()
    return (lpips, "AlexNet-LPIPS v0.1") if ok else (None, why)


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
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(
            f"images must be (N, C, H, W) with (C, H, W) = {tuple(model.image_shape)}, got {tuple(images.shape)}"
        )
    shape = tuple(images.shape[1:])
    tasks = tuple(default_tasks(shape) if tasks is None else tasks)
    if "colorize" in tasks and shape[0] != 3:
        raise ValueError(f"colorize needs a 3-channel model; this one has {shape[0]} channel(s): drop it from tasks")
    parsed = [parse_method(m, steps) for m in methods]
    if isinstance(lpips_fn, str):
        if lpips_fn != "auto":
            raise ValueError(f"lpips_fn must be 'auto', a callable or None, got {lpips_fn!r}")
        lpips_fn, _ = lpips_status()
    small = min(shape[1:]) < 31
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    rows: list[dict[str, Any]] = []
    n = images.shape[0]
    for task in progress(tasks, "tasks"):
        op = make_operator(task, shape)
        y = op.A(images)
        noise_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for method in progress(parsed, task):
            T = method.steps
            if T and T not in noise_cache:  # one draw per (task, T): shared by every method with this T
                gen = torch.Generator(device="cpu").manual_seed(seed)
                x_T, eps = draw_noises(tuple(images.shape), T, gen, images.dtype)
                noise_cache[T] = (x_T.to(images.device), eps.to(images.device))
            done: dict[int, tuple] = {}
            for lo in range(0, n, batch_size):
                if (lo // batch_size) % world != rank:  # torch.distributed: batch b goes to rank b mod P
                    continue
                sl = slice(lo, lo + batch_size)
                noises = (noise_cache[T][0][sl], noise_cache[T][1][:, sl]) if T else None
                start = time.perf_counter()
                run = run_method(model, op, y[sl], method, eta, noises, clip=clip, tol=tol)
                if run.x.is_cuda:  # wall-clock of finished GPU work
                    torch.cuda.synchronize(run.x.device)
                done[lo] = (run.x, run.evaluations, run.passes, run.converged, time.perf_counter() - start)
            if world > 1:  # every rank gets every batch (CPU tensors), so the rows are those of one process
                parts: list[Any] = [None] * world
                dist.all_gather_object(parts, {lo: (v[0].cpu(), *v[1:]) for lo, v in done.items()})
                done = {lo: (v[0].to(images.device), *v[1:]) for part in parts for lo, v in part.items()}
            runs = [done[lo] for lo in sorted(done)]
            x = torch.cat([r[0] for r in runs])
            evals, passes = max(r[1] for r in runs), max(r[2] for r in runs)
            conv, seconds = all(r[3] for r in runs), sum(r[4] for r in runs)
            p = psnr(x, images)
            if lpips_fn is None:
                lp: float | str = NA_WEIGHTS
            elif small:
                lp = NA_SMALL
            else:
                with torch.no_grad():
                    lp = float(lpips_fn(x.float(), images.float()).mean())
            rows.append(
                dict(
                    task=task,
                    method=method.name,
                    steps=T,
                    iters=method.iters,
                    solver=method.solver,
                    n=n,
                    psnr=float(p.mean()),
                    ssim=float(ssim(x, images).mean()),
                    lpips=lp,
                    consistency=float(consistency(x, y, op).mean()),
                    cons=float(consistency(_quantise(x), y, op, norm="l1", unit_range=True).mean()),
                    evaluations=evals,
                    passes=passes,
                    seconds=seconds,
                    converged=conv,
                    psnr_per_image=[round(float(v), 4) for v in p],
                )
            )
    return rows
