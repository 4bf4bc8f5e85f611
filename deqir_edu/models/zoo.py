"""Model zoo: the paper's pretrained diffusion networks and the package's own small models.

``load_model(name_or_path)`` returns an eps-model ``model(x_t, t) -> eps`` (a ``DiffusionModel``
in eval mode) that every sampler takes, whichever network is inside.

Names (``list_models()`` shows them and what is on disk)

    adm-imagenet256   ADM UNet, ImageNet 256, unconditional (guided-diffusion), downloaded
    adm-celebahq256   ADM UNet, CelebA-HQ 256 (RePaint), on Google Drive only: put it in the cache by hand
    ddpm-celebahq256  "simple" DDPM UNet, CelebA-HQ 256 (SDEdit; what DDNM and DeqIR load), downloaded
    fashion32         embedded: 1 x 32 x 32 Fashion-MNIST model shipped in data/models/
    photo32           embedded: 3 x 32 x 32 photo-patch model shipped in data/models/

Building a network from a config (``ModelSpec``: architecture, flags, image shape, learn_sigma, schedule)
and loading a checked state dict: ``checkpoints.py``.

Model-config JSON (``deqir_edu/models/configs/*.json``, ``data/models/<name>.json``, or next to a user's
checkpoint ``foo.pt`` as ``foo.json``)::

    {"architecture": "adm", "image_shape": [3, 256, 256], "learn_sigma": true, "config": {...flags...}}

A bare flag dict also works (the architecture is then guessed from the flag names), and so do the
``{name}.json`` that ``deqir_edu.training`` writes next to its weights (flags under "config" ->
"model") and the config it stores in the ``.safetensors`` metadata.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..core.checks import check_device
from ..core.download import cache_dir, download, file_sha256, sidecar_path, verify
from ..core.paths import data_dir
from ..diffusion.schedules import alphas_cumprod, linear_betas
from .checkpoints import ModelSpec, build_network, check_keys, load_state_dict, parse_spec, read_spec
from .wrappers import DiffusionModel

__all__ = [
    "ZooEntry",
    "ModelSpec",
    "ZOO",
    "list_models",
    "wrap_network",
    "fetch",
    "load_model",
    "load_state_dict",
    "parse_spec",
    "build_network",
]

_CONFIGS = Path(__file__).resolve().parent / "configs"
_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


@dataclass(frozen=True)
class ZooEntry:
    """One named model.  Exactly one of ``url``, ``gdrive_id``, ``embedded`` says where its weights come from."""

    name: str
    description: str
    architecture: str
    filename: str
    config_file: (
        str  # model-config JSON: name in deqir_edu/models/configs/ (data/models/ if embedded), or an absolute path
    )
    url: str | None = None
    gdrive_id: str | None = None
    embedded: bool = False
    size: int | None = None  # expected bytes, None if not known
    sha256: str | None = None  # expected hash; None: recorded after the first download passed the structure check

    @property
    def path(self) -> Path:
        """Where the weights are (embedded) or go (downloaded)."""
        return data_dir() / "models" / self.filename if self.embedded else cache_dir() / "models" / self.filename

    @property
    def config_path(self) -> Path:
        return data_dir() / "models" / self.config_file if self.embedded else _CONFIGS / self.config_file

    @property
    def manual_url(self) -> str | None:
        return f"https://drive.google.com/uc?id={self.gdrive_id}" if self.gdrive_id else self.url

    def spec(self) -> ModelSpec:
        if self.embedded:  # the JSON the trainer writes next to the weights, else the weights' metadata
            return _find_spec(self.path, self.config_path if self.config_path.is_file() else None)
        if not self.config_path.is_file():
            raise FileNotFoundError(f"config of model {self.name!r} not found at {self.config_path}")
        return read_spec(self.config_path)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "adm-imagenet256",
            "ADM UNet, ImageNet 256 unconditional (guided-diffusion), 553 M params",
            "adm",
            "256x256_diffusion_uncond.pt",
            "adm_imagenet256.json",
            url="https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt",
        ),
        ZooEntry(
            "adm-celebahq256",
            "ADM UNet, CelebA-HQ 256 (RePaint), 553 M params; Google Drive",
            "adm",
            "celeba256_250000.pt",
            "adm_celebahq256.json",
            gdrive_id="1norNWWGYP3EZ_o05DmoW1ryKuKMmhlCX",
        ),
        ZooEntry(
            "ddpm-celebahq256",
            "DDPM UNet, CelebA-HQ 256 (SDEdit; used by DDNM/DeqIR), 114 M params",
            "ddpm",
            "celeba_hq.ckpt",
            "ddpm_celebahq256.json",
            url="https://image-editing-test-12345.s3-us-west-2.amazonaws.com/checkpoints/celeba_hq.ckpt",
        ),
        ZooEntry(
            "fashion32",
            "embedded ADM, Fashion-MNIST 1x32x32 (trained by deqir-edu)",
            "adm",
            "fashion32.safetensors",
            "fashion32.json",
            embedded=True,
            size=7715076,
            sha256="9142dcb2d23bafd2aaf5ae6159803574051531aea164183a6110c07ab9fb2155",
        ),
        ZooEntry(
            "photo32",
            "embedded ADM, colour photo patches 3x32x32 (trained by deqir-edu)",
            "adm",
            "photo32.safetensors",
            "photo32.json",
            embedded=True,
            size=7720044,
            sha256="f0de63f53a36bc8545040437e3f6a4c373bb55238bc4804b80c348f441d86d52",
        ),
    ]
}


def _entry(name: str) -> ZooEntry:
    if name not in ZOO:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(ZOO)}; or pass the path of a "
            f"checkpoint file ({', '.join(_WEIGHT_SUFFIXES)}) with a config JSON next to it"
        )
    return ZOO[name]


def list_models() -> list[dict[str, Any]]:
    """One row per zoo model: name, architecture, description, available (bool), status, size (bytes), path."""
    rows = []
    for e in ZOO.values():
        there = e.path.is_file()
        problem = _damage(e) if there else None
        if problem:
            status = "damaged" if e.embedded else "incomplete"
        elif e.embedded:
            status = "present" if there else "missing (not trained yet)"
        elif there:
            status = "cached"
        else:
            status = "manual download" if e.gdrive_id else "not downloaded"
        size = e.path.stat().st_size if there else e.size
        fix = _reinstall(e.name) if e.embedded else f"`{_reset(e.name)}`"
        rows.append(
            dict(
                name=e.name,
                architecture=e.architecture,
                description=e.description,
                available=there and not problem,
                status=status,
                size=size,
                path=str(e.path),
                problem=f"{e.path} is {problem}: {fix}" if problem else None,
            )
        )
    return rows


def _reinstall(name: str) -> str:
    if os.environ.get("DEQIR_EDU_DATA"):
        return f"copy the file again into DEQIR_EDU_DATA, or retrain it (`deqir-edu train {name}`)"
    return "reinstall deqir-edu (`pip install --force-reinstall deqir-edu`) or `git checkout -- data/models`"


def _damage(e: ZooEntry) -> str | None:
    """Why the weights file of ``e``, which exists, cannot be the model (empty, cut short, unreadable), or None."""
    try:
        size = e.path.stat().st_size
        with open(e.path, "rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if size == 0:
        return "empty (0 bytes)"
    if e.path.suffix == ".safetensors" and (len(head) < 8 or size < 8 + int.from_bytes(head, "little")):
        return f"incomplete ({size:,} bytes, less than its header announces)"
    if e.size is not None and size != e.size and not (e.embedded and os.environ.get("DEQIR_EDU_DATA")):
        return f"incomplete ({size:,} bytes, expected {e.size:,})"
    return None


def _check_embedded(e: ZooEntry) -> Path:
    """The shipped weights must be the released bytes (sha256, a few ms); another data folder
    (``$DEQIR_EDU_DATA``, e.g. retrained models) is the user's own and is not checked."""
    if os.environ.get("DEQIR_EDU_DATA") or e.sha256 is None:
        return e.path
    actual = file_sha256(e.path)
    if actual != e.sha256:
        raise ValueError(
            f"the embedded weights {e.path} are damaged (sha256 {actual[:16]}..., expected {e.sha256[:16]}...; "
            f"{e.path.stat().st_size} bytes, expected {e.size}); reinstall deqir-edu "
            "(`pip install --force-reinstall deqir-edu`) or restore the file with `git checkout -- data/models`"
        )
    return e.path


