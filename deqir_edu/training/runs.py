"""The files of a training run: refuse to clobber a run, read a checkpoint safely, write the final weights.

Notation: none (no paper symbols).  The folder of a run (``deqir-edu train CONFIG --out DIR``)::

    checkpoint.pt       full state (model, EMA, optimiser, step, RNG states, loss log); ``--resume``
    loss_log.csv        step, mean eps-MSE, learning rate, seconds
    {name}.safetensors  final EMA weights          {name}.json   config + run summary

Every file is written through a temporary file and renamed (``core.files``); ``name`` comes from the
config and must be a plain file name (``core.files.safe_name``).  While a run trains its folder holds the
lock file ``.deqir-edu.lock`` (``core.locks``): a second run into the same folder is refused.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ..core.files import atomic_path, safe_name, write_json
from ..core.locks import output_lock

__all__ = [
    "check_run_folder",
    "run_files",
    "read_checkpoint",
    "save_weights",
    "export_checkpoint",
    "describe",
    "write_log",
]

_RUN_FILES = ("checkpoint.pt", "loss_log.csv")
_CHECKPOINT_KEYS = (
    "model",
    "ema",
    "optimizer",
    "step",
    "seconds",
    "gen_state",
    "torch_rng_state",
    "config",
    "loss_log",
)


def run_files(name: str) -> tuple[str, ...]:
    """The files a run of config ``name`` writes into its folder."""
    return (*_RUN_FILES, f"{name}.safetensors", f"{name}.json")


def check_run_folder(out: Path, name: str, resume: bool, overwrite: bool) -> None:
    """Refuse to start a fresh run in a folder that already holds one (unless ``overwrite``)."""
    if resume or overwrite or not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"output folder {out} is a file; choose another --out")
    found = [f for f in run_files(name) if (out / f).exists()]
    if found:
        raise ValueError(
            f"{out} already holds a run ({', '.join(found)}); continue it with --resume, "
            "start afresh with --overwrite, or choose another --out"
        )


def read_checkpoint(path: Path) -> dict:
    """A training checkpoint (``torch.load(weights_only=True)``), checked for every entry ``train`` needs."""
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}; train first (`deqir-edu train CONFIG --out DIR`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, a truncated zip, a file that is no checkpoint at all
        raise ValueError(
            f"{path} is not a readable training checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(
            f"{path} is not a complete training checkpoint: missing {', '.join(missing)}; use a fresh --out folder"
        )
    try:  # the config is stored as JSON text: a damaged one is named here, not as a bare JSON error later
        config = json.loads(state["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: its stored config is not valid JSON ({err}); use a fresh --out folder") from None
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path}: its stored config has no model; use a fresh --out folder")
    return state


def write_log(path: Path, rows: list[list[float]]) -> None:
    """Write the loss log as CSV (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr", "seconds"])
        w.writerows([int(r[0]), *r[1:]] for r in rows)


def save_weights(ema_state: dict[str, torch.Tensor], cfg: dict, summary: dict, out: str | Path) -> Path:
    """Write ``{name}.safetensors`` (EMA weights, config in the metadata) and ``{name}.json``."""
    out = Path(out)
    name = safe_name(cfg["name"], "the config's 'name'")
    path = out / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in ema_state.items()}, str(tmp), metadata={"config": json.dumps(cfg)})
    write_json(out / f"{name}.json", {"config": cfg, "run": summary})
    return path


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """EMA weights of a (possibly unfinished) run's ``checkpoint.pt``, written as by a finished run.

    The run's config gets ``steps`` = the step reached, so the weights say honestly how long they
    were trained; ``train(..., resume=True, steps=N)`` can still continue the run later.
    """
    state = read_checkpoint(Path(checkpoint))
    cfg = json.loads(state["config"])
    log = state["loss_log"].tolist()
    step = int(state["step"])
    planned, cfg["steps"] = cfg["steps"], step
    summary = {
        "name": cfg["name"],
        "step": step,
        "finished": step >= planned,
        "seconds": round(float(state["seconds"]), 1),
        "final_loss": log[-1][1] if log else None,
        "planned_steps": planned,
        "stopped_at_deadline": step < planned,
        "parameters": sum(v.numel() for k, v in state["model"].items()),
    }
    with output_lock(out, f"--export {out}"):  # one writer at a time
        write_log(Path(out) / f"{cfg['name']}_loss.csv", log)
        return save_weights(state["ema"], cfg, summary, out)


def describe(summary: dict) -> str:
    """One line on a training run: finished or stopped, at which step, minutes and the last loss."""
    mins = summary["seconds"] / 60
    state = "finished" if summary["finished"] else "stopped (resume with --resume)"
    if summary["stopped_at_deadline"]:
        state = f"stopped at the deadline (planned {summary['planned_steps']}; continue with --resume --steps N)"
    loss = "n/a" if summary["final_loss"] is None else f"{summary['final_loss']:.4f}"
    return f"{summary['name']}: {state} at step {summary['step']}, {mins:.1f} min, loss {loss}"
