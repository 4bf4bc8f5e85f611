"""``deqir-edu restore FOLDER --out DIR``: every image of a folder, spread over processes.

Notation (code name -> meaning; no paper symbols)

    jobs            (input, output) pairs: ``FOLDER/name.ext`` -> ``DIR/name.png``, sorted by name
    rank, world     this process and the number of processes; rank r restores jobs r, r + P, r + 2P, ...

Which split to use when:

* many images: spread the images (this module): ``torchrun --nproc_per_node P -m deqir_edu.apps.cli restore
  FOLDER --out DIR --devices cuda:0,...`` (several nodes too: ``torchrun --nnodes N ...``), or
  ``--devices cuda:0,cuda:1`` without torchrun (one process per device is started).  The processes never wait
  for each other, every image is restored as ``restore FILE`` would restore it (same seed, same noises).
* one image, lowest latency: split each network pass over the devices (``models.ShardedModel``,
  ``restore FILE --devices cuda:0,cuda:1``); the passes then wait for the slowest device.

Outputs that already exist are refused before any work unless ``--overwrite``; an output is never an input.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import check_writable, same_file
from .launch import parse_devices, spawn

__all__ = ["IMAGE_SUFFIXES", "folder_jobs", "run_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def folder_jobs(folder: str | Path, out: str | Path, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every image of ``folder``; checked before any work (one ``ValueError``)."""
    src, dst = Path(folder).expanduser(), Path(out).expanduser()
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"--out {out} is a file; with a folder as input, --out must be a folder")
    if dst.exists() and same_file(src, dst):
        raise ValueError(f"--out {out} is the input folder; choose another folder (inputs are never overwritten)")
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    jobs = [(p, dst / f"{p.stem}.png") for p in files]
    stems = [p.stem for p in files]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise ValueError(f"{folder} holds several images named {twins[0]}.*; their outputs would collide: rename them")
    taken = [o for _, o in jobs if o.exists()]
    if taken and not overwrite:
        raise ValueError(
            f"{len(taken)} output(s) exist already in {out} (e.g. {taken[0].name}); add --overwrite "
            "to replace them or choose another --out"
        )
    dst.mkdir(parents=True, exist_ok=True)
    check_writable(jobs[0][1], "--out")
    return jobs


def _one(args: dict[str, Any], src: Path, dst: Path, device: str | None, run_one: Callable) -> int:
    ns = argparse.Namespace(**{**args, "input": str(src), "out": str(dst), "devices": device, "one_device": True})
    return run_one(ns)


def _folder_rank(rank: int, world: int, device: Any, args: dict[str, Any], jobs: list, run_one: Callable) -> None:
    for src, dst in jobs[rank::world]:
        print(f"[rank {rank}/{world}] {src.name}")
        _one(args, src, dst, None if device is None else str(device), run_one)


def run_folder(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int]) -> int:
    """Restore every image of ``args.input`` into ``args.out`` with ``run_one`` (the one-file command)."""
    jobs = folder_jobs(args.input, args.out, getattr(args, "overwrite", False))
    devices = parse_devices(args.devices) if args.devices else None
    fields = {k: v for k, v in vars(args).items() if k != "func"}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun: this process is one of P
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        _folder_rank(rank, world, devices[local % len(devices)] if devices else None, fields, jobs, run_one)
        return 0
    if devices and len(devices) > 1:  # one process per device, each with its share of the images
        spawn(_folder_rank, devices, fields, jobs, run_one)
        print(f"restored {len(jobs)} images into {args.out} on {len(devices)} devices")
        return 0
    for src, dst in jobs:
        _one(fields, src, dst, str(devices[0]) if devices else None, run_one)
    print(f"restored {len(jobs)} images into {args.out}")
    return 0
