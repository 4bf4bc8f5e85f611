"""``deqir-edu restore``: one image file in, one PNG out, by tiles of the model's size.

Checks everything before any work (the output is never the input and can be written; the task fits
the model; the image and the mask are readable), prints the work it will do (tiles, network
evaluations, memory budget, estimated time) with a warning before a long job, and says when the
parallel solver stopped before its tolerance.  Notation: none (T = --steps, K = --iters).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..core.checks import NotFiniteError
from ..core.files import check_writable, same_file
from ..metrics import psnr
from ..models import ShardedModel, load_model, sampling_defaults
from ..operators import TASKS, make_operator, sr_scale
from ..sampling import default_passes
from .cliargs import add_chain_options, add_debug, add_devices, int_in, memory, solver_of, task
from .images import load_image, load_mask, save_image
from .launch import parse_devices, run_sharded
from .restore_checks import check_folder, check_memory, check_options, masked_task
from .restore_folder import add_folder_options, run_folder
from .tiling import TileSampling, choose_sampler, format_seconds, plan_tiled, restore_tiled

__all__ = ["add_restore"]

_LONG_JOB_S = 600.0  # warn before a job estimated to run longer than this


def add_restore(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore one image file (PNG/JPEG in, PNG out)")
    p.add_argument(
        "input",
        help="the observation y as an image (SR: the small image; colorize: grey), or a folder "
        "of images (then --out is a folder; with --devices or under torchrun the images are spread "
        "over the processes)",
    )
    p.add_argument("--task", required=True, type=task, help=f"one of: {', '.join(TASKS)}")
    p.add_argument(
        "--out",
        required=True,
        help="output PNG path (never the input; replaced atomically if it exists); a folder for a folder of inputs "
        "(locked while this runs: a second restore into it is refused)",
    )
    add_folder_options(p)  # --overwrite, --resume
    p.add_argument(
        "--mask",
        default=None,
        metavar="MASK.png",
        help="inpainting and old-photo: your damaged region, an image of the output's size, black = "
        "missing, white = kept (default: the package's mask of the task)",
    )
    p.add_argument("--model", default="fashion32", help="zoo name or checkpoint path (default fashion32)")
    p.add_argument(
        "--sampler",
        choices=("auto", "deqir", "ddnm"),
        default="auto",
        help="auto (default): the parallel DeqIR where a measured call predicts it faster than the "
        "sequential DDNM on this device, else DDNM (same result within 0.05 dB); with --devices, --solver or "
        "--iters: deqir (a note says so); --solver and --iters with --sampler ddnm are an error",
    )
    add_chain_options(p)
    p.add_argument("--clip", action="store_true", help="clip the clean estimate to [-1, 1]")
    p.add_argument(
        "--samples",
        type=int_in(1, 1024, "a number of runs"),
        default=1,
        metavar="K",
        help="average K runs: an estimate of the posterior mean, higher PSNR but blurrier (default 1)",
    )
    p.add_argument(
        "--memory",
        type=memory,
        default=None,
        metavar="SIZE",
        help="memory budget of the network calls, e.g. 2GB, at most the machine's (or GPU's) memory (default: "
        "a quarter of the free memory, at most 1 GiB on a CPU)",
    )
    add_debug(p)
    p.add_argument(
        "--simulate", action="store_true", help="INPUT is a clean image: degrade it with the task first and report PSNR"
    )
    add_devices(p)
    p.set_defaults(func=_run_restore)


def _restore_work(
    model_name: str,
    task: str,
    y: Any,
    hw: tuple[int, int],
    seed: int,
    options: dict[str, Any],
    wrap: Callable | None = None,
) -> Any:
    """Load the model, wrap it (``launch.run_sharded``) and restore ``y`` by tiles: ``(x, report)``."""
    model = load_model(model_name, progress=False)
    model = wrap(model) if wrap is not None else model
    report: dict[str, Any] = {}
    try:
        x = restore_tiled(model, task, y, hw, generator=torch.Generator().manual_seed(seed), report=report, **options)
    except NotFiniteError as err:  # the network (or the solver), not the user's image
        raise NotFiniteError(f"--model {model_name}: {err}") from None
    return x, {"not_converged": report.get("not_converged", 0), "tiles": report["plan"].tiles}


def _check_restore_paths(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that is the input (or the mask) or cannot be written."""
    if getattr(args, "resume", False) and not getattr(args, "one_device", False):  # one_device: a folder's image
        raise ValueError("--resume continues an interrupted restore of a folder (restore FOLDER --out DIR)")
    if getattr(args, "overwrite", False) and not getattr(args, "one_device", False):
        raise ValueError(
            "--overwrite is for a folder of inputs (restore FOLDER --out DIR); a single --out file is replaced "
            "(atomically) without it: drop --overwrite"
        )
    out = Path(args.out).expanduser()
    for name, path in (("input", args.input), ("mask", args.mask)):
        if path is not None and same_file(path, out):
            raise ValueError(
                f"--out {args.out} is the {name} file {path}; refusing to overwrite it: choose another --out"
            )
    check_writable(out, "--out")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {args.out} must end in .png (the result is written as a PNG)")


