"""Input validation shared by the package: clear errors that name the problem and the fix."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_image", "check_finite", "check_device"]


def check_device(device: str | torch.device, what: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` that exists here; ``ValueError`` for a bad name or a missing GPU."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown {what} {device!r}: {err}") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"{what} {device} is not available here ({torch.cuda.device_count()} CUDA devices); use cpu")
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
