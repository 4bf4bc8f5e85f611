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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..core.files import atomic_path, safe_name
from ..datasets import make_sampler
from ..diffusion.schedules import alphas_cumprod, linear_betas
from .runs import check_run_folder, read_checkpoint, save_weights, write_log

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
    from ..models.networks import ADMUNet

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
        overwrite: start afresh in a folder that holds a run (its files are replaced); without it,
            and without ``resume``, such a folder is refused (``ValueError``).
    """
    cfg = load_config(config)
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer (optimiser steps), got {steps!r}")
        cfg["steps"] = steps
    total, batch, opt_cfg = int(cfg["steps"]), int(cfg["batch_size"]), cfg["optimizer"]
    out = Path(out)
    check_run_folder(out, cfg["name"], resume, overwrite)
    out.mkdir(parents=True, exist_ok=True)
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
    step, log_rows, elapsed = 0, [], 0.0

    ckpt_path = out / "checkpoint.pt"
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}; start without --resume")
        state = read_checkpoint(ckpt_path)
        if json.loads(state["config"])["model"] != cfg["model"]:
            raise ValueError(f"{ckpt_path} was written for another model config; use a fresh --out folder")
        try:
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["gen_state"])
            torch.set_rng_state(state["torch_rng_state"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{ckpt_path} does not fit this config ({str(err).splitlines()[0]}); use a fresh --out folder"
            ) from None
        step, elapsed = int(state["step"]), float(state["seconds"])
        log_rows = state["loss_log"].tolist()
        print(f"resumed {cfg['name']} from step {step} ({ckpt_path})")

    def save_checkpoint() -> None:
        state = {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "seconds": elapsed,
            "gen_state": gen.get_state(),
            "torch_rng_state": torch.get_rng_state(),
            "config": json.dumps(cfg),
            "loss_log": torch.tensor(log_rows, dtype=torch.float64).reshape(-1, 4),
        }
        with atomic_path(ckpt_path) as tmp:  # a crash never leaves a half-written checkpoint
            torch.save(state, tmp)
        write_log(out / "loss_log.csv", log_rows)

    end = total if stop_after is None else min(total, step + int(stop_after))
    ema_params = list(ema.parameters())
    dc_weight, dc_from = float(cfg["loss"]["dc_weight"]), int(cfg["loss"]["dc_from_step"])
    model.train()
    window: list[float] = []
    bar = tqdm(total=total, initial=step, disable=not progress, desc=cfg["name"], dynamic_ncols=True)
    t_start = time.perf_counter() - elapsed
    planned, stopped_early = total, False
    while step < end:
        if deadline is not None and time.time() >= deadline:
            stopped_early, total = True, step
            break
        x0 = sampler.sample(batch, gen)
        t = torch.randint(0, abar.numel(), (batch,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise  # Eq. (2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(cfg["autocast_bf16"])):
            eps = model(x_t, t)
        eps = eps.float()
        mse = F.mse_loss(eps, noise)  # || eps - eps_theta(x_t, t) ||^2 (Ho et al., Eq. 14)
        loss = mse
        if dc_weight > 0 and step >= dc_from:  # same minimiser, the per-channel means weighted more
            loss = mse + dc_weight * (eps - noise).mean(dim=(2, 3)).square().mean()
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss became {loss.item()} at step {step}; lower the learning rate")
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, opt_cfg, planned)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if opt_cfg["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(opt_cfg["grad_clip"]))
        opt.step()
        rate = float(cfg["ema_rate"])
        if cfg["ema_warmup"]:  # shorter memory early on, so a short run's EMA forgets the random init
            rate = min(rate, (1 + step) / (10 + step))
        with torch.no_grad():  # theta_EMA <- r theta_EMA + (1 - r) theta
            torch._foreach_lerp_(ema_params, list(model.parameters()), 1.0 - rate)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        step += 1
        window.append(mse.item())  # the plain DDPM loss, comparable across recipes
        bar.update(1)
        if step % int(cfg["log_every"]) == 0 or step == total:
            elapsed = time.perf_counter() - t_start
            log_rows.append([step, sum(window) / len(window), _lr_at(step - 1, opt_cfg, planned), elapsed])
            bar.set_postfix(loss=f"{log_rows[-1][1]:.4f}")
            window = []
        if step % int(cfg["checkpoint_every"]) == 0 or step == end:
            elapsed = time.perf_counter() - t_start
            save_checkpoint()
    bar.close()
    if stopped_early:
        elapsed = time.perf_counter() - t_start
        if window:
            log_rows.append([step, sum(window) / len(window), _lr_at(step - 1, opt_cfg, planned), elapsed])
        save_checkpoint()
        cfg["steps"] = step

    summary = {
        "name": cfg["name"],
        "step": step,
        "finished": step >= total,
        "seconds": round(elapsed, 1),
        "final_loss": log_rows[-1][1] if log_rows else None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "planned_steps": planned,
        "stopped_at_deadline": stopped_early,
    }
    if step >= total and step > 0:
        save_weights(ema.state_dict(), cfg, summary, out)
    return summary
