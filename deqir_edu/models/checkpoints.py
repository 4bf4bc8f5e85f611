"""Checkpoints: from a config dict to a network, and from a file to a checked state dict.

Notation (code name -> meaning)

    spec.architecture  "adm" (guided-diffusion ``UNetModel``) or "ddpm" (DDIM/SDEdit ``Model``)
    spec.config        the original code's flags, passed to ``ADMUNet/DDPMUNet.from_config``
    spec.image_shape   (C, H, W) of the images the network models
    spec.learn_sigma   True if the network outputs 2C channels (eps and the variance v; only eps is used)
    spec.schedule      (steps, beta_start, beta_end) of the linear betas; abar_t of Eq. (2) follows
    spec.eta, spec.clip the model's recommended sampling: eta of Eq. (4) and clipping of x_{0|t}
                       (the config's optional ``"sampling": {"eta": 0.85, "clip": false}``; default the
                       paper's 0.15, no clipping)
    sd                 state dict: parameter name -> tensor

``parse_spec`` reads the model-config JSON of the zoo (see ``zoo.py``), a training config of
``deqir_edu.training`` or a bare flag dict; ``load_state_dict`` reads ``.safetensors`` or a torch
checkpoint with ``weights_only=True`` (never executes pickled code); ``check_keys`` names every
missing, unexpected or mis-shaped key before a strict load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .networks import ADMUNet, DDPMUNet

__all__ = ["PAPER_ETA", "ModelSpec", "parse_spec", "read_spec", "load_state_dict", "build_network", "check_keys"]

PAPER_ETA = 0.15  # the paper's eta (Sec. 5.1), the default of a model whose config names none


@dataclass(frozen=True)
class ModelSpec:
    """What is needed to build a network before loading its weights."""

    architecture: str
    config: dict[str, Any]
    image_shape: tuple[int, int, int]
    learn_sigma: bool
    schedule: tuple[int, float, float] = (1000, 1e-4, 0.02)  # linear betas: steps, beta_start, beta_end
    eta: float = PAPER_ETA  # the eta this model samples best with (its card says why)
    clip: bool = False


def read_spec(path: str | Path, text: str | None = None) -> ModelSpec:
    """``parse_spec`` of the JSON file ``path`` (or of ``text``, JSON stored elsewhere, named ``path``); a file
    that is not valid JSON is one ``ValueError`` that names it."""
    try:
        d = json.loads(Path(path).read_text() if text is None else text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"model config {path} is not valid JSON ({err}); fix or delete the file") from None
    return parse_spec(d, str(path))


def parse_spec(d: Mapping[str, Any], source: str = "config") -> ModelSpec:
    """Read a model-config JSON (see the module docstring), a training config/summary of
    ``deqir_edu.training`` (flags nested under "config"/"model"), or a bare flag dict."""
    if not isinstance(d, Mapping):
        raise ValueError(
            f'{source}: a model config is a JSON object like {{"architecture": "adm", ...}}, got {type(d).__name__}'
        )
    levels = [d]  # outer dicts first, the network flags last
    while (
        inner := next(
            (levels[-1][k] for k in ("config", "model", "network") if isinstance(levels[-1].get(k), Mapping)), None
        )
    ) is not None:
        levels.append(inner)
    cfg = dict(levels[-1])

    def find(key: str, default: Any = None) -> Any:
        return next((lv[key] for lv in levels if key in lv), default)

    arch = find("architecture")
    if arch is None:  # guess from the flag names of the original code
        arch = "ddpm" if ("ch" in cfg or cfg.get("type") == "simple") else "adm" if "num_channels" in cfg else None
    if arch not in ("adm", "ddpm"):
        raise ValueError(f'{source}: unknown architecture {arch!r}; set "architecture" to "adm" or "ddpm"')
    cfg.pop("architecture", None)
    for key in ("noise_schedule", "beta_schedule"):
        if find(key, "linear") != "linear":
            raise ValueError(f"{source}: {key}={find(key)!r} is not supported; the zoo uses linear beta schedules")
    sched = find("schedule", {})
    schedule = (
        int(sched.get("n_train", find("num_diffusion_timesteps", find("diffusion_steps", 1000)))),
        float(sched.get("beta_start", find("beta_start", 1e-4))),
        float(sched.get("beta_end", find("beta_end", 0.02))),
    )
    in_ch = int(cfg.get("in_channels", cfg.get("channels", 3)))
    if arch == "adm":
        learn_sigma = bool(find("learn_sigma", False))
    else:
        learn_sigma = bool(find("learn_sigma", cfg.get("out_ch", in_ch) == 2 * in_ch))
    if find("image_shape") is not None:
        shape = tuple(int(s) for s in find("image_shape"))
    elif "image_size" in cfg:
        shape = (in_ch, int(cfg["image_size"]), int(cfg["image_size"]))
    else:
        raise ValueError(f'{source}: give "image_shape": [C, H, W] or the flag "image_size"')
    if len(shape) != 3:
        raise ValueError(f"{source}: image_shape must be [C, H, W], got {list(shape)}")
    sampling = d.get("sampling", {}) if isinstance(d, Mapping) else {}
    eta, clip = sampling.get("eta", PAPER_ETA), sampling.get("clip", False)
    if (
        not isinstance(sampling, Mapping)
        or isinstance(eta, bool)
        or not isinstance(eta, (int, float))
        or not 0 <= eta <= 1
        or not isinstance(clip, bool)
    ):
        raise ValueError(f'{source}: "sampling" must be like {{"eta": 0.85, "clip": false}} with 0 <= eta <= 1')
    return ModelSpec(arch, cfg, shape, learn_sigma, schedule, float(eta), clip)  # type: ignore[arg-type]


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _unwrap(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint: plain, nested under "ema"/"state_dict"/"model", or a
    DDIM training list ``[model, optimizer, epoch, step, ema]`` (the EMA weights are taken)."""
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, (list, tuple)):
        dicts = [o for o in obj if _is_state_dict(o)]
        if dicts:  # last = EMA when it has the model's keys
            return dict(dicts[-1] if set(dicts[-1]) == set(dicts[0]) else dicts[0])
    if isinstance(obj, Mapping):
        for key in ("ema", "ema_state_dict", "state_dict", "model", "model_state_dict", "net"):
            if isinstance(obj.get(key), (Mapping, list, tuple)):
                try:
                    return _unwrap(obj[key], source)
                except ValueError:  # e.g. "ema" holds only the EMA rate: try the next key
                    continue
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"{source}: no state dict (name -> tensor) found in the checkpoint; top level: {keys}")


