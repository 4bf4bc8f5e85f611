"""Evaluation grid: tasks x methods on a frozen test set (`deqir-edu eval`); ``results.py`` writes it as JSON and Markdown.

Every method of one task uses the SAME noises: ``draw_noises`` with one seed for the whole test set,
then sliced per batch.  Methods with the same T therefore share x_T and every eps_k, and DeqIR
differs from DDNM only by how far its solver got.  (The numbers do not depend on the batch size,
except that Anderson's early stop, ``tol > 0``, tests the worst image of a batch.)

Notation (column / code name -> meaning, paper symbol)

    pinv            A^+ y, the "Baseline" rows of Tables 1-3
    ddnm[-tN]       sequential DDNM (Eqs. (4)-(5)), T = N steps (default: ``steps``)
    deqir-kK        DeqIR, Anderson acceleration (Algorithm 1), at most K applications of F, same T
    deqir-picard    DeqIR, Picard iteration, exactly K = T applications: equals DDNM (Proposition 1)
    psnr, ssim      mean over images, ``metrics.psnr`` / ``metrics.ssim`` on [0, 1]
    lpips           mean AlexNet-LPIPS; the string "n/a (no weights)" when the weights are absent
    consistency     mean ||A x - y||_2 of the returned x in [-1, 1] ("consistency" of the paper)
    cons            "Cons" (Table 3): ||A q(x) - y||_1 on [0, 1], q = the 8-bit image one would save
                    (DDNM's L1 form; the paper's normalisation is unpublished, compare within a table)
    nfe             network evaluations of single states (DDNM: T; DeqIR: T per application of F)
    depth           sequential network passes, the depth of the computation (DDNM: T; DeqIR: iterations)
    seconds         wall-clock of the method on all n images (batches of ``batch_size``)
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .metrics import consistency, psnr, ssim
from .operators import make_operator
from .results import format_markdown, method_table, per_image_gap, read_results, write_results
from .samplers import ddnm_sample, deqir_sample, draw_noises, progress

__all__ = ["TASKS_GREY", "TASKS_COLOUR", "DEFAULT_METHODS", "NA_WEIGHTS", "Method", "parse_method",
           "default_tasks", "evaluate", "format_markdown", "write_results", "read_results", "method_table",
           "per_image_gap", "load_for_eval", "meta_for", "fit_to"]

TASKS_GREY = ("sr2", "sr4", "sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso",
              "inpaint-text", "inpaint-stripes")
TASKS_COLOUR = TASKS_GREY + ("colorize",)
DEFAULT_METHODS = ("pinv", "ddnm", "ddnm-t100", "deqir-k5", "deqir-k10", "deqir-k15", "deqir-picard")
NA_WEIGHTS = "n/a (no weights)"
NA_SMALL = "n/a (image < 31 px)"
_METHOD = re.compile(r"^(pinv|ddnm|deqir)(?:-t(\d+))?(?:-k(\d+)|-(picard))?$")


@dataclass(frozen=True)
class Method:
    """One column of the grid: ``kind`` in {pinv, ddnm, deqir}, T, K and the solver."""

    name: str
    kind: str
    steps: int
    iters: int | None = None
    solver: str | None = None


def parse_method(name: str, steps: int = 20) -> Method:
    """``pinv``, ``ddnm``, ``ddnm-t100``, ``deqir-k15``, ``deqir-t35-k15``, ``deqir-picard`` -> ``Method``."""
    m = _METHOD.match(str(name))
    if m is None or (m.group(1) != "deqir" and (m.group(3) or m.group(4))) or (m.group(1) == "pinv" and m.group(2)):
        raise ValueError(f"unknown method {name!r}; use pinv, ddnm, ddnm-tT, deqir-kK, deqir-tT-kK or deqir-picard")
    kind, t = m.group(1), int(m.group(2) or steps)
    if t < 1:
        raise ValueError(f"method {name!r}: T must be >= 1")
    if kind == "pinv":
        return Method(name, kind, 0)
    if kind == "ddnm":
        return Method(name, kind, t)
    if m.group(4):
        return Method(name, kind, t, t, "picard")
    return Method(name, kind, t, int(m.group(3) or 15), "anderson")


def default_tasks(image_shape: Sequence[int]) -> tuple[str, ...]:
    """All tasks of the grid; colorization only for 3-channel images."""
    return TASKS_COLOUR if int(image_shape[0]) == 3 else TASKS_GREY


def _auto_lpips() -> tuple[Callable | None, str]:
    from .lpips import lpips, lpips_available

    ok, why = lpips_available()
    return (lpips, "AlexNet-LPIPS v0.1") if ok else (None, why)


def _run(model: Any, op: Any, y: torch.Tensor, method: Method, eta: float,
         noises: tuple[torch.Tensor, torch.Tensor] | None, clip: bool, tol: float,
         chunk_size: int | None = None) -> tuple[torch.Tensor, int, int, bool]:
    """Restore one batch; returns ``(x, nfe, depth, converged)``."""
    if method.kind == "pinv":
        return op.A_pinv(y), 0, 0, True
    if method.kind == "ddnm":
        x = ddnm_sample(model, op, y, steps=method.steps, eta=eta, noises=noises, clip=clip)
        return x, method.steps, method.steps, True
    res = deqir_sample(model, op, y, steps=method.steps, eta=eta, noises=noises, clip=clip, solver=method.solver,
                       max_iter=method.iters, tol=0.0 if method.solver == "picard" else tol, chunk_size=chunk_size)
    return res.x0, res.nfe, res.trace.iterations, bool(res.trace.converged or method.solver == "picard")


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
    tol: float = 1e-3,
    lpips_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | str | None = "auto",
    chunk_size: int | None = None,
) -> list[dict[str, Any]]:
    """Run every method on every task; one result row (a dict) per (task, method).

    Args:
        model: eps-model (``model(x_t, t)``, ``model.image_shape``).
        images: ground truth ``(N, C, H, W)`` in [-1, 1]; moved to ``device``, dtype kept.
        tasks: task names (default ``default_tasks``); methods: names for ``parse_method``.
        steps: default T of ``ddnm`` / ``deqir-kK``; eta: eta of every chain (paper: 0.15).
        seed: seeds ``draw_noises`` once per (task, T) for all N images.
        tol: Anderson's tolerance on the x_0 residual (it may stop before K).
        lpips_fn: ``"auto"`` (real weights if present), a callable ``(x, ref) -> (B,)``, or ``None``.
        chunk_size: states per network call in DeqIR (bounds GPU memory at 256 x 256).
    Returns:
        rows with keys task, method, steps, iters, solver, n, psnr, ssim, lpips, consistency, cons,
        nfe, depth, seconds, converged, psnr_per_image.
    """
    images = images.to(device) if device is not None else images
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images must be (N, C, H, W) with (C, H, W) = {tuple(model.image_shape)}, "
                         f"got {tuple(images.shape)}")
    shape = tuple(images.shape[1:])
    tasks = tuple(default_tasks(shape) if tasks is None else tasks)
    if "colorize" in tasks and shape[0] != 3:
        raise ValueError(f"colorize needs a 3-channel model; this one has {shape[0]} channel(s): drop it from tasks")
    parsed = [parse_method(m, steps) for m in methods]
    if isinstance(lpips_fn, str):
        if lpips_fn != "auto":
            raise ValueError(f"lpips_fn must be 'auto', a callable or None, got {lpips_fn!r}")
        lpips_fn, _ = _auto_lpips()
    small = min(shape[1:]) < 31
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
            outs, nfe, depth, conv, seconds = [], 0, 0, True, 0.0
            for lo in range(0, n, batch_size):
                sl = slice(lo, lo + batch_size)
                noises = (noise_cache[T][0][sl], noise_cache[T][1][:, sl]) if T else None
                start = time.perf_counter()
                x, f, d, c = _run(model, op, y[sl], method, eta, noises, clip, tol, chunk_size)
                if x.is_cuda:  # wall-clock of finished GPU work
                    torch.cuda.synchronize(x.device)
                seconds += time.perf_counter() - start
                outs.append(x)
                nfe, depth, conv = max(nfe, f), max(depth, d), conv and c
            x = torch.cat(outs)
            p = psnr(x, images)
            if lpips_fn is None:
                lp: float | str = NA_WEIGHTS
            elif small:
                lp = NA_SMALL
            else:
                with torch.no_grad():
                    lp = float(lpips_fn(x.float(), images.float()).mean())
            rows.append(dict(
                task=task, method=method.name, steps=T, iters=method.iters, solver=method.solver, n=n,
                psnr=float(p.mean()), ssim=float(ssim(x, images).mean()), lpips=lp,
                consistency=float(consistency(x, y, op).mean()),
                cons=float(consistency(_quantise(x), y, op, norm="l1", unit_range=True).mean()),
                nfe=nfe, depth=depth, seconds=seconds, converged=conv,
                psnr_per_image=[round(float(v), 4) for v in p],
            ))
    return rows


def load_for_eval(name: str, n: int, images: str | None = None, device: str | None = None,
                  bf16: bool = False) -> tuple[Any, torch.Tensor, str]:
    """``(model, test images (n, C, H, W), description of the images)`` for ``deqir-edu eval``.

    ``name``: a zoo name or checkpoint path (``zoo.load_model``), or ``gmm-fashion32``: the exact
    Gaussian-mixture prior (256 components) fitted to 4000 Fashion-MNIST training images.  Images:
    the folder ``images`` (PNG/JPEG, centre-cropped and resized to the model), else the frozen test
    set of the model's shape (fashion32: the first Fashion-MNIST test images, padded to 32 x 32).
    """
    from .datasets import fashion_mnist, image_folder, load_testset, pad_to_32, to_tensor_images

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive number of images, got {n!r}")

    if name == "gmm-fashion32":
        from .prior import GaussianMixturePrior

        train, _ = fashion_mnist("train")
        fit_on = pad_to_32(to_tensor_images(train[:4000])).double()
        model: Any = GaussianMixturePrior.fit(fit_on, 256, generator=torch.Generator().manual_seed(0))
    else:
        from .zoo import load_model

        model = load_model(name, device=device or "cpu")
        if bf16:
            model.autocast_dtype = torch.bfloat16
    c, h, w = (int(v) for v in model.image_shape)
    dtype = torch.float64 if name == "gmm-fashion32" else torch.float32
    if images is not None:
        pics = image_folder(images, c)
        x = torch.stack([fit_to(p, h, w) for p in pics[:n]])
        source = f"folder {images}"
    elif (c, h, w) == (1, 32, 32):
        try:
            x, source = load_testset("fashion32", n), "testset fashion32"
        except FileNotFoundError:  # same images, read from the idx files
            x, source = pad_to_32(to_tensor_images(fashion_mnist("test")[0][:n])), "fashion-mnist test[:n]"
    elif (c, h, w) == (3, 32, 32):
        x, source = load_testset("photo32", n), "testset photo32"
    else:
        raise ValueError(f"no frozen test set for images of shape {(c, h, w)}; pass --images DIR")
    return model, x.to(dtype), source


def meta_for(args: Any, images_source: str) -> dict[str, Any]:
    """Metadata of a run of ``deqir-edu eval`` (parsed arguments), with the command that repeats it."""
    import datetime

    opts = [f"--model {args.model}", f"--n {args.n}", f"--seed {args.seed}", f"--steps {args.steps}",
            f"--eta {args.eta}", f"--device {args.device}", f"--batch-size {args.batch_size}"]
    opts += [f"--{k} {getattr(args, k)}" for k in ("tasks", "methods", "images", "out") if getattr(args, k)]
    opts += [f"--{k}" for k in ("clip", "bf16") if getattr(args, k)]
    return dict(command="deqir-edu eval " + " ".join(opts), model=args.model, images=images_source, n=args.n,
                eta=args.eta, seed=args.seed, steps=args.steps, device=args.device, clip=args.clip, bf16=args.bf16,
                lpips="AlexNet-LPIPS v0.1" if _auto_lpips()[0] else NA_WEIGHTS, lpips_reason=_auto_lpips()[1],
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__)


def fit_to(p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre-crop ``(C, H', W')`` to the aspect ratio of ``(h, w)``, then resize (area) to ``(h, w)``."""
    import torch.nn.functional as F

    s = min(p.shape[1] / h, p.shape[2] / w)
    ch, cw = int(h * s), int(w * s)
    top, left = (p.shape[1] - ch) // 2, (p.shape[2] - cw) // 2
    crop = p[:, top:top + ch, left:left + cw]
    return F.interpolate(crop[None], size=(h, w), mode="area")[0] if (ch, cw) != (h, w) else crop
