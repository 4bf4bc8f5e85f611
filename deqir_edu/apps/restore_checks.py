"""The checks of ``deqir-edu restore`` that come before any work: no option is silently ignored, and a folder
run reads every input before it restores the first one.

Notation: none (no paper symbols; T = --steps, K = --iters).

    options     --solver and --iters belong to the parallel sampler: with ``--sampler auto`` they select
                ``deqir`` (a note says so), with ``--sampler ddnm`` they are an error; --mask only for the
                masked tasks and never the input itself
    memory      --memory at most the memory of the machine (or of each device of --devices)
    folder      --out is a folder (not ``x.png``); the mask is not one of the images; every image is
                readable and large enough (one error for all of them, before the first restoration)
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import same_file
from ..models.budget import check_budget
from .restore_folder import IMAGE_SUFFIXES

__all__ = ["check_options", "check_memory", "check_folder", "masked_task"]


def masked_task(task: str) -> bool:
    """Whether ``task`` takes a mask (inpainting and old-photo)."""
    return task.startswith("inpaint-") or task == "old-photo"


def check_options(args: argparse.Namespace) -> None:
    """Options that contradict each other or are not used: one ``ValueError``; ``--sampler auto`` with
    ``--solver``/``--iters`` becomes ``deqir`` (said once; ``args.sampler`` is changed)."""
    given = [f"--{k} {getattr(args, k)}" for k in ("solver", "iters") if getattr(args, k, None) is not None]
    if given and args.sampler == "ddnm":
        raise ValueError(
            f"{' and '.join(given)}: the sequential sampler ddnm has no solver and no passes; drop "
            f"{'them' if len(given) > 1 else 'it'} or use --sampler deqir (or auto)"
        )
    if given and args.sampler == "auto":
        args.sampler = "deqir"
        print(f"note: {' and '.join(given)} given: sampler deqir (the parallel sampler they set; auto could pick ddnm)")
    if args.mask is not None and not masked_task(args.task):
        raise ValueError(f"--mask is for the inpainting tasks and old-photo, not {args.task}")
    if args.mask is not None and Path(args.mask).expanduser().exists() and same_file(args.mask, args.input):
        raise ValueError(f"--mask {args.mask} is the input image; give the mask as its own black-and-white image")


def check_memory(memory: int | None, devices: list[Any] | None) -> None:
    """``--memory`` fits the machine (or each device of ``--devices``)."""
    if memory is None:
        return
    for device in devices or ["cpu"]:
        check_budget(memory, device, "--memory")


def check_folder(args: argparse.Namespace, read: Callable[[argparse.Namespace], Any]) -> None:
    """A folder of inputs: ``--out`` names a folder, the mask lies outside the folder, and ``read`` (the
    one-file reader, which raises ``ValueError``) accepts every image; else one ``ValueError`` before any work."""
    src, out = Path(args.input).expanduser(), Path(args.out).expanduser()
    if out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        raise ValueError(
            f"--out {args.out} names an image file, but the input {args.input} is a folder: give a folder for "
            f"the results, e.g. --out {out.with_suffix('')}"
        )
    if args.mask is not None and Path(args.mask).expanduser().resolve().parent == src.resolve():
        raise ValueError(
            f"--mask {args.mask} is inside the input folder {args.input}, so it would be restored as a photo; "
            "move the mask out of the folder"
        )
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    bad = []
    for path in files:
        try:
            read(argparse.Namespace(**{**vars(args), "input": str(path)}))
        except (ValueError, FileNotFoundError, PermissionError) as err:
            text = " ".join(str(err).split())
            bad.append(text if str(path) in text else f"{path}: {text}")
    if bad:
        raise ValueError(
            f"{len(bad)} of the {len(files)} images in {args.input} cannot be restored, so none is: {bad[0]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
