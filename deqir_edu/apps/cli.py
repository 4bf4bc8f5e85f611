"""Command-line interface ``deqir-edu``.

Each subcommand is a small function here that parses its arguments and calls the package; the real
work lives in the layers below (sampling, models, experiments, training, ...).  ``deqir-edu --help``
lists the commands.  Notation: none (no paper symbols; the options name them: T = --steps, K = --iters).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .cliargs import POSITIVE, SEED, STEPS, Parser, add_chain_options, add_debug, eta, int_in
from .restore_cmd import add_restore

__all__ = ["main", "build_parser"]

# Errors of the user (bad files, options, data): one line, exit code 2.  Anything else is a bug: one
# line that says so, exit code 1; ``--debug`` shows the traceback of either.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError,
                                                 NotADirectoryError, FileExistsError)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="deqir-edu",
        description="Deep Equilibrium Diffusion Restoration (DeqIR) for teaching: restore images with "
        "sequential (DDNM) or parallel (DeqIR) diffusion sampling.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    # --- subcommands register here (one small _add_* function each) ---
    _add_demo(sub)
    add_restore(sub)
    _add_models(sub)
    _add_download(sub)
    _add_train(sub)
    _add_eval(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined]
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="restore frozen test images with A^+y, DDNM and DeqIR; print a PSNR table")
    p.add_argument("--model", default="fashion32", choices=("fashion32", "photo32"), help="embedded model (default fashion32)")
    p.add_argument("--n", type=int_in(1, 100, "a number of test images"), default=4,
                   help="number of test images, 1-100 (default 4)")
    add_chain_options(p)
    p.add_argument("--out", default="deqir_demo.png", help="figure path (default deqir_demo.png)")
    add_debug(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import torch

    from ..models import sampling_defaults
    from ..sampling import default_passes
    from .demo import default_model, format_table, run_demo, save_figure

    from ..core.files import check_writable

    check_writable(args.out, "figure")  # before any work
    torch.manual_seed(args.seed)
    model, images, desc = default_model(args.model)
    images = images[: args.n]
    print(f"model: {desc}; {images.shape[0]} test images of shape {tuple(images.shape[1:])}")
    eta = sampling_defaults(model)[0] if args.eta is None else args.eta
    iters = default_passes(args.solver, args.steps) if args.iters is None else args.iters
    print(f"chain: T = {args.steps}, eta = {eta:g}" + (" (the model's default; --eta to change)" if args.eta is None else "")
          + f"; DeqIR: solver {args.solver}, at most {iters} passes")
    rows, shown = run_demo(model, images, steps=args.steps, iters=iters, eta=eta, seed=args.seed,
                           solver=args.solver)
    print(format_table(rows, args.steps, iters, args.solver))
    print(f"figure: {save_figure(shown, args.out, n=min(4, images.shape[0]))}")
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
    p.add_argument("--force", action="store_true",
                   help="delete the cached file and its recorded sha256 first, then download again (the reset)")
    add_debug(p)
    p.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    if args.name == "lpips-alex":
        from ..metrics.lpips import download_backbone

        path = download_backbone()
    else:
        from ..models import fetch

        path = fetch(args.name, progress=not args.no_progress, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diffusion prior from a JSON config (fashion32, photo32, tiny or a file)")
    p.add_argument("config", help="config name (fashion32, photo32, tiny) or path to a JSON config")
    p.add_argument("--out", default=None, help="output folder (default: runs/NAME)")
    p.add_argument("--steps", type=POSITIVE, default=None, help="total steps (overrides the config)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a folder that holds a run (replaces it)")
    p.add_argument("--until", default=None, metavar="HH:MM",
                   help="stop cleanly at this local time today and write the weights of the step reached")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="do not train: write the EMA weights of OUT/checkpoint.pt (step reached) into DIR")
    add_debug(p)
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
        except ValueError:
            raise ValueError(f"--until must be a time HH:MM like 12:20, got {args.until!r}") from None
    summary = train(args.config, out, steps=args.steps, resume=args.resume, progress=not args.no_progress,
                    deadline=deadline, overwrite=args.overwrite)
    print(describe(summary))
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="tasks x methods on a frozen test set; writes OUT/results.json and OUT/results.md")
    p.add_argument("--model", default="fashion32", help="zoo name, checkpoint path, or gmm-fashion32 (exact prior)")
    p.add_argument("--n", "--num-images", dest="n", type=POSITIVE, default=16,
                   help="number of test images (default 16; under torchrun write --num-images)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--out", default=None, help="output folder (default results/eval-MODEL)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in OUT")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all of the grid for the model)")
    p.add_argument("--methods", default=None, help="comma-separated, e.g. pinv,ddnm,ddnm-t100,deqir-k15,deqir-picard,deqir-taa-k8 "
                   "(deqir-SOLVER-kK: any registered solver)")
    p.add_argument("--steps", type=STEPS, default=20, help="T of ddnm / deqir-kK (default 20)")
    p.add_argument("--eta", type=eta, default=None,
                   help="eta of every chain (default: the model's, 0.85 for the embedded models, else the paper's 0.15)")
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--images", default=None, help="folder of PNG/JPEG test images instead of the frozen test set")
    p.add_argument("--clip", action="store_true", help="clip the clean estimate to [-1, 1]")
    p.add_argument("--bf16", action="store_true", help="run the network under bf16 autocast (about 2x on CPU)")
    add_debug(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..experiments import DEFAULT_METHODS, evaluate, load_for_eval, write_results

    from ..experiments import parse_method
    from ..operators import TASKS

    split = lambda s: [v.strip() for v in s.split(",") if v.strip()] if s else None  # noqa: E731
    out = Path(args.out or f"results/eval-{Path(args.model).stem}")
    if (out / "results.json").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds results (results.json); add --overwrite to replace them "
                         "or choose another --out")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    for task in split(args.tasks) or []:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r} in --tasks; choose from {', '.join(TASKS)}")
    for m in split(args.methods) or []:
        parse_method(m, args.steps)
    from ..core.checks import check_device

    check_device(args.device, "--device")  # e.g. cuda on a CPU build: one line, before any work
    rank = _join_torchrun(args)  # under torchrun the images are spread over the ranks (evaluate)
    model, images, source = load_for_eval(args.model, args.n, args.images, args.device, args.bf16)
    print(f"model {args.model}: {images.shape[0]} images of shape {tuple(images.shape[1:])} ({source})")
    if args.eta is None:  # the model's default, recorded in the results as the eta used
        from ..models import sampling_defaults

        args.eta = sampling_defaults(model)[0]
        print(f"eta = {args.eta:g} (the model's default; --eta to change)")
    rows = evaluate(model, images, tasks=split(args.tasks), methods=split(args.methods) or DEFAULT_METHODS,
                    steps=args.steps, eta=args.eta, seed=args.seed, device=args.device,
                    batch_size=args.batch_size, clip=args.clip)
    if rank is not None:
        import torch.distributed as dist

        dist.destroy_process_group()
        if rank > 0:  # rank 0 writes the results of all ranks
            return 0
    js, md = write_results(rows, out, _meta_for(args, source))
    print(md.read_text())
    print(f"wrote {js} and {md}")
    return 0


def _join_torchrun(args: Any) -> int | None:
    """Under ``torchrun`` (RANK, WORLD_SIZE set): join the group on this rank's device; return the rank."""
    import os

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    import torch

    from .launch import init_process

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:  # one GPU per process: cuda:LOCAL_RANK
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        args.device = str(device)
    init_process(rank, world, "env://", device)
    return rank


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
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the subcommand's parser: "deqir-edu restore: error: unrecognized arguments: ..."
            getattr(parser, "commands", {}).get(args.command, parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as done:  # --help, --version, or a bad argument (one line already printed, code 2)
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    prog = f"deqir-edu {args.command}"
    import warnings

    from ..solvers.trace import ConvergenceWarning

    try:
        with warnings.catch_warnings():  # the commands say it in their own words (restore: once, per tile count)
            warnings.simplefilter("ignore", ConvergenceWarning)
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as err:  # one line, never a traceback (unless --debug)
        if getattr(args, "debug", False):
            raise
        from ..core.download import DownloadError

        text = " ".join(str(err).split()) or type(err).__name__
        if isinstance(err, (*_USER_ERRORS, DownloadError)):
            print(f"{prog}: error: {text}", file=sys.stderr)
            return 2
        if isinstance(err, RuntimeError) and ("NaN" in text or "CUDA" in text or "out of memory" in text):
            print(f"{prog}: error: {text}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error ({type(err).__name__}: {text[:300]}); this is a bug: rerun with --debug "
              "and report the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
