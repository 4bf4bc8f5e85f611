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
The output folder is locked while the command runs (``core.locks.output_lock``): a second restore into it is
refused.  Continuing an interrupted run: ``--resume`` (same command, same settings) keeps the outputs the
interrupted run finished and restores the others.  Each run records its settings and start in
``DIR/.deqir-edu-restore.json``; ``--resume`` refuses other settings (restart with ``--overwrite``) and
files the run did not write.  Ctrl-C says how many outputs are written and how to continue.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import check_writable, same_file, write_json
from ..core.locks import output_lock
from ..core.signals import interrupted
from .launch import parse_devices, spawn

__all__ = ["IMAGE_SUFFIXES", "RECORD", "add_folder_options", "folder_jobs", "finished_outputs", "run_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
RECORD = ".deqir-edu-restore.json"  # in DIR: the settings and start of the last run (what --resume continues)
# the options that change an output: --resume continues only a run that used the same
_SETTINGS = (
    "task",
    "model",
    "mask",
    "simulate",
    "sampler",
    "steps",
    "iters",
    "solver",
    "eta",
    "seed",
    "clip",
    "samples",
)
_SLACK_NS = 50_000_000  # file times may lag the clock by a tick


def add_folder_options(p: argparse.ArgumentParser) -> None:
    """The options of ``restore FOLDER --out DIR`` for outputs that exist: ``--overwrite`` and ``--resume``."""
    p.add_argument("--overwrite", action="store_true", help="a folder of inputs: replace outputs that exist")
    p.add_argument(
        "--resume",
        action="store_true",
        help="a folder of inputs: continue an interrupted run (same command and settings): keep the outputs "
        "it finished, restore the others",
    )


def _check_folders(folder: str | Path, out: str | Path) -> tuple[Path, Path]:
    """``(input folder, output folder)``: the output is not a file and not the input folder."""
    src, dst = Path(folder).expanduser(), Path(out).expanduser()
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"--out {out} is a file; with a folder as input, --out must be a folder")
    if dst.exists() and same_file(src, dst):
        raise ValueError(f"--out {out} is the input folder; choose another folder (inputs are never overwritten)")
    return src, dst


def folder_jobs(
    folder: str | Path, out: str | Path, overwrite: bool = False, resume: bool = False
) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every image of ``folder``; checked before any work (one ``ValueError``).

    Outputs that exist are refused unless ``overwrite`` (replace them) or ``resume`` (``run_folder`` keeps
    those an interrupted run of the same settings finished).
    """
    src, dst = _check_folders(folder, out)
    files = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    jobs = [(p, dst / f"{p.stem}.png") for p in files]
    stems = [p.stem for p in files]
    twins = sorted({s for s in stems if stems.count(s) > 1})
    if twins:
        raise ValueError(f"{folder} holds several images named {twins[0]}.*; their outputs would collide: rename them")
    taken = [o for _, o in jobs if o.exists()]
    if taken and not (overwrite or resume):
        raise ValueError(
            f"{len(taken)} output(s) exist already in {out} (e.g. {taken[0].name}); continue an interrupted run "
            "with --resume, add --overwrite to replace them, or choose another --out"
        )
    dst.mkdir(parents=True, exist_ok=True)
    check_writable(jobs[0][1], "--out")
    return jobs


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``args`` that change an output, and the input folder, as JSON values."""
    values = {k: getattr(args, k, None) for k in _SETTINGS}
    values["input"] = str(Path(args.input).expanduser().resolve())
    if values["mask"] is not None:
        values["mask"] = str(Path(values["mask"]).expanduser().resolve())
    return values