def _run_restore(args: argparse.Namespace) -> int:
    check_options(args)  # --solver/--iters with ddnm, --mask without a masked task: before any work
    devices = parse_devices(args.devices) if args.devices is not None else None
    check_memory(args.memory, devices)
    masked = masked_task(args.task)
    if Path(args.input).expanduser().is_dir():  # every image of the folder (restore_folder.py)
        net = load_model(args.model)  # its image shape: every input is checked against it, first
        check_folder(args, lambda one: _observation(one, net, masked, quiet=True))
        return run_folder(args, _run_restore)
    _check_restore_paths(args)
    one_device = bool(devices) and getattr(args, "one_device", False)  # this process restores on devices[0]
    model = load_model(args.model, device=devices[0] if one_device else "cpu")
    y, gt, hw, op_options = _observation(args, model, masked)
    like = y.to(devices[0]) if one_device else y  # measured on the device that will do the work
    options = _restore_options(args, model, hw, like, op_options, several_devices=bool(devices) and not one_device)
    _announce(args, options, hw)
    del model
    work = partial(_restore_work, args.model, args.task, y, hw, args.seed, options)
    if one_device:  # a share of a folder: this process, this device
        device = devices[0]
        result = work(wrap=lambda m: ShardedModel(m.to(device), device, split=False))
    elif devices:  # one process per device (launch.py); rank 0's result comes back
        result = run_sharded(devices, work)
        if result is None:  # a torchrun rank other than 0: rank 0 writes
            return 0
    else:
        result = work()
    _finish(args, y, gt, result, options)
    return 0


def _observation(
    args: argparse.Namespace, model: Any, masked: bool, quiet: bool = False
) -> tuple[Any, Any, tuple[int, int], dict]:
    """Read the input (and the mask): ``(y, ground truth or None, (H, W) of the result, op_options)``;
    ``quiet``: the notes are not printed (a folder's inputs checked before the run)."""
    c, h, w = model.image_shape
    if args.task in ("colorize", "old-photo") and c != 3:
        raise ValueError(
            f"--task {args.task} needs a colour model; {args.model} has {c} channel(s): use --model photo32"
        )
    s = sr_scale(args.task)
    grey_observation = args.task in ("colorize", "old-photo") and not args.simulate
    notes: list[str] = []
    image = load_image(args.input, 1 if grey_observation else c, notes)
    H, W = image.shape[-2:]
    gt = None
    if args.simulate:
        H, W = H - H % s, W - W % s
        if (H, W) != tuple(image.shape[-2:]):
            notes.append(f"cropped to {W} x {H} (a multiple of the SR scale {s})")
        gt = image[..., :H, :W]
    else:
        H, W = H * s, W * s
    if H < h or W < w:
        raise ValueError(
            f"the restored image would be {W} x {H}, smaller than the model's {w} x {h}; "
            f"give an input of at least {w // s} x {h // s} pixels"
        )
    op_options: dict[str, Any] = {}
    if masked and args.mask is not None:
        op_options["mask"] = load_mask(args.mask, (H, W), notes)
    elif masked:
        notes.append(
            f"no --mask given: the package's own mask of {args.task} is used (give --mask MASK.png, black = missing)"
        )
    y = make_operator(args.task, (c, H, W), **op_options).A(gt) if gt is not None else image
    for note in [] if quiet else notes:
        print(f"note: {note}")
    return y, gt, (H, W), op_options


