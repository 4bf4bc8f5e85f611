"""``deqir-edu eval``: tasks x methods on a frozen test set (or a folder of images), as tables.

Checks the options before any work (the output folder, the tasks, the methods, the device), then runs
``experiments.evaluate`` and writes ``OUT/results.json`` and ``OUT/results.md`` atomically.  Either file
already in OUT (an earlier eval's, or the user's own) is replaced only with ``--overwrite``; OUT is locked
while eval runs (``core.locks.output_lock``), so a second eval into it is refused.  Under
``torchrun`` the images are spread over the processes (one per device) and rank 0 writes the results
of all ranks.  Notation: none (T = --steps; a method ``deqir-SOLVER-kK`` runs K passes of SOLVER).
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..core.checks import check_device
from ..core.locks import output_lock
from ..core.signals import deferred_signals
from ..experiments import DEFAULT_METHODS, NA_WEIGHTS, evaluate, load_for_eval, parse_method, write_results
from ..experiments.evaluation import lpips_status
from ..models import sampling_defaults
from ..operators import TASKS
from .cliargs import POSITIVE, SEED, STEPS, add_debug, eta
from .launch import init_process

__all__ = ["add_eval"]

_OUTPUTS = ("results.json", "results.md")  # every file eval writes into --out


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="tasks x methods on a frozen test set; writes OUT/results.json and OUT/results.md")
    p.add_argument("--model", default="fashion32", help="zoo name, checkpoint path, or gmm-fashion32 (exact prior)")
    p.add_argument(
        "--n",
        "--num-images",
        dest="n",
        type=POSITIVE,
        default=16,
        help="number of test images (default 16; under torchrun write --num-images)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="output folder (default results/eval-MODEL)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUT/results.json and OUT/results.md if they exist (without it eval refuses to replace them, "
        "yours or an earlier eval's); one eval per OUT at a time (a lock file)",
    )
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all of the grid for the model)")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated, e.g. pinv,ddnm,ddnm-t100,deqir-k15,deqir-picard,deqir-taa-k8 "
        "(deqir-SOLVER-kK: any registered solver)",
    )
    p.add_argument("--steps", type=STEPS, default=20, help="T of ddnm / deqir-kK (default 20)")
    p.add_argument(
        "--eta",
        type=eta,
        default=None,
        help="eta of every chain (default: the model's, 0.85 for the embedded models, else the paper's 0.15)",
    )
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--images", default=None, help="folder of PNG/JPEG test images instead of the frozen test set")
    p.add_argument("--clip", action="store_true", help="clip the clean estimate to [-1, 1]")
    p.add_argument("--bf16", action="store_true", help="run the network under bf16 autocast (about 2x on CPU)")
    add_debug(p)
    p.set_defaults(func=_run_eval)


def _split(text: str | None) -> list[str] | None:
    """``"a, b,"`` -> ``["a", "b"]``; None or empty -> None."""
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an --out that is a file, or that holds a file eval would replace (unless ``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    taken = [name for name in _OUTPUTS if (out / name).exists()]
    if taken and not overwrite:
        raise ValueError(
            f"{out} already holds {' and '.join(taken)}; add --overwrite to replace "
            f"{'them' if len(taken) > 1 else 'it'} or choose another --out"
        )


def _run_eval(args: argparse.Namespace) -> int:
    out = Path(args.out or f"results/eval-{Path(args.model).stem}")
    _check_out(out, args.overwrite)
    for task in _split(args.tasks) or []:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} in --tasks; choose from {', '.join(TASKS)}")
    for m in _split(args.methods) or []:
        parse_method(m, args.steps)
    check_device(args.device, "--device")  # e.g. cuda on a CPU build: one line, before any work
    with output_lock(out, f"--out {out}"):  # one eval per folder (the ranks of one torchrun job share it)
        _check_out(out, args.overwrite)  # again, now that no other run can write there
        return _evaluate_into(out, args)


def _evaluate_into(out: Path, args: argparse.Namespace) -> int:
    """Run the evaluation of ``args`` and write ``out/results.json`` and ``out/results.md``."""
    rank = _join_torchrun(args)  # under torchrun the images are spread over the ranks (evaluate)
    model, images, source = load_for_eval(args.model, args.n, args.images, args.device, args.bf16)
    print(f"model {args.model}: {images.shape[0]} images of shape {tuple(images.shape[1:])} ({source})")
    if args.eta is None:  # the model's default, recorded in the results as the eta used
        args.eta = sampling_defaults(model)[0]
        print(f"eta = {args.eta:g} (the model's default; --eta to change)")
    rows = evaluate(
        model,
        images,
        tasks=_split(args.tasks),
        methods=_split(args.methods) or DEFAULT_METHODS,
        steps=args.steps,
        eta=args.eta,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        clip=args.clip,
    )
    if rank is not None:
        dist.destroy_process_group()
        if rank > 0:  # rank 0 writes the results of all ranks
            return 0
    with deferred_signals():  # both files or neither
        js, md = write_results(rows, out, _meta_for(args, source))
    print(md.read_text())
    print(f"wrote {js} and {md}")
    return 0


def _join_torchrun(args: Any) -> int | None:
    """Under ``torchrun`` (RANK, WORLD_SIZE set): join the group on this rank's device; return the rank."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:  # one GPU per process: cuda:LOCAL_RANK
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        args.device = str(device)
    init_process(rank, world, "env://", device)
    return rank


def _meta_for(args: Any, images_source: str) -> dict[str, Any]:
    """Metadata of a run of ``deqir-edu eval`` (parsed arguments), with the command that repeats it."""
    lpips_fn, why = lpips_status()

    opts = [
        f"--model {args.model}",
        f"--n {args.n}",
        f"--seed {args.seed}",
        f"--steps {args.steps}",
        f"--eta {args.eta}",
        f"--device {args.device}",
        f"--batch-size {args.batch_size}",
    ]
    opts += [f"--{k} {getattr(args, k)}" for k in ("tasks", "methods", "images", "out") if getattr(args, k)]
    opts += [f"--{k}" for k in ("clip", "bf16") if getattr(args, k)]
    return dict(
        command="deqir-edu eval " + " ".join(opts),
        model=args.model,
        images=images_source,
        n=args.n,
        eta=args.eta,
        seed=args.seed,
        steps=args.steps,
        device=args.device,
        clip=args.clip,
        bf16=args.bf16,
        lpips="AlexNet-LPIPS v0.1" if lpips_fn else NA_WEIGHTS,
        lpips_reason=why,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        torch=torch.__version__,
    )
