"""Command-line interface ``deqir-edu``.

Each subcommand is a small function here (``restore`` in ``restore_cmd.py``, ``eval`` in ``eval_cmd.py``)
that parses its arguments and calls the package; the real
work lives in the layers below (sampling, models, experiments, training, ...).  ``deqir-edu --help``
lists the commands.  Notation: none (no paper symbols; the options name them: T = --steps, K = --iters).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ..core.download import cache_dir
from ..core.files import check_writable
from ..core.signals import sigterm_as_interrupt
from ..core.version import package_version
from ..metrics.lpips import download_backbone
from ..models import fetch, list_models, sampling_defaults
from ..sampling import default_passes
from ..solvers.trace import ConvergenceWarning
from ..training import describe, export_checkpoint, load_config, train
from .cliargs import POSITIVE, Parser, add_chain_options, add_debug, int_in, solver_of
from .demo import default_model, format_table, run_demo, save_figure
from .errors import user_error_text
from .eval_cmd import add_eval
from .restore_cmd import add_restore

__all__ = ["main", "build_parser"]

# Errors of the user (bad files, options, data, a full disk, ...: errors.user_error_text): one line, exit
# code 2.  Anything else is a bug: one line that says so, exit code 1; ``--debug`` shows the traceback of either.
_FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff", ".webp")


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
    add_eval(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined]
    return parser


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="restore frozen test images with A^+y, DDNM and DeqIR; print a PSNR table")
    p.add_argument(
        "--model", default="fashion32", choices=("fashion32", "photo32"), help="embedded model (default fashion32)"
    )
    p.add_argument(
        "--n",
        type=int_in(1, 100, "a number of test images"),
        default=4,
        help="number of test images, 1-100 (default 4)",
    )
    add_chain_options(p)
    p.add_argument("--out", default="deqir_demo.png", help="figure path (default deqir_demo.png)")
    add_debug(p)
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    suffix = Path(args.out).suffix.lower()
    if suffix not in _FIGURE_SUFFIXES:  # before any work
        raise ValueError(
            f"--out {args.out}: a figure cannot be written as {suffix or 'a file without an extension'}; end the "
            f"name in one of {', '.join(_FIGURE_SUFFIXES)}, e.g. --out {Path(args.out).with_suffix('.png')}"
        )
    check_writable(args.out, "--out")
    args.solver = solver_of(args)
    torch.manual_seed(args.seed)
    model, images, desc = default_model(args.model)
    images = images[: args.n]
    print(f"model: {desc}; {images.shape[0]} test images of shape {tuple(images.shape[1:])}")
    eta = sampling_defaults(model)[0] if args.eta is None else args.eta
    iters = default_passes(args.solver, args.steps) if args.iters is None else args.iters
    print(
        f"chain: T = {args.steps}, eta = {eta:g}"
        + (" (the model's default; --eta to change)" if args.eta is None else "")
        + f"; DeqIR: solver {args.solver}, at most {iters} passes"
    )
    rows, shown = run_demo(model, images, steps=args.steps, iters=iters, eta=eta, seed=args.seed, solver=args.solver)
    print(format_table(rows, args.steps, iters, args.solver))
    print(f"figure: {save_figure(shown, args.out, n=min(4, images.shape[0]))}")
    return 0


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo and what is downloaded / present")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    rows = list_models()
    header = ("name", "arch", "status", "size", "description")
    table = [header] + [
        (
            r["name"],
            r["architecture"],
            r["status"],
            "-" if r["size"] is None else f"{r['size'] / 2**20:.1f} MiB" if r["size"] else "0 bytes",
            r["description"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    for r in rows:
        if r.get("problem"):  # damaged or incomplete weights: what is wrong and the fix
            print(f"{r['name']}: {r['problem']}")
    print(f"\ncache: {cache_dir()} (set DEQIR_EDU_CACHE to change); fetch one with `deqir-edu download NAME`")
    return 0


def _add_download(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download a zoo model (see `deqir-edu models`) or lpips-alex into the cache")
    p.add_argument("name", help="zoo model name, e.g. ddpm-celebahq256, or lpips-alex (LPIPS backbone)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--force",
        action="store_true",
        help="download again although the file is cached, ignoring its recorded sha256 (the reset); the cached "
        "file is replaced only once the new download is complete and checked (offline or on Ctrl-C it stays)",
    )
    add_debug(p)
    p.set_defaults(func=_run_download)


def _run_download(args: argparse.Namespace) -> int:
    if args.name == "lpips-alex":
        if args.force:
            raise ValueError(
                "--force is for zoo models; lpips-alex is checked by its sha256 whenever it is read (a damaged copy "
                "is deleted and downloaded again): drop --force"
            )
        path = download_backbone()
    else:
        path = fetch(args.name, progress=not args.no_progress, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a diffusion prior from a JSON config (fashion32, photo32, tiny or a file)")
    p.add_argument("config", help="config name (fashion32, photo32, tiny) or path to a JSON config")
    p.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/NAME); locked while training: a second run into it is refused",
    )
    p.add_argument("--steps", type=POSITIVE, default=None, help="total steps (overrides the config)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/checkpoint.pt (also after Ctrl-C or SIGTERM, which say the step kept)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in a folder that holds a run; its files are replaced as the new run writes its own "
        "(the earlier final weights stay until the new run finishes)",
    )
    p.add_argument(
        "--until",
        default=None,
        metavar="HH:MM",
        help="stop cleanly at this local time today and write the weights of the step reached",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="do not train: write the EMA weights of OUT/checkpoint.pt (step reached) into DIR",
    )
    add_debug(p)
    p.set_defaults(func=_run_train)


def _check_train_options(args: argparse.Namespace) -> None:
    """Options that contradict each other, or that --export would ignore: one line, before any work."""
    if args.resume and args.overwrite:
        raise ValueError(
            "--resume continues the run in OUT, --overwrite replaces it: give only one (--resume to go on, "
            "--overwrite to start afresh)"
        )
    ignored = [f"--{k}" for k in ("steps", "resume", "overwrite", "until") if getattr(args, k)]
    if args.export and ignored:
        raise ValueError(
            f"--export only writes the weights of OUT/checkpoint.pt and trains nothing: drop {', '.join(ignored)} "
            "(or run the training first, then --export)"
        )


def _run_train(args: argparse.Namespace) -> int:
    _check_train_options(args)
    out = args.out or f"runs/{load_config(args.config)['name']}"
    if args.export:
        print(f"wrote {export_checkpoint(f'{out}/checkpoint.pt', args.export)}")
        return 0
    deadline = None
    if args.until:
        try:
            hh, mm = (int(v) for v in args.until.split(":"))
            deadline = dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        except ValueError:
            raise ValueError(f"--until must be a time HH:MM like 12:20, got {args.until!r}") from None
    summary = train(
        args.config,
        out,
        steps=args.steps,
        resume=args.resume,
        progress=not args.no_progress,
        deadline=deadline,
        overwrite=args.overwrite,
    )
    print(describe(summary))
    return 0


def _version() -> str:
    return package_version()


def _interrupted(prog: str, err: KeyboardInterrupt) -> int:
    """Say what an interrupt (Ctrl-C, or SIGTERM) left, as the command reported it; exit code 128 + signal."""
    signum = int(getattr(err, "signum", signal.SIGINT))
    how = "terminated (SIGTERM)" if signum == getattr(signal, "SIGTERM", None) else "interrupted"
    print(f"{prog}: {how}; {getattr(err, 'what', '') or 'nothing was written'}", file=sys.stderr)
    return 128 + signum


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # said by the subcommand's parser: "deqir-edu restore: error: unrecognized arguments: ..."
            getattr(parser, "commands", {}).get(args.command, parser).error(
                f"unrecognized arguments: {' '.join(extra)}"
            )
    except SystemExit as done:  # --help, --version, or a bad argument (one line already printed, code 2)
        return int(done.code or 0) if not isinstance(done.code, str) else 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    prog = f"deqir-edu {args.command}"
    try:
        # SIGTERM takes Ctrl-C's way out: the finally blocks remove temporary files and release locks
        with warnings.catch_warnings(), sigterm_as_interrupt():  # warnings: said by the commands (restore: once)
            warnings.simplefilter("ignore", ConvergenceWarning)
            return int(args.func(args) or 0)
    except KeyboardInterrupt as err:
        if getattr(args, "debug", False):
            raise
        return _interrupted(prog, err)
    except Exception as err:  # one line, never a traceback (unless --debug)
        if getattr(args, "debug", False):
            raise
        line = user_error_text(err)  # a full disk, a bad file, a NaN network, ...: the user's to fix
        if line is not None:
            print(f"{prog}: error: {line}", file=sys.stderr)
            return 2
        text = " ".join(str(err).split()) or type(err).__name__
        print(
            f"{prog}: internal error ({type(err).__name__}: {text[:300]}); this is a bug: rerun with --debug "
            "and report the traceback",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