def _first_line(err: BaseException, n: int = 160) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0][:n] if lines else ''}"


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or a torch checkpoint (``weights_only=True``) into a flat state dict."""
    path = Path(path)
    open(path, "rb").close()  # a missing or unreadable file raises its own error (not "damaged")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:  # corrupt header, truncated data
            raise ValueError(
                f"{path} is not a readable .safetensors file ({_first_line(err)}); "
                "if it was downloaded or copied, get it again"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle with code objects, truncated zip, not a checkpoint
        raise ValueError(
            f"{path} cannot be read as a torch checkpoint with weights_only=True ({_first_line(err)}); "
            "if it was downloaded, delete it and download again"
        ) from None
    sd = _unwrap(obj, str(path))
    if all(k.startswith("module.") for k in sd):  # saved from nn.DataParallel
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def build_network(spec: ModelSpec) -> torch.nn.Module:
    """Build the network of ``spec`` with random weights (call inside ``torch.device("meta")`` for free)."""
    cls = ADMUNet if spec.architecture == "adm" else DDPMUNet
    return cls.from_config(spec.config)


def check_keys(net: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str, n_show: int = 8) -> None:
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k}: {tuple(sd[k].shape)} vs {want[k]}" for k in want if k in sd and tuple(sd[k].shape) != want[k]]
    if missing or unexpected or shapes:

        def show(items: list[str]) -> str:
            return ", ".join(items[:n_show]) + (f", ... ({len(items)} in all)" if len(items) > n_show else "")

        raise ValueError(
            f"{source} does not fit the {type(net).__name__} built from its config: the checkpoint is for a "
            f"different architecture/config. Missing keys ({len(missing)}): {show(missing)}. Unexpected keys "
            f"({len(unexpected)}): {show(unexpected)}. Shape mismatches (checkpoint vs model) "
            f"({len(shapes)}): {show(shapes)}. Check the config JSON or pick the matching zoo name."
        )
