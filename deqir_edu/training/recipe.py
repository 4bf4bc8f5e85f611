"""Training recipe of the embedded diffusion models (DDPM noise-prediction objective).

Notation (code name -> paper symbol; DeqIR Sec. 3 uses the DDPM/DDIM model of Ho et al. 2020)

    x0        x_0                clean training image, (B, C, H, W) in [-1, 1]
    t         t                  integer time, uniform in {0, ..., n_train - 1}, (B,)
    abar_t    abar_t             alphas_cumprod[t], Eq. (2)
    noise     eps                standard Gaussian noise, (B, C, H, W)
    x_t       x_t                sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, Eq. (2)
    model     eps_theta(x_t, t)  the network, trained with || eps - eps_theta(x_t, t) ||^2
    dc        mean_HW(.)         per-image, per-channel spatial mean (the DC component), (B, C)
    ema       theta_EMA          exponential moving average of the weights, used for sampling

Config keys (JSON, see ``configs/fashion32.json``): ``name``, ``model`` (guided-diffusion ADM flags),
``data`` (see ``datasets.make_sampler``), ``schedule``, ``steps``, ``batch_size``, ``optimizer``
(AdamW ``lr`` with linear ``warmup`` then constant, optionally decaying linearly from step ``decay_from``
to ``lr_final`` at the last step; ``weight_decay``, ``betas``, ``grad_clip``),
``ema_rate`` (and ``ema_warmup``: rate min(r, (1 + k) / (10 + k)) at step k), ``seed``,
``autocast_bf16``, ``num_threads``, ``checkpoint_every``, ``log_every``, and ``loss``:
``dc_weight`` w (default 0) adds w * mean || mean_HW(eps - eps_theta) ||^2 from step ``dc_from_step`` on.
That term weights one subspace (each channel's mean) more, so the minimiser is still E[eps | x_t].
It speeds up learning what a small net learns last: to pass the mean of x_t on to eps at large t,
where an error becomes a colour cast of x_{0|t} amplified by sqrt((1 - abar_t) / abar_t) (~150).

A run is a pure function of its JSON config: every random number (batches, times, noise, dropout)
comes from generators seeded by ``config["seed"]`` whose states are checkpointed, so a resumed run
reproduces an uninterrupted one bit for bit on the same machine and thread count (another CPU may
pick other bf16 kernels and round differently).  Files written to ``out``::

    checkpoint.pt       full state (model, EMA, optimiser, step, RNG states, loss log), every
                        ``checkpoint_every`` steps; ``--resume`` continues from it
    loss_log.csv        step, mean eps-MSE over the last ``log_every`` steps, learning rate, seconds
    {name}.safetensors  final EMA weights          {name}.json   config + run summary
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.checks import NotFiniteError, is_integer
from ..core.files import atomic_path, safe_name
from ..core.locks import output_lock
from ..core.signals import deferred_signals, interrupted
from ..datasets import make_sampler
from ..diffusion.schedules import alphas_cumprod, linear_betas
from ..models.networks import ADMUNet
from .runs import check_run_folder, read_checkpoint, run_files, save_weights, write_log

__all__ = ["load_config", "build_model", "train", "DEFAULTS"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

DEFAULTS: dict[str, Any] = {
    "schedule": {"n_train": 1000, "beta_start": 1e-4, "beta_end": 0.02},
    "steps": 1000,
    "batch_size": 64,
    "optimizer": {"lr": 2e-4, "weight_decay": 0.0, "betas": [0.9, 0.999], "warmup": 500, "grad_clip": 1.0},
    "ema_rate": 0.999,
    "ema_warmup": False,
    "seed": 0,
    "autocast_bf16": True,
    "num_threads": 2,
    "checkpoint_every": 500,
    "log_every": 50,
    "loss": {"dc_weight": 0.0, "dc_from_step": 0},
}


def load_config(config: str | Path | dict) -> dict:
    """A config dict from a dict, a JSON path, or a built-in name (``fashion32``, ``photo32``, ``tiny``)."""
    if isinstance(config, dict):
        cfg = copy.deepcopy(config)
    else:
        path = Path(config)
        if not path.is_file() and (CONFIG_DIR / f"{config}.json").is_file():
            path = CONFIG_DIR / f"{config}.json"
        if not path.is_file():
            known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise FileNotFoundError(f"config {config!r} not found; give a JSON file or one of {known}")
        try:
            cfg = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"config {path} is not valid JSON ({err})") from None
    where = "the config" if isinstance(config, dict) else f"config {config}"
    if not isinstance(cfg, dict):
        raise ValueError(f"{where} must be a JSON object with 'name', 'model' and 'data', got {type(cfg).__name__}")
    for key in ("name", "model", "data"):
        if key not in cfg:
            raise ValueError(f"{where} lacks the required entry {key!r}")
    safe_name(cfg["name"], f"{where}: 'name'")  # it names files in the output folder: no '/', no '..'
    if "steps" in cfg and (not isinstance(cfg["steps"], int) or cfg["steps"] < 1):
        raise ValueError(f"{where}: 'steps' must be a positive integer, got {cfg['steps']!r}")
    for key, value in DEFAULTS.items():
        if isinstance(value, dict):
            cfg[key] = {**value, **cfg.get(key, {})}
        else:
            cfg.setdefault(key, value)
    return cfg


def build_model(model_cfg: dict) -> torch.nn.Module:
    """The ADM UNet described by guided-diffusion flags (``image_size``, ``num_channels``, ...)."""
    return ADMUNet.from_config(model_cfg)


def _lr_at(step: int, opt_cfg: dict, total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then constant; with ``decay_from`` set, a linear decay
    from ``lr`` at that step to ``lr_final`` at step ``total``."""
    lr, warmup = float(opt_cfg["lr"]), int(opt_cfg["warmup"])
    if warmup > 0:
        lr *= min(1.0, (step + 1) / warmup)
    if opt_cfg.get("decay_from") is not None and step >= (start := int(opt_cfg["decay_from"])):
        frac = min(1.0, (step - start) / max(1, total - start))
        lr += (float(opt_cfg.get("lr_final", 0.0)) - lr) * frac
    return lr


