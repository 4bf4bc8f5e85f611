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
    return parser


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