def _structure_check(e: ZooEntry):
    """``validate(path)`` for a download without a published hash: the file must parse (weights_only)
    as a state dict with exactly the names and shapes of the network built from the entry's config."""

    def validate(path: Path) -> None:
        sd = load_state_dict(path)
        with torch.device("meta"):
            net = build_network(e.spec())
        check_keys(net, sd, f"{e.name} ({path.name})", n_show=3)

    return validate


def _reset(name: str) -> str:
    return f"deqir-edu download {name} --force"


def fetch(name: str, progress: bool = True, force: bool = False) -> Path:
    """Make sure the weights of zoo model ``name`` are on disk (download if needed); return their path.

    ``force``: download again, ignoring the recorded hash (the reset after a mismatch); the cached file and
    its hash are replaced only by a complete, checked download (an unreachable server leaves them); for a
    model placed by hand (Google Drive) the recorded hash is dropped and the file checked afresh.
    Embedded weights are checked against their sha256 on every load.
    """
    e = _entry(name)
    if e.embedded:
        if not e.path.is_file():
            raise FileNotFoundError(
                f"the weights of the embedded model {name!r} are not at {e.path}; they are trained with "
                f"`deqir-edu train` (see data/models/README.md), or set DEQIR_EDU_DATA to the data folder "
                "that holds models/"
            )
        return _check_embedded(e)
    if e.gdrive_id is not None:
        if force:  # a file put there by hand again: check it afresh and record its hash
            sidecar_path(e.path).unlink(missing_ok=True)
        if not e.path.is_file():
            raise FileNotFoundError(
                f"model {name!r} is hosted only on Google Drive (no direct download URL). "
                f"Download {e.filename} in a browser from {e.manual_url} and put it at {e.path} "
                f"(then run again; it is checked against the network's manifest and its sha256 recorded)"
            )
        return verify(e.path, e.sha256, e.size, validate=_structure_check(e))
    assert e.url is not None
    return download(
        e.url,
        e.path,
        sha256=e.sha256,
        size=e.size,
        progress=progress,
        validate=_structure_check(e),
        reset=_reset(name),
        force=force,
    )


