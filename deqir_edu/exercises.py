"""Self-checks for the coding exercises of the book ("stub + self-check").

Each ``check_*`` function runs the student's function on seeded random inputs, compares it with the
package's own implementation and prints a short verdict: what differs, the largest error, and a
hint that points at the usual mistake.  It returns ``True`` or ``False`` and never raises, so a
notebook with an unfinished stub (``raise NotImplementedError``) still runs from top to bottom.

Notation (exercise argument -> paper symbol)

    op            A, A^dagger        an operator with ``op.A(x)`` and ``op.A_pinv(y)``
    x0, y         x_{0|t}, y         a clean-image estimate and the measurement
    x_t, eps      x_t, eps_theta     a state of the chain and the predicted noise
    abar_t, abar_prev                alpha-bar of the current and of the next (less noisy) state
    eta           eta                stochasticity of DDIM/DDNM, 0 <= eta < 1
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["check_null_space_projection"]

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


# ---------------------------------------------------------------------------------------------
# Chapter 1 and 3: Eq. (5), the null-space projection
# ---------------------------------------------------------------------------------------------
def check_null_space_projection(fn: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(op, x0, y) -> x0_hat = A^+ y + (I - A^+ A) x0`` (Eq. (5)) on four tasks."""
    from .operators import make_operator, null_space_project

    name = "null-space projection, Eq. (5)"
    tasks = ("sr4", "inpaint-box", "colorize", "deblur-gauss")
    for i, task in enumerate(tasks):
        g = _gen(i)
        op = make_operator(task, (3, 16, 16))
        x, x0 = (torch.rand(2, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(2))
        y = op.A(x)
        ok, got = _call(name, fn, op, x0, y)
        if not ok:
            return False
        want = null_space_project(op, x0, y)
        hints = [
            (isinstance(got, torch.Tensor) and _close(got, x0 - op.A_pinv(op.A(x0))),
             "the range part A^+ y is missing: add op.A_pinv(y)."),
            (isinstance(got, torch.Tensor) and _close(got, op.A_pinv(y) + op.A_pinv(op.A(x0))),
             "you kept the range part of x0 (A^+ A x0); the null-space part is x0 - A^+ A x0."),
            (isinstance(got, torch.Tensor) and got.shape == x0.shape and not _close(op.A(got), y),
             "A(x0_hat) should equal y exactly; check the sign of A^+ A x0."),
            (True, "Eq. (5) reads A^+ y + (I - A^+ A) x0: write each term with op.A and op.A_pinv."),
        ]
        if not _compare(name, got, want, f"task {task}", hints):
            return False
    return _passed(name, f"tasks {', '.join(tasks)}; A(x0_hat) = y holds")