def _read_record(dst: Path) -> dict[str, Any] | None:
    """The record of the last run into ``dst`` (``RECORD``), or None if there is none (or it is unreadable)."""
    try:
        record = json.loads((dst / RECORD).read_text(encoding="utf8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("settings"), dict) else None


def finished_outputs(jobs: list[tuple[Path, Path]], record: dict[str, Any] | None) -> list[Path]:
    """The outputs of ``jobs`` that the run of ``record`` wrote (all there, or after its start with --overwrite)."""
    done = [o for _, o in jobs if o.is_file()]
    if record is None or not record.get("overwrite"):
        return done
    start = int(record.get("started_ns", 0)) - _SLACK_NS
    return [o for o in done if o.stat().st_mtime_ns >= start]


def _resume_from(args: argparse.Namespace, jobs: list[tuple[Path, Path]], dst: Path) -> set[Path]:
    """``--resume``: the outputs the interrupted run (same settings) finished, to skip; refuses anything else."""
    record, settings = _read_record(dst), _settings(args)
    taken = [o for _, o in jobs if o.exists()]
    if record is None:
        if taken:
            raise ValueError(
                f"--resume: {args.out} holds {len(taken)} output(s) (e.g. {taken[0].name}) but no record of an "
                f"interrupted restore ({RECORD}); add --overwrite to replace them or choose another --out"
            )
        return set()
    changed = [k for k in settings if record["settings"].get(k) != settings[k]]
    if changed:
        was = ", ".join(f"{k} {record['settings'].get(k)!r}" for k in changed)
        raise ValueError(
            f"--resume: the interrupted restore into {args.out} used other settings ({was}); continue it with "
            "those, or restart with --overwrite"
        )
    done = set(finished_outputs(jobs, record))
    foreign = [o for o in taken if o not in done]
    if foreign and not record.get("overwrite"):  # an --overwrite run may replace them: its continuation too
        raise ValueError(
            f"--resume: {foreign[0]} was not written by the interrupted restore; add --overwrite to replace "
            "it or choose another --out"
        )
    print(
        f"note: --resume: {len(done)} of {len(jobs)} outputs are finished; restoring the other {len(jobs) - len(done)}"
    )
    return done


def _start_record(args: argparse.Namespace, dst: Path) -> dict[str, Any]:
    """Record this run's settings and start (``RECORD``); under torchrun only rank 0 writes it."""
    record = {"settings": _settings(args), "overwrite": bool(args.overwrite), "started_ns": time.time_ns()}
    if int(os.environ.get("RANK", 0)) == 0:
        write_json(dst / RECORD, record)
    return record


def _one(args: dict[str, Any], src: Path, dst: Path, device: str | None, run_one: Callable) -> int:
    ns = argparse.Namespace(**{**args, "input": str(src), "out": str(dst), "devices": device, "one_device": True})
    return run_one(ns)


def _folder_rank(
    rank: int, world: int, device: Any, args: dict[str, Any], jobs: list, run_one: Callable, skip: set
) -> None:
    for src, dst in jobs[rank::world]:
        if dst in skip:  # finished by the interrupted run (--resume)
            continue
        print(f"[rank {rank}/{world}] {src.name}")
        _one(args, src, dst, None if device is None else str(device), run_one)


def run_folder(args: argparse.Namespace, run_one: Callable[[argparse.Namespace], int]) -> int:
    """Restore every image of ``args.input`` into ``args.out`` with ``run_one`` (the one-file command).

    ``args.resume``: skip the outputs an interrupted run with the same settings finished.  The output folder
    is locked meanwhile; an interrupt says how many outputs are written and how to continue.
    """
    overwrite, resume = bool(getattr(args, "overwrite", False)), bool(getattr(args, "resume", False))
    if overwrite and resume:
        raise ValueError("--resume continues an interrupted run, --overwrite starts afresh: give only one")
    _, dst = _check_folders(args.input, args.out)  # before the lock: nothing is created in the input folder
    devices = parse_devices(args.devices) if args.devices else None
    with output_lock(dst, f"--out {args.out}"):
        jobs = folder_jobs(args.input, args.out, overwrite, resume)  # under the lock: no other run writes there
        skip = _resume_from(args, jobs, dst) if resume else set()
        record = (_read_record(dst) if resume else None) or _start_record(args, dst)  # --resume keeps the start
        try:
            _restore_jobs(args, jobs, devices, run_one, skip)
        except KeyboardInterrupt as err:
            n = len(finished_outputs(jobs, record))
            raise interrupted(
                err,
                f"{n} of {len(jobs)} outputs are written in {args.out}; continue with the same command plus "
                f"--resume (it restores only the other {len(jobs) - n})",
            ) from None
    return 0


def _restore_jobs(
    args: argparse.Namespace, jobs: list, devices: list | None, run_one: Callable, skip: set[Path]
) -> None:
    """Restore ``jobs`` but ``skip``: under torchrun this rank's share, with several devices one process each."""
    fields = {k: v for k, v in vars(args).items() if k != "func"}
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # torchrun: this process is one of P
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = devices[local % len(devices)] if devices else None
        _folder_rank(rank, world, device, fields, jobs, run_one, skip)
        return
    if devices and len(devices) > 1:  # one process per device, each with its share of the images
        spawn(_folder_rank, devices, fields, jobs, run_one, skip)
        print(f"restored {len(jobs) - len(skip)} images into {args.out} on {len(devices)} devices")
        return
    for src, dst in jobs:
        if dst not in skip:
            _one(fields, src, dst, str(devices[0]) if devices else None, run_one)
    print(f"restored {len(jobs) - len(skip)} images into {args.out}" + (f" ({len(skip)} kept)" if skip else ""))
