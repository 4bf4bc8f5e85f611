"""The command line's argument types and shared options: one-line errors for bad values.

Notation: none (no paper symbols; T = --steps, K = --iters, eta = --eta).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..models.budget import parse_size
from ..operators import TASKS
from ..solvers import solver_names

__all__ = [
    "Parser",
    "int_in",
    "eta",
    "task",
    "memory",
    "POSITIVE",
    "SEED",
    "STEPS",
    "add_solver",
    "add_debug",
    "add_chain_options",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``deqir-edu restore: error: ... (see deqir-edu restore --help)``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def int_in(lo: int, hi: int | None = None, what: str = "a whole number") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {what} {bound}")
        return value

    return parse


def eta(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text} is out of range: eta must satisfy 0 <= eta < 1 (Proposition 1)")
    return value


def task(text: str) -> str:
    if text not in TASKS:
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; choose one of {', '.join(TASKS)}")
    return text


def memory(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


POSITIVE = int_in(1, what="a positive whole number")
SEED = int_in(0, 2**63 - 1, what="a seed")
STEPS = int_in(1, 1000, what="a number of steps T")


def add_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--solver",
        default="auto",
        choices=solver_names(),
        metavar="NAME",
        help=f"parallel solver (default auto: stops by itself within 0.05 dB of the chain in the "
        f"benchmarks; anderson: the paper's Algorithm 1): one of {', '.join(solver_names())}",
    )


def add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
    )


def add_chain_options(p: argparse.ArgumentParser) -> None:
    """The options of the chain and its solve, shared by demo and restore: T, K, the solver, eta, the seed."""
    p.add_argument("--steps", type=STEPS, default=20, help="sampling steps T, 1-1000 (default 20)")
    p.add_argument(
        "--iters",
        type=POSITIVE,
        default=None,
        help="at most K solver passes of deqir (default T, exact; 15 for anderson as the paper)",
    )
    add_solver(p)
    p.add_argument(
        "--eta",
        type=eta,
        default=None,
        help="eta (default: the model's, 0.85 for the embedded models, 0.15 as the paper otherwise)",
    )
    p.add_argument("--seed", type=SEED, default=0, help="seed of the noises (default 0)")
