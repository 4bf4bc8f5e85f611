"""Shared pieces of the exercise self-checks: run the student's function, compare, print a verdict.

Hints are ``(applies, text)`` pairs, tried in order; ``applies`` is a bool or a zero-argument callable
(evaluated only when the answer is wrong, so an expensive wrong formula costs nothing for a right
answer).  A *named* hint applies when the student's output equals, to round-off, what one known wrong
formula gives on the same test case (``_matches``, ``_named``); the wrong formulas live in
``_mistakes.py``.  The last hint of a list is the generic one, ``(True, ...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

_TOL = 1e-10  # float64 everywhere: a correct answer agrees to round-off
_MATCH_TOL = 1e-8  # a wrong formula "matches" to this relative accuracy (other operation orders allowed)

Hint = tuple[bool | Callable[[], bool], str]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _call(name: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
    """Run the student's function; report (not raise) NotImplementedError and other errors."""
    try:
        return True, fn(*args)
    except NotImplementedError:
        print(f"[ ] {name}: not implemented yet. Replace `raise NotImplementedError` by your code.")
    except Exception as err:  # noqa: BLE001 - any error of student code is reported, not raised
        print(f"[x] {name}: your function raised {type(err).__name__}: {err}")
    return False, None


def _matches(got: Any, wrong: torch.Tensor) -> bool:
    """True if ``got`` is a tensor equal to ``wrong`` (one wrong formula's output) up to round-off."""
    if not (isinstance(got, torch.Tensor) and got.shape == wrong.shape):
        return False
    return float((got.to(wrong) - wrong).abs().max()) <= _MATCH_TOL * max(1.0, float(wrong.abs().max()))


def _named(got: Any, mistakes: Sequence[tuple[torch.Tensor, str]]) -> list[Hint]:
    """Hints for a list of ``(output of a wrong formula, text naming that mistake)``, in that order."""
    return [(functools.partial(_matches, got, wrong), text) for wrong, text in mistakes]


def _print_hint(hints: Sequence[Hint]) -> None:
    """Print the first hint that applies (conditions that are callables are evaluated lazily)."""
    for applies, hint in hints:
        if applies() if callable(applies) else applies:
            print(f"    hint: {hint}")
            return


def _compare(name: str, got: Any, want: torch.Tensor, case: str, hints: Sequence[Hint] = ()) -> bool:
    """Compare shapes and values; on failure print the max error and the first hint that applies."""
    if not isinstance(got, torch.Tensor):
        print(f"[x] {name} ({case}): expected a torch.Tensor, got {type(got).__name__}")
        return False
    if got.shape != want.shape:
        print(f"[x] {name} ({case}): expected shape {tuple(want.shape)}, got {tuple(got.shape)}")
        return False
    err = float((got.to(want) - want).abs().max())
    if not err <= _TOL * max(1.0, float(want.abs().max())):
        print(f"[x] {name} ({case}): max abs error {err:.3g} against the package's implementation.")
        _print_hint(hints)
        return False
    return True


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-8


def _passed(name: str, detail: str) -> bool:
    print(f"[ok] {name}: correct ({detail}).")
    return True
