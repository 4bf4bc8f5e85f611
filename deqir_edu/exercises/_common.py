"""Shared pieces of the exercise self-checks: run the student's function, compare, print a verdict."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

_TOL = 1e-10  # float64 everywhere: a correct answer agrees to round-off


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


def _compare(name: str, got: Any, want: torch.Tensor, case: str, hints: Sequence[tuple[bool, str]] = ()) -> bool:
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
        for applies, hint in hints:
            if applies:
                print(f"    hint: {hint}")
                break
        return False
    return True


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and float((a - b).abs().max()) <= 1e-8


def _passed(name: str, detail: str) -> bool:
    print(f"[ok] {name}: correct ({detail}).")
    return True
