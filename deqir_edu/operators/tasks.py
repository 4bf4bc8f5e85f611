"""Task names -> operators: ``make_operator("sr4", (C, H, W))`` builds A and A^+ for every task of the paper.

Notation: as ``base.py``.
"""

from __future__ import annotations

from typing import Any

from .base import ComposedOperator, Identity, Operator
from .masks import MASKS
from .pixel import AveragePoolSR, Colorization, Inpainting
from .svd import make_svd_operator

__all__ = ["TASKS", "make_operator", "sr_scale", "observation_shape"]


TASKS: tuple[str, ...] = (
    "identity",
    "sr2",
    "sr4",
    "sr8",
    "sr2-bicubic",
    "sr4-bicubic",
    "deblur-gauss",
    "deblur-aniso",
    "inpaint-box",
    "inpaint-random",
    "inpaint-stripes",
    "inpaint-text",
    "colorize",
    "old-photo",
)


def _image_shape(image_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _mask_operator(task: str, shape: tuple[int, int, int], options: dict[str, Any], name: str) -> Inpainting:
    mask = options.pop("mask", None)
    if mask is None:
        mask = MASKS[task](shape[1], shape[2], **options)
    elif options:
        raise ValueError(f"options {sorted(options)} are ignored when `mask=` is given; drop them")
    return Inpainting(shape, mask, name=name)


def make_operator(task: str, image_shape: tuple[int, int, int], **options: Any) -> Operator:
    """Build the operator for ``task`` (one of ``TASKS``) on images of shape ``(C, H, W)``.

        task                     A                                   A^dagger
        identity                 I                                   I
        sr2, sr4, sr8            s x s average pooling               replication (nearest upsampling)
        sr2-/sr4-bicubic         bicubic filter, subsample (SVD)     V S^+ U^T on each axis
        deblur-gauss/-aniso      separable Gaussian blur (SVD)       V S^+ U^T on each axis
        inpaint-box/random/...   multiply by the 0/1 mask            the same
        colorize                 mean over the channels              copy into every channel
        old-photo                mask, then channel mean             copy, then mask

    Options: inpainting tasks take ``mask=`` (an ``(H, W)`` 0/1 tensor) or the generator's options
    (``size`` for box, ``missing``/``seed`` for random, ``width``/``vertical`` for stripes,
    ``text``/``scale`` for text; see ``masks.py``).  ``"old-photo"`` (mask, then colour
    mean) takes ``mask=`` or ``inpaint=`` (a mask task name, default ``"inpaint-text"``) plus its
    options.  ``"deblur-gauss"`` takes ``sigma``, ``size``; ``"deblur-aniso"`` takes ``sigmas``,
    ``sizes``; the SVD tasks take ``zero`` (singular-value threshold, default 3e-2).
    """
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, one of: {', '.join(TASKS)}; got {task!r}")
    shape = _image_shape(image_shape)
    options = dict(options)
    try:
        if task == "identity" and not options:
            return Identity(shape)
        if task in ("sr2", "sr4", "sr8") and not options:
            return AveragePoolSR(shape, int(task[2:]))
        if task == "colorize" and not options:
            return Colorization(shape)
        if task.startswith("inpaint-") and task in TASKS:
            return _mask_operator(task, shape, options, name=task)
        if task == "old-photo":
            mask_task = options.pop("inpaint", "inpaint-text")
            if mask_task not in TASKS or not mask_task.startswith("inpaint-"):
                raise ValueError(
                    f"inpaint={mask_task!r} is not a mask task; use one of inpaint-box/random/stripes/text"
                )
            inner = _mask_operator(mask_task, shape, options, name=mask_task)
            return ComposedOperator(Colorization(shape), inner, name="old-photo")
        if task in ("sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso"):
            return make_svd_operator(task, shape, **options)
    except TypeError as err:  # an option the generator or constructor does not know
        raise ValueError(f"bad option for task {task!r}: {err}") from None
    if task in TASKS:
        raise ValueError(f"task {task!r} takes no options, got {sorted(options)}; remove them")
    raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")


def sr_scale(task: str) -> int:
    """Spatial factor between image and observation: 4 for ``"sr4"`` / ``"sr4-bicubic"``, else 1."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
    if task.startswith("sr"):
        return int(task[2:].split("-")[0])
    return 1


def observation_shape(task: str, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Shape ``(C_y, H_y, W_y)`` of ``y`` for ``task`` on images of ``image_shape``."""
    c, h, w = image_shape
    s = sr_scale(task)
    cy = 1 if task in ("colorize", "old-photo") else c
    return cy, h // s, w // s