@dataclass
class _Run:
    """A training run in progress: the network, its EMA, the optimiser, the RNG and what was logged."""

    cfg: dict
    out: Path
    batch: int
    sampler: Any
    model: torch.nn.Module
    ema: torch.nn.Module
    opt: torch.optim.Optimizer
    abar: torch.Tensor
    gen: torch.Generator
    step: int = 0
    elapsed: float = 0.0
    log_rows: list = field(default_factory=list)
    window: list[float] = field(default_factory=list)
    saved_step: int | None = None  # step of the checkpoint this call wrote last
    resumed_from: int | None = None  # step of the checkpoint it continued from
    finals_written: bool = False  # the final weights of this call are written
    earlier: list[str] = field(default_factory=list)  # files of a run that were in the folder before

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"


def train(
    config: str | Path | dict,
    out: str | Path,
    steps: int | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    deadline: float | None = None,
    overwrite: bool = False,
) -> dict:
    """Train (or continue) the run described by ``config``; returns a summary dict.

    Args:
        config: dict, JSON path or built-in config name.
        out: folder for checkpoints, loss log and final weights.
        steps: total number of optimiser steps (overrides ``config["steps"]``).
        resume: continue from ``out/checkpoint.pt`` (same config and seed).
        progress: show a tqdm bar with the loss.
        stop_after: stop (with a checkpoint) after this many steps of *this* call, for tests and
            for splitting a long run; the final weights are written only when ``steps`` is reached.
        deadline: a ``time.time()`` at which to stop early: the run then ends at the step reached,
            writes a checkpoint and the final EMA weights with ``config["steps"]`` set to that step
            (the learning rate is constant after warm-up, so a run of N steps is exactly the first N
            steps of any longer run, and ``--resume --steps M`` continues it later).
        overwrite: start afresh in a folder that holds a run (its files are replaced as the new run
            writes its own: the earlier final weights stay until the new run finishes); without it,
            and without ``resume``, such a folder is refused (``ValueError``).

    The folder is locked while the run trains (``core.locks.output_lock``): a second run into it is
    refused.  An interrupt (Ctrl-C, SIGTERM in the CLI) raises ``core.signals.Interrupted`` saying what
    the folder holds: the checkpoint kept and its step, and the earlier run's files that are still there.
    """
    cfg = _config_with_steps(config, steps)
    out = Path(out)
    with output_lock(out, f"the run folder {out}"):
        check_run_folder(out, cfg["name"], resume, overwrite)
        earlier = [f for f in run_files(cfg["name"]) if (out / f).exists()]
        run = _start(cfg, out, int(cfg["batch_size"]))
        run.earlier = earlier
        if resume:
            _resume(run)
            run.resumed_from = run.step
        return _train_run(run, stop_after, deadline, progress)