def _restore_options(
    args: argparse.Namespace, model: Any, hw: tuple[int, int], like: Any, op_options: dict, several_devices: bool
) -> dict[str, Any]:
    """The options of ``restore_tiled``: the model's eta and clipping unless given, the sampler, the plan."""
    model_eta, model_clip = sampling_defaults(model)
    eta = model_eta if args.eta is None else args.eta
    clip = args.clip or model_clip
    iters = default_passes(solver_of(args), args.steps) if args.iters is None else args.iters
    first = "deqir" if args.sampler == "auto" else args.sampler  # auto: planned as deqir, then chosen
    plan = plan_tiled(model, args.task, hw, first, args.steps, iters, args.samples, memory=args.memory, like=like)
    sampler, why = choose_sampler(model, args.sampler, args.steps, plan, like=like, several_devices=several_devices)
    if why:
        print(why)
    if sampler != first:
        plan = plan.for_sampler(sampler, args.steps, iters)  # the same measured call, no second probe
    sampling = TileSampling(sampler, args.steps, iters, solver_of(args), eta, clip, args.samples)
    return dict(sampling=sampling, op_options=op_options, plan=plan)  # the plan: measured once


def _announce(args: argparse.Namespace, options: dict[str, Any], hw: tuple[int, int]) -> None:
    """Print the chain and the planned work; warn before a long job."""
    sampling, plan = options["sampling"], options["plan"]
    chain = f"T = {args.steps}, eta = {sampling.eta:g}"
    chain += " (the model's default; --eta to change)" if args.eta is None else ""
    if sampling.sampler == "deqir":
        chain += f", solver {sampling.solver}, at most {sampling.iters} passes"
    print(f"chain: {chain}" + (", clipped x0" if sampling.clip else ""))
    print(f"restore {hw[1]} x {hw[0]}: {plan.describe()}")
    if plan.seconds > _LONG_JOB_S:
        print(
            f"warning: this will take about {format_seconds(plan.seconds)} here; for a quicker result use "
            "--sampler ddnm, fewer --steps or --iters, a smaller image, or a GPU (--devices cuda:0)",
            file=sys.stderr,
        )


def _finish(args: argparse.Namespace, y: Any, gt: Any, result: tuple[Any, dict], options: dict[str, Any]) -> None:
    """Save the result, print what was done (PSNR with --simulate), warn when tiles did not converge."""
    x, info = result
    save_image_checked(x, args.out)
    msg = f"restored {tuple(y.shape[1:])} -> {tuple(x.shape[1:])} with {options['sampling'].sampler}: {args.out}"
    if gt is not None:
        msg += f" (PSNR {float(psnr(x, gt).mean()):.2f} dB)"
    print(msg)
    if info["not_converged"]:
        print(
            f"warning: the parallel solver stopped after {options['sampling'].iters} passes (--iters) "
            "before its tolerance on "
            f"{info['not_converged']} of {info['tiles']} tiles; the result may be worse than the "
            "sequential chain: raise --iters or use --sampler ddnm",
            file=sys.stderr,
        )


def save_image_checked(x: Any, out: str) -> None:
    """Save the result; a model that produced NaN is named as such (not the user's image)."""
    if not bool(torch.isfinite(x).all()):
        raise NotFiniteError(
            "the model produced NaN or infinite values; nothing was written. Check the checkpoint "
            "(or run in float32 instead of float16)"
        )
    save_image(x, out)
