"""The command line's argument types and shared options: one-line errors for bad values.

Notation: none (no paper symbols; T = --steps, K = --iters, eta = --eta).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from ..core.checks import check_device
from ..models.budget import parse_size
from ..operators import TASKS
from ..solvers import solver_names

__all__ = [
    "Parser",
    "int_in",
    "eta",
    "task",
    "memory",
    "devices",
    "solver_of",
    "POSITIVE",
    "SEED",
    "STEPS",
    "add_solver",
    "add_debug",
    "add_devices",
    "add_chain_options",
]


# a value that starts with "-" but is no option: -1GB, -1e-3, -.5, -inf (argparse would say "expected one argument")
_NEGATIVE_VALUE = re.compile(r"-(\d|\.\d|inf|nan)", re.IGNORECASE)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``deqir-edu restore: error: ... (see deqir-edu restore --help)``.

    A value such as ``-1GB`` or ``-1e-3`` is read as the option's value, so its type says what is wrong
    with it (argparse alone takes it for an unknown option and says "expected one argument")."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = " ".join(message.split())  # a value with a newline in it stays one line
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def _parse_optional(self, arg_string: str) -> Any:  # argparse's hook: None means "a value"
        if _NEGATIVE_VALUE.match(arg_string) and arg_string not in self._option_string_actions:
            return None  # a positional string: the value of the option before it
        return super()._parse_optional(arg_string)


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


def devices(text: str) -> str:
    """``--devices``: a comma-separated list of devices that exist here, of one type, no GPU twice."""
    names = [s.strip() for s in text.split(",")]
    if not text.strip() or not all(names):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of devices: give a comma-separated list such as cuda:0,cuda:1 (or cpu,cpu), "
            "or leave --devices out to run here on one device"
        )
    try:
        found = [check_device(name, "device") for name in names]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if len({d.type for d in found}) > 1:
        raise argparse.ArgumentTypeError(f"{text!r} mixes device types; use only cuda:i or only cpu")
    gpus = [str(d) for d in found if d.type != "cpu"]
    if len(set(gpus)) < len(gpus):
        raise argparse.ArgumentTypeError(f"{text!r} names a device twice; give each GPU once (cpu,cpu is allowed)")
    return ",".join(names)


def solver_of(args: argparse.Namespace) -> str:
    """The parallel solver of ``args`` (``--solver``, default ``auto``)."""
    return getattr(args, "solver", None) or "auto"


POSITIVE = int_in(1, what="a positive whole number")
SEED = int_in(0, 2**63 - 1, what="a seed")
STEPS = int_in(1, 1000, what="a number of steps T")


def add_solver(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--solver",
        default=None,  # None: not given (restore: --sampler auto may then pick ddnm); used as "auto"
        choices=solver_names(),
        metavar="NAME",
        help=f"parallel solver (default auto: stops by itself within 0.05 dB of the chain in the "
        f"benchmarks; anderson: the paper's Algorithm 1): one of {', '.join(solver_names())}",
    )


def add_devices(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--devices",
        type=devices,
        default=None,
        metavar="D0,D1,...",
        help="split each network pass across devices, e.g. cuda:0,cuda:1 (torch.distributed; also under torchrun)",
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