def _train_run(run: _Run, stop_after: int | None, deadline: float | None, progress: bool) -> dict:
    """Train ``run`` to its planned steps (or ``stop_after`` more, or the ``deadline``); write the final weights."""
    cfg, planned = run.cfg, int(run.cfg["steps"])
    end = planned if stop_after is None else min(planned, run.step + int(stop_after))
    try:
        stopped_early = _loop(run, end, planned, deadline, progress)
        total = run.step if stopped_early else planned
        summary = {
            "name": cfg["name"],
            "step": run.step,
            "finished": run.step >= total,
            "seconds": round(run.elapsed, 1),
            "final_loss": run.log_rows[-1][1] if run.log_rows else None,
            "parameters": sum(p.numel() for p in run.model.parameters()),
            "planned_steps": planned,
            "stopped_at_deadline": stopped_early,
        }
        if run.step >= total and run.step > 0:
            with deferred_signals():  # the weights and their JSON together
                save_weights(run.ema.state_dict(), cfg, summary, run.out)
                run.finals_written = True
    except KeyboardInterrupt as err:
        raise interrupted(err, _what_is_kept(run)) from None
    return summary


def _what_is_kept(run: _Run) -> str:
    """What an interrupted run leaves in its folder: the checkpoint and its step, the earlier run's files."""
    out, name = run.out, run.cfg["name"]
    if run.finals_written:
        return f"the run had finished: wrote {name}.safetensors and {name}.json of step {run.step} in {out}"
    earlier = list(run.earlier)
    if run.saved_step is not None:
        text = f"kept {out / 'checkpoint.pt'} of step {run.saved_step} and loss_log.csv; continue with --resume"
        earlier = [f for f in earlier if f not in ("checkpoint.pt", "loss_log.csv")]  # now this run's
    elif run.resumed_from is not None:
        text = (
            f"nothing new was written: {out / 'checkpoint.pt'} is still that of step {run.resumed_from}; "
            "continue with --resume"
        )
        earlier = []
    else:
        first = min(int(run.cfg["checkpoint_every"]), int(run.cfg["steps"]))
        text = f"nothing was written to {out} (the first checkpoint comes at step {first})"
    if earlier:
        text += (
            f"; {', '.join(earlier)} in {out} are still the earlier run's (this run replaces them as it writes its own)"
        )
    return text


def _config_with_steps(config: str | Path | dict, steps: int | None) -> dict:
    """``load_config(config)`` with ``steps`` (when given) as its total number of steps."""
    cfg = load_config(config)
    if steps is not None:
        if not is_integer(steps) or steps < 1:
            raise ValueError(f"steps must be a positive integer (optimiser steps), got {steps!r}")
        cfg["steps"] = int(steps)  # a NumPy integer too; stored as JSON
    return cfg


def _start(cfg: dict, out: Path, batch: int) -> _Run:
    """Seed the RNGs, build the data sampler, the network, its EMA copy and the optimiser."""
    opt_cfg = cfg["optimizer"]
    torch.set_num_threads(int(cfg["num_threads"]))
    torch.manual_seed(int(cfg["seed"]))  # initial weights and dropout (global RNG)
    sampler = make_sampler(cfg["data"])
    model = build_model(cfg["model"])
    if tuple(getattr(model, "image_shape", sampler.image_shape)) != tuple(sampler.image_shape):
        raise ValueError(f"model image shape {model.image_shape} != data shape {sampler.image_shape}")
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=float(opt_cfg["lr"]),
        betas=tuple(opt_cfg["betas"]),
        weight_decay=float(opt_cfg["weight_decay"]),
    )
    sched = cfg["schedule"]
    abar = alphas_cumprod(linear_betas(sched["n_train"], sched["beta_start"], sched["beta_end"])).float()
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 1)  # batches, times and noise
    return _Run(cfg, out, batch, sampler, model, ema, opt, abar, gen)


