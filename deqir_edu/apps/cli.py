"""Command-line interface ``deqir-edu``.

Each subcommand is a small function here that parses its arguments and calls the package; the real
work lives in the layers below (sampling, models, experiments, training, ...).  ``deqir-edu --help``
lists the commands.  Notation: none (no paper symbols; the options name them: T = --steps, K = --iters).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deqir-edu",
        description="Deep Equilibrium Diffusion Restoration (DeqIR) for teaching: restore images with "
        "sequential (DDNM) or parallel (DeqIR) diffusion sampling.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # --- subcommands register here (one small _add_* function each) ---
    _add_demo(sub)
    _add_restore(sub)
    _add_models(sub)
    _add_download(sub)
    _add_train(sub)
    _add_eval(sub)
    return parser


def _add_solver(p: argparse.ArgumentParser) -> None:
    from ..solvers import solver_names

    p.add_argument("--solver", default="anderson", choices=solver_names(), metavar="NAME",
                   help=f"parallel solver (default anderson, Algorithm 1): one of {', '.join(solver_names())}")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="restore frozen test images with A^+y, DDNM and DeqIR; print a PSNR table")
    p.add_argument("--model", default="fashion32", help="embedded model (default fashion32)")
    p.add_argument("--n", type=int, default=4, help="number of test images (default 4)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps T (default 20)")
    p.add_argument("--iters", type=int, default=15, help="solver passes K (default 15)")
    _add_solver(p)
    p.add_argument("--eta", type=float, default=0.15, help="eta (default 0.15 as the paper; see the model card)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="deqir_demo.png", help="figure path (default deqir_demo.png)")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo import default_model, format_table, run_demo, save_figure

    torch.manual_seed(args.seed)
    model, images, desc = default_model(args.model)
    images = images[: args.n]
    print(f"model: {desc}; {images.shape[0]} test images of shape {tuple(images.shape[1:])}")
    rows, shown = run_demo(model, images, steps=args.steps, iters=args.iters, eta=args.eta, seed=args.seed,
                           solver=args.solver)
    print(format_table(rows, args.steps, args.iters, args.solver))
    print(f"figure: {save_figure(shown, args.out, n=min(4, images.shape[0]))}")
    return 0


def _add_restore(sub: argparse._SubParsersAction) -> None:
    from ..operators import TASKS

    p = sub.add_parser("restore", help="restore one image file (PNG/JPEG in, PNG out)")
    p.add_argument("input", help="the observation y as an image (SR: the small image; colorize: grey)")
    p.add_argument("--task", required=True, help=f"one of: {', '.join(TASKS)}")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--model", default="fashion32", help="zoo name or checkpoint path (default fashion32)")
    p.add_argument("--sampler", choices=("deqir", "ddnm"), default="deqir")
    p.add_argument("--steps", type=int, default=20, help="sampling steps T")
    p.add_argument("--iters", type=int, default=15, help="solver passes K (deqir)")
    _add_solver(p)
    p.add_argument("--eta", type=float, default=0.15, help="eta (default 0.15 as the paper)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", action="store_true", help="clip the clean estimate to [-1, 1]")
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="average K runs: an estimate of the posterior mean, higher PSNR but blurrier (default 1)")
    p.add_argument("--simulate", action="store_true",
                   help="INPUT is a clean image: degrade it with the task first and report PSNR")
    p.add_argument("--devices", default=None, metavar="D0,D1,...",
                   help="split each network pass across devices, e.g. cuda:0,cuda:1 (torch.distributed; "
                   "also under torchrun)")
    p.set_defaults(func=_run_restore)


def _restore_work(model_name: str, task: str, y: Any, hw: tuple[int, int], seed: int, options: dict[str, Any],
                  wrap: Callable | None = None) -> Any:
    """Load the model, wrap it (``launch.run_sharded``) and restore ``y`` by tiles: a callable on tensors."""
    import torch

    from ..models import load_model
    from .tiling import restore_tiled

    model = load_model(model_name)
    model = wrap(model) if wrap is not None else model
    return restore_tiled(model, task, y, hw, generator=torch.Generator().manual_seed(seed), **options)


def _run_restore(args: argparse.Namespace) -> int:
    from ..metrics import psnr
    from ..models import load_model
    from ..operators import make_operator, sr_scale
    from .images import load_image, save_image

    model = load_model(args.model)
    c, h, w = model.image_shape
    s = sr_scale(args.task)
    grey_observation = args.task in ("colorize", "old-photo") and not args.simulate
    image = load_image(args.input, 1 if grey_observation else c)
    H, W = image.shape[-2:]
    gt = None
    if args.simulate:
        H, W = H - H % s, W - W % s
        gt = image[..., :H, :W]
        y = make_operator(args.task, (c, H, W)).A(gt)
    else:
        y = image
        H, W = H * s, W * s
    options = dict(sampler=args.sampler, steps=args.steps, eta=args.eta, iters=args.iters, solver=args.solver,
                   clip=args.clip, samples=args.samples)
    work = partial(_restore_work, args.model, args.task, y, (H, W), args.seed, options)
    if getattr(args, "devices", None):  # one process per device (launch.py); rank 0's result comes back
        from .launch import parse_devices, run_sharded

        x = run_sharded(parse_devices(args.devices), work)
        if x is None:  # a torchrun rank other than 0: rank 0 writes
            return 0
    else:
        x = work()
    save_image(x, args.out)
    msg = f"restored {tuple(y.shape[1:])} -> {tuple(x.shape[1:])} with {args.sampler}: {args.out}"
    if gt is not None:
        msg += f" (PSNR {float(psnr(x, gt)):.2f} dB)"
    print(msg)
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo and what is downloaded / present")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from ..core.download import cache_dir
    from ..models import list_models

    rows = list_models()
    header = ("name", "arch", "status", "size", "description")
    table = [header] + [
        (r["name"], r["architecture"], r["status"], "-" if r["size"] is None else f"{r['size'] / 2**20:.1f} MiB",
         r["description"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"\ncache: {cache_dir()} (set DEQIR_EDU_CACHE to change); fetch one with `deqir-edu download NAME`")
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a zoo model (see `deqir-edu models`) or lpips-alex into the cache")
    p.add_argument("name", help="zoo model name, e.g. ddpm-celebahq256, or lpips-alex (LPIPS backbone)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    if args.name == "lpips-alex":
        from ..metrics.lpips import download_backbone

        path = download_backbone()
    else:
        from ..models import fetch

        path = fetch(args.name, progress=not args.no_progress)
    print(f"{args.name}: {path}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diffusion prior from a JSON config (fashion32, photo32, tiny or a file)")
    p.add_argument("config", help="config name (fashion32, photo32, tiny) or path to a JSON config")
    p.add_argument("--out", default=None, help="output folder (default: runs/NAME)")
    p.add_argument("--steps", type=int, default=None, help="total steps (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--until", default=None, metavar="HH:MM",
                   help="stop cleanly at this local time today and write the weights of the step reached")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="do not train: write the EMA weights of OUT/checkpoint.pt (step reached) into DIR")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from ..training import describe, load_config, train

    out = args.out or f"runs/{load_config(args.config)['name']}"
    if args.export:
        from ..training import export_checkpoint

        print(f"wrote {export_checkpoint(f'{out}/checkpoint.pt', args.export)}")
        return 0
    deadline = None
    if args.until:
        import datetime as dt

        try:
            hh, mm = (int(v) for v in args.until.split(":"))
            deadline = dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        except ValueError as err:
            raise ValueError(f"--until must be a time HH:MM like 12:20, got {args.until!r}") from err
    summary = train(args.config, out, steps=args.steps, resume=args.resume, progress=not args.no_progress,
                    deadline=deadline)
    print(describe(summary))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="tasks x methods on a frozen test set; writes OUT/results.json and OUT/results.md")
    p.add_argument("--model", default="fashion32", help="zoo name, checkpoint path, or gmm-fashion32 (exact prior)")
    p.add_argument("--n", type=int, default=16, help="number of test images (default 16)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default results/eval-MODEL)")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all of the grid for the model)")
    p.add_argument("--methods", default=None, help="comma-separated, e.g. pinv,ddnm,ddnm-t100,deqir-k15,deqir-picard,deqir-taa-k8 "
                   "(deqir-SOLVER-kK: any registered solver)")
    p.add_argument("--steps", type=int, default=20, help="T of ddnm / deqir-kK (default 20)")
    p.add_argument("--eta", type=float, default=0.15, help="eta of every chain (default 0.15, the paper's)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--images", default=None, help="folder of PNG/JPEG test images instead of the frozen test set")
    p.add_argument("--clip", action="store_true", help="clip the clean estimate to [-1, 1]")
    p.add_argument("--bf16", action="store_true", help="run the network under bf16 autocast (about 2x on CPU)")
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiments import DEFAULT_METHODS, evaluate, load_for_eval, write_results

    split = lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else None  # noqa: E731
    model, images, source = load_for_eval(args.model, args.n, args.images, args.device, args.bf16)
    print(f"model {args.model}: {images.shape[0]} images of shape {tuple(images.shape[1:])} ({source})")
    rows = evaluate(model, images, tasks=split(args.tasks), methods=split(args.methods) or DEFAULT_METHODS,
                    steps=args.steps, eta=args.eta, seed=args.seed, device=args.device,
                    batch_size=args.batch_size, clip=args.clip)
    js, md = write_results(rows, args.out or f"results/eval-{Path(args.model).stem}", _meta_for(args, source))
    print(md.read_text())
    print(f"wrote {js} and {md}")
    return 0


def _meta_for(args: Any, images_source: str) -> dict[str, Any]:
    """Metadata of a run of ``deqir-edu eval`` (parsed arguments), with the command that repeats it."""
    import datetime

    import torch

    from ..experiments import NA_WEIGHTS
    from ..experiments.evaluation import lpips_status

    lpips_fn, why = lpips_status()

    opts = [f"--model {args.model}", f"--n {args.n}", f"--seed {args.seed}", f"--steps {args.steps}",
            f"--eta {args.eta}", f"--device {args.device}", f"--batch-size {args.batch_size}"]
    opts += [f"--{k} {getattr(args, k)}" for k in ("tasks", "methods", "images", "out") if getattr(args, k)]
    opts += [f"--{k}" for k in ("clip", "bf16") if getattr(args, k)]
    return dict(command="deqir-edu eval " + " ".join(opts), model=args.model, images=images_source, n=args.n,
                eta=args.eta, seed=args.seed, steps=args.steps, device=args.device, clip=args.clip, bf16=args.bf16,
                lpips="AlexNet-LPIPS v0.1" if lpips_fn else NA_WEIGHTS, lpips_reason=why,
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), torch=torch.__version__)


def _version() -> str:
    from ..core.version import package_version

    return package_version()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"deqir-edu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