def _find_spec(path: Path, config: Mapping[str, Any] | str | Path | None) -> ModelSpec:
    if isinstance(config, Mapping):
        return parse_spec(config, "config argument")
    if config is not None:
        return read_spec(config)
    for cand in (path.with_suffix(".json"), path.with_name(path.stem + ".config.json"), path.with_name("config.json")):
        if cand.is_file():
            return read_spec(cand)
    if path.suffix == ".safetensors":  # deqir_edu.training stores its config in the metadata too
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError) as err:
            raise ValueError(
                f"{path} is not a readable .safetensors file ({str(err).splitlines()[0][:120]}); "
                "if it was downloaded or copied, get it again"
            ) from None
        if "config" in meta:
            return read_spec(f"metadata of {path}", meta["config"])
    for e in ZOO.values():  # a zoo file placed anywhere by hand
        if e.filename == path.name and not e.embedded:
            return e.spec()
    raise ValueError(
        f"no config found for {path}: write a JSON file {path.with_suffix('.json')} like "
        '{"architecture": "adm", "image_shape": [3, 256, 256], "config": {...flags...}} '
        "or pass config=..."
    )


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    config: Mapping[str, Any] | str | Path | None = None,
    progress: bool = True,
) -> DiffusionModel:
    """Load a zoo model by name, or a checkpoint file by path, as an eps-model in eval mode.

    A path takes a ``.pt``/``.ckpt`` (``torch.load(weights_only=True)``; a state dict, possibly
    nested under "state_dict"/"model"/"ema" or a DDIM training list, "module." prefixes removed) or a
    ``.safetensors``, with its model-config JSON next to it (``foo.json``) or given as ``config``.
    A zoo name is downloaded on first use (cached, sha256-checked on every load).  The state dict must
    match the network exactly (strict load; otherwise a ``ValueError`` lists missing and unexpected
    keys).  Returns a ``DiffusionModel``: ``model(x_t (B, C, H, W), t (B,)) -> eps (B, C, H, W)``,
    with ``model.image_shape`` and ``model.alphas_cumprod``; its parameters do not require grad.
    """
    check_device(device)  # a missing GPU is one clear line before any loading
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(
            "dtype must be a floating-point torch.dtype (torch.float32, torch.bfloat16, torch.float16 or "
            f"torch.float64), got {dtype!r}"
        )
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or (
        text not in ZOO and (Path(text).suffix in _WEIGHT_SUFFIXES or os.sep in text or Path(text).is_file())
    )
    if is_path:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file {path} does not exist")
        spec = _find_spec(path, config)
    else:
        entry = _entry(str(name_or_path))
        path = fetch(entry.name, progress=progress)
        spec = parse_spec(config, "config argument") if isinstance(config, Mapping) else entry.spec()
    sd = load_state_dict(path)
    with torch.device("meta"):  # no memory, no random init: the checkpoint supplies every tensor
        net = build_network(spec)
    check_keys(net, sd, str(path))
    net.load_state_dict(sd, strict=True, assign=True)
    if any(t.is_meta for t in [*net.parameters(), *net.buffers()]):  # non-persistent buffers: build for real
        net = build_network(spec)
        net.load_state_dict(sd, strict=True)
    net = net.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return wrap_network(net, spec)


def wrap_network(net: torch.nn.Module, spec: ModelSpec) -> DiffusionModel:
    """The network as an eval-mode ``DiffusionModel`` with the schedule and image shape of ``spec``."""
    abar = alphas_cumprod(linear_betas(*spec.schedule))  # Eq. (2), float64 (1000,)
    model = DiffusionModel(net, image_shape=spec.image_shape, alphas_cumprod=abar)
    model.default_eta, model.default_clip = spec.eta, spec.clip  # the config's "sampling" (sampling_defaults)
    if model.learn_sigma != spec.learn_sigma:
        raise ValueError(
            f"the config says learn_sigma={spec.learn_sigma} but the network outputs "
            f"{getattr(net, 'out_channels', '?')} channels for {spec.image_shape[0]} image channels; fix the config"
        )
    return model.eval()
