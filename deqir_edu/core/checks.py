"""Input validation shared by the package: clear errors that name the problem and the fix.

``NotFiniteError`` is the error of a computation that produced NaN or infinite values (a diverged
training, a broken checkpoint): not a bug of the package, so the command line says it in one line.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["NotFiniteError", "is_integer", "check_image", "check_finite", "check_device"]


class NotFiniteError(RuntimeError):
    """A network, a solver or a training produced NaN or infinite values; the message says which and the fix."""


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a whole number: a Python or NumPy integer (``np.int64(4)``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _available(dev: torch.device) -> tuple[bool, str]:
    """Whether ``dev`` can run here, and what is here (for the message)."""
    if dev.type == "cpu":
        return True, ""
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return (dev.index or 0) < n, f"{n} CUDA device{'s' * (n != 1)}"
    if dev.type == "meta":
        return False, "meta tensors hold no data"
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
    ok = bool(getattr(backend, "is_available", lambda: False)())
    return ok, f"this PyTorch has no usable {dev.type} device"


def check_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists here; ``ValueError`` for a bad name or a missing device
    (a GPU that is not there, ``mps`` off a Mac, ``meta``)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"unknown {what} {device!r} ({err}); use cpu, cuda or cuda:0") from None
    ok, here = _available(dev)
    if not ok:
        raise ValueError(f"{what} {device} is not available here ({here}); use cpu")
    return dev


def check_finite(x: torch.Tensor, name: str = "input") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values."""
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; clean or mask them before restoring")


def check_image(
    x: torch.Tensor,
    shape: Sequence[int] | None = None,
    name: str = "image",
    finite: bool = True,
) -> None:
    """Check that ``x`` is a batch ``(B, C, H, W)`` and, if given, that ``(C, H, W) == shape``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}; "
            "add a batch dimension with x[None] for a single image"
        )
    if shape is not None:
        c, h, w = (int(s) for s in shape)
        if x.shape[1] != c:
            raise ValueError(
                f"{name} has {x.shape[1]} channels but {c} are expected (shape {tuple(x.shape)}); "
                "convert grey <-> RGB or pick a model/operator made for this channel count"
            )
        if tuple(x.shape[2:]) != (h, w):
            raise ValueError(
                f"{name} has spatial size {tuple(x.shape[2:])} but {(h, w)} is expected; "
                "resize/crop the image or build the operator for this size"
            )
    if finite:
        check_finite(x, name)