def _resume(run: _Run) -> None:
    """Load ``run.out/checkpoint.pt`` into ``run`` (weights, optimiser, RNG states, step, loss log)."""
    ckpt_path = run.ckpt_path
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
    state = read_checkpoint(ckpt_path)
    if json.loads(state["config"])["model"] != run.cfg["model"]:
        raise ValueError(f"{ckpt_path} was written for another model config; use a fresh --out folder")
    try:
        run.model.load_state_dict(state["model"])
        run.ema.load_state_dict(state["ema"])
        run.opt.load_state_dict(state["optimizer"])
        run.gen.set_state(state["gen_state"])
        torch.set_rng_state(state["torch_rng_state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{ckpt_path} does not fit this config ({str(err).splitlines()[0]}); use a fresh --out folder"
        ) from None
    run.step, run.elapsed = int(state["step"]), float(state["seconds"])
    run.log_rows = state["loss_log"].tolist()
    print(f"resumed {run.cfg['name']} from step {run.step} ({ckpt_path})")


def _save_checkpoint(run: _Run) -> None:
    """Write the full state of ``run`` atomically, and the loss log."""
    state = {
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict(),
        "optimizer": run.opt.state_dict(),
        "step": run.step,
        "seconds": run.elapsed,
        "gen_state": run.gen.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "config": json.dumps(run.cfg),
        "loss_log": torch.tensor(run.log_rows, dtype=torch.float64).reshape(-1, 4),
    }
    with deferred_signals():  # Ctrl-C waits for the checkpoint and its log, so the message can name the step
        with atomic_path(run.ckpt_path) as tmp:  # a crash never leaves a half-written checkpoint
            torch.save(state, tmp)
        write_log(run.out / "loss_log.csv", run.log_rows)
        run.saved_step = run.step


def _loop(run: _Run, end: int, planned: int, deadline: float | None, progress: bool) -> bool:
    """Optimiser steps up to ``end``, logging and checkpointing; True if ``deadline`` stopped it first."""
    cfg = run.cfg
    dc = float(cfg["loss"]["dc_weight"]), int(cfg["loss"]["dc_from_step"])
    run.model.train()
    bar = tqdm(total=planned, initial=run.step, disable=not progress, desc=cfg["name"], dynamic_ncols=True)
    t_start = time.perf_counter() - run.elapsed
    stopped_early = False
    while run.step < end:
        if deadline is not None and time.time() >= deadline:
            stopped_early = True
            break
        mse = _optimiser_step(run, planned, dc)
        run.step += 1
        run.window.append(mse)  # the plain DDPM loss, comparable across recipes
        bar.update(1)
        if run.step % int(cfg["log_every"]) == 0 or run.step == planned:
            run.elapsed = time.perf_counter() - t_start
            _log_window(run, planned)
            bar.set_postfix(loss=f"{run.log_rows[-1][1]:.4f}")
        if run.step % int(cfg["checkpoint_every"]) == 0 or run.step == end:
            run.elapsed = time.perf_counter() - t_start
            _save_checkpoint(run)
    bar.close()
    if stopped_early:
        run.elapsed = time.perf_counter() - t_start
        if run.window:
            _log_window(run, planned)
        _save_checkpoint(run)
        cfg["steps"] = run.step
    return stopped_early


def _log_window(run: _Run, planned: int) -> None:
    """Append a loss-log row (step, mean loss of the window, learning rate, seconds); empty the window."""
    lr = _lr_at(run.step - 1, run.cfg["optimizer"], planned)
    run.log_rows.append([run.step, sum(run.window) / len(run.window), lr, run.elapsed])
    run.window = []


def _optimiser_step(run: _Run, planned: int, dc: tuple[float, int]) -> float:
    """One step on a fresh batch (Eq. (2) noising, eps-MSE; ``dc``: the DC term's weight and first step),
    then the EMA update; returns the MSE."""
    cfg, opt_cfg, step = run.cfg, run.cfg["optimizer"], run.step
    x0 = run.sampler.sample(run.batch, run.gen)
    t = torch.randint(0, run.abar.numel(), (run.batch,), generator=run.gen)
    noise = torch.randn(x0.shape, generator=run.gen)
    a = run.abar[t].view(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise  # Eq. (2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg["autocast_bf16"])):
        eps = run.model(x_t, t)
    eps = eps.float()
    mse = F.mse_loss(eps, noise)  # || eps - eps_theta(x_t, t) ||^2 (Ho et al., Eq. 14)
    loss = mse
    dc_weight, dc_from = dc
    if dc_weight > 0 and step >= dc_from:  # same minimiser, the per-channel means weighted more
        loss = mse + dc_weight * (eps - noise).mean(dim=(2, 3)).square().mean()
    if not torch.isfinite(loss):
        raise NotFiniteError(
            f"the training diverged: loss became {loss.item()} at step {step}; lower the learning rate "
            f"(optimizer.lr of the config, now {opt_cfg['lr']})"
        )
    for group in run.opt.param_groups:
        group["lr"] = _lr_at(step, opt_cfg, planned)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    if opt_cfg["grad_clip"]:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), float(opt_cfg["grad_clip"]))
    run.opt.step()
    _update_ema(run)
    return mse.item()


def _update_ema(run: _Run) -> None:
    """theta_EMA <- r theta_EMA + (1 - r) theta (rate r = ``ema_rate``, shorter early with ``ema_warmup``)."""
    rate = float(run.cfg["ema_rate"])
    if run.cfg["ema_warmup"]:  # shorter memory early on, so a short run's EMA forgets the random init
        rate = min(rate, (1 + run.step) / (10 + run.step))
    with torch.no_grad():
        torch._foreach_lerp_(list(run.ema.parameters()), list(run.model.parameters()), 1.0 - rate)
        for b_ema, b in zip(run.ema.buffers(), run.model.buffers(), strict=True):
            b_ema.copy_(b)
