"""Command-line interface ``deqir-edu``.

Each subcommand is a small function here that parses its arguments and calls the package; the real
work lives in the modules (samplers, zoo, training, ...).  ``deqir-edu --help`` lists the commands.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    _add_models(sub)
    _add_download(sub)
    _add_train(sub)
    return parser


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model zoo and what is downloaded / present")
    p.set_defaults(func=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from deqir_edu.download import cache_dir
    from deqir_edu.zoo import list_models

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
        from deqir_edu.lpips import download_backbone

        path = download_backbone()
    else:
        from deqir_edu.zoo import fetch

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
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from deqir_edu.training import _describe, load_config, train

    out = args.out or f"runs/{load_config(args.config)['name']}"
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
    print(_describe(summary))
    return 0


def _version() -> str:
    from deqir_edu import __version__

    return __version__


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
