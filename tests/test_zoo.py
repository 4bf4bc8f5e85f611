"""Tests of deqir_edu.models.zoo (load_model, list_models) and the `models` / `download` commands.

Downloads go to a local HTTP server on 127.0.0.1 serving a tiny ADM checkpoint; nothing touches the internet.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deqir_edu.apps.cli import main
from deqir_edu.core.download import sidecar_path
from deqir_edu.diffusion import alphas_cumprod, linear_betas
from deqir_edu.models import DiffusionModel, zoo
from deqir_edu.models.networks import ADMUNet, DDPMUNet

FIXTURES = Path(__file__).parent / "fixtures"
TINY_ADM = {  # 8 x 8 images, two levels, attention at 4 x 4, learn_sigma: 6 output channels
    "image_size": 8,
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": "1,2",
    "attention_resolutions": "4",
    "num_head_channels": 16,
    "learn_sigma": True,
    "resblock_updown": True,
    "use_scale_shift_norm": True,
}
TINY_DDPM = {
    "type": "simple",
    "ch": 32,
    "ch_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [4],
    "image_size": 8,
    "in_channels": 3,
    "out_ch": 3,
    "resamp_with_conv": True,
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DEQIR_EDU_DATA", str(tmp_path / "data"))


def _tiny(cls: type, cfg: dict, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = cls.from_config(cfg).eval()
    with torch.no_grad():  # ADM zero-initialises its output layers: give every tensor a value
        for p in net.parameters():
            p.copy_(0.05 * torch.randn_like(p))
    return net


def _pt_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _register(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server, body: bytes, cfg: dict, arch: str) -> str:
    """Add zoo entry "tiny-adm" whose file the local server serves; return its name."""
    config = tmp_path / "tiny_config.json"
    config.write_text(json.dumps({"architecture": arch, "image_shape": [3, 8, 8], "config": cfg}))
    server.files["/tiny.pt"] = body
    entry = zoo.ZooEntry(
        "tiny-adm", "tiny test model", arch, "tiny.pt", str(config), url=server.url("/tiny.pt"), size=len(body)
    )
    monkeypatch.setitem(zoo.ZOO, entry.name, entry)
    return entry.name


def _inputs(c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([3, 900])


def test_load_model_downloads_caches_and_matches_network(server, tmp_path, monkeypatch) -> None:
    net = _tiny(ADMUNet, TINY_ADM)
    name = _register(monkeypatch, tmp_path, server, _pt_bytes(net.state_dict()), TINY_ADM, "adm")
    model = zoo.load_model(name, progress=False)
    assert isinstance(model, DiffusionModel) and not model.training and model.image_shape == (3, 8, 8)
    assert model.learn_sigma and model.alphas_cumprod.dtype == torch.float64 and model.alphas_cumprod.shape == (1000,)
    assert not any(p.requires_grad for p in model.parameters())
    x, t = _inputs()
    with torch.no_grad():
        eps, ref = model(x, t), net(x, t)[:, :3]  # eps = first 3 of the 6 output channels
    assert float(ref.abs().max()) > 1e-2
    torch.testing.assert_close(eps, ref, rtol=0, atol=1e-6)
    cached = tmp_path / "cache" / "models" / "tiny.pt"
    assert cached.is_file() and sidecar_path(cached).is_file() and server.hits["/tiny.pt"] == 1

    again = zoo.load_model(name, dtype=torch.bfloat16, progress=False)  # cache hit, other dtype
    assert server.hits["/tiny.pt"] == 1
    assert again.dtype == torch.bfloat16
    with torch.no_grad():
        eps16 = again(x, t)
    assert eps16.dtype == torch.float32 and (eps16 - ref).abs().max() < 0.1


def test_changed_cached_file_is_refused(server, tmp_path, monkeypatch) -> None:
    net = _tiny(ADMUNet, TINY_ADM)
    name = _register(monkeypatch, tmp_path, server, _pt_bytes(net.state_dict()), TINY_ADM, "adm")
    path = zoo.fetch(name, progress=False)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        zoo.load_model(name, progress=False)


def test_wrong_architecture_lists_missing_and_unexpected_keys(server, tmp_path, monkeypatch) -> None:
    ddpm = _tiny(DDPMUNet, TINY_DDPM)  # served under an ADM entry
    name = _register(monkeypatch, tmp_path, server, _pt_bytes(ddpm.state_dict()), TINY_ADM, "adm")
    with pytest.raises(ValueError, match="different architecture/config") as err:
        zoo.load_model(name, progress=False)
    msg = str(err.value)
    assert "Missing keys" in msg and "Unexpected keys" in msg and "nothing was saved" in msg
    entry = zoo.ZOO[name]  # refused before the rename and before any hash is recorded
    assert not entry.path.exists() and not sidecar_path(entry.path).exists()


def test_wrong_config_lists_shape_mismatches(tmp_path) -> None:
    path = tmp_path / "adm32.pt"
    torch.save(_tiny(ADMUNet, TINY_ADM).state_dict(), path)
    wider = {**TINY_ADM, "num_channels": 64}
    with pytest.raises(ValueError, match="Shape mismatches") as err:
        zoo.load_model(path, config={"architecture": "adm", "config": wider})
    assert "time_embed.0.weight" in str(err.value)


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_reference_checkpoints_load_from_path_in_original_formats(tmp_path, key) -> None:
    """The tiny reference networks of the original code, saved the way real checkpoints are saved."""
    ref = torch.load(FIXTURES / "unet_reference_outputs.pt", weights_only=True)[key]
    if key == "adm":  # .pt nested under "state_dict" with nn.DataParallel's "module." prefix, bare flags
        path = tmp_path / "ref.pt"
        torch.save({"state_dict": {"module." + k: v for k, v in ref["state_dict"].items()}, "step": 5}, path)
        (tmp_path / "ref.json").write_text(json.dumps(ref["config"]))
    else:  # DDIM training list [model, optimizer, epoch, step, ema]: the EMA (last) weights are the ones used
        path = tmp_path / "ref.ckpt"
        raw = {k: torch.zeros_like(v) for k, v in ref["state_dict"].items()}
        torch.save([raw, {"state": {}, "param_groups": []}, 1, 2, ref["state_dict"]], path)
        (tmp_path / "ref.json").write_text(json.dumps({"architecture": "ddpm", "config": ref["config"]}))
    model = zoo.load_model(str(path))
    assert model.image_shape == (3, 32, 32)
    with torch.no_grad():
        eps = model(ref["x"], ref["t"])
    torch.testing.assert_close(eps, ref["out"][:, :3], rtol=0, atol=1e-5)


def test_embedded_model_from_safetensors(tmp_path) -> None:
    models = tmp_path / "data" / "models"
    with pytest.raises(FileNotFoundError, match="fashion32.safetensors"):
        zoo.load_model("fashion32")
    cfg = {**TINY_ADM, "in_channels": 1, "learn_sigma": False}
    net = _tiny(ADMUNet, cfg)
    models.mkdir(parents=True)
    save_file(net.state_dict(), str(models / "fashion32.safetensors"))
    train_cfg = {
        "name": "fashion32",
        "model": cfg,
        "data": {"kind": "fashion_mnist"},
        "steps": 3,
        "schedule": {"n_train": 1000, "beta_start": 1e-4, "beta_end": 0.02},
    }
    # the JSON deqir_edu.training writes next to the weights: {"config": training config, "run": summary}
    (models / "fashion32.json").write_text(json.dumps({"config": train_cfg, "run": {"loss": 0.1}}))
    model = zoo.load_model("fashion32")
    assert model.image_shape == (1, 8, 8) and not model.learn_sigma
    x, t = _inputs(c=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), net(x, t), rtol=0, atol=1e-6)
    row = next(r for r in zoo.list_models() if r["name"] == "fashion32")
    assert row["available"] and row["status"] == "present"
    assert row["size"] == (models / "fashion32.safetensors").stat().st_size


def test_embedded_config_from_safetensors_metadata(tmp_path) -> None:
    """Without a JSON next to it, the config stored in the weights' metadata is used, schedule included."""
    cfg = {**TINY_ADM, "learn_sigma": False}
    net = _tiny(ADMUNet, cfg)
    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    meta = {"config": json.dumps({"name": "photo32", "model": cfg, "schedule": {"n_train": 500, "beta_end": 0.03}})}
    save_file(net.state_dict(), str(models / "photo32.safetensors"), metadata=meta)
    model = zoo.load_model("photo32")
    assert model.image_shape == (3, 8, 8)
    torch.testing.assert_close(model.alphas_cumprod, alphas_cumprod(linear_betas(500, 1e-4, 0.03)), rtol=0, atol=0)
    x, t = _inputs()[0], torch.tensor([3, 499])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), net(x, t), rtol=0, atol=1e-6)


def test_google_drive_entry_gives_link_and_path(tmp_path) -> None:
    target = tmp_path / "cache" / "models" / "celeba256_250000.pt"
    with pytest.raises(FileNotFoundError) as err:
        zoo.load_model("adm-celebahq256")
    msg = str(err.value)
    assert "https://drive.google.com/uc?id=1norNWWGYP3EZ_o05DmoW1ryKuKMmhlCX" in msg and str(target) in msg
    target.parent.mkdir(parents=True)
    target.write_bytes(b"placed by hand")  # not a checkpoint: refused, and no hash is recorded for it
    with pytest.raises(ValueError, match="cannot be read as a torch checkpoint"):
        zoo.fetch("adm-celebahq256")
    assert not sidecar_path(target).exists()


def test_unknown_name_lists_the_zoo() -> None:
    with pytest.raises(ValueError, match="unknown model 'nope'") as err:
        zoo.load_model("nope")
    for name in ("adm-imagenet256", "adm-celebahq256", "ddpm-celebahq256", "fashion32", "photo32"):
        assert name in str(err.value)


def test_non_weights_only_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": argparse.Namespace(a=1)}, path)  # needs arbitrary unpickling
    (tmp_path / "pickled.json").write_text(json.dumps({"architecture": "adm", "config": TINY_ADM}))
    with pytest.raises(ValueError, match="weights_only=True"):
        zoo.load_model(path)


def test_path_without_config_explains_the_json(tmp_path) -> None:
    path = tmp_path / "lonely.pt"
    torch.save(_tiny(ADMUNet, TINY_ADM).state_dict(), path)
    with pytest.raises(ValueError, match="lonely.json"):
        zoo.load_model(path)
    # a zoo file name placed anywhere by hand gets the zoo's config (here: the full CelebA-HQ DDPM)
    named = tmp_path / "celeba_hq.ckpt"
    torch.save(_tiny(DDPMUNet, TINY_DDPM).state_dict(), named)
    with pytest.raises(ValueError, match=r"conv_in.weight: \(32, 3, 3, 3\) vs \(128, 3, 3, 3\)"):
        zoo.load_model(named)


@pytest.mark.parametrize(
    ("name", "manifest"),
    [
        ("adm-imagenet256", "adm_imagenet256_uncond.json"),
        ("adm-celebahq256", "adm_celebahq256_repaint.json"),
        ("ddpm-celebahq256", "ddpm_celebahq256_sdedit.json"),
    ],
)
def test_zoo_configs_build_the_manifest_networks(name: str, manifest: str) -> None:
    """The packaged configs give networks whose state dicts are exactly those of the real checkpoints."""
    ref = json.loads((FIXTURES / "manifests" / manifest).read_text())
    spec = zoo.ZOO[name].spec()
    assert spec.config == ref["config"] and spec.image_shape == (3, 256, 256)
    with torch.device("meta"):
        net = zoo.build_network(spec)
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == ref["params"]
    assert sum(p.numel() for p in net.parameters()) == ref["n_params"]
    assert spec.learn_sigma == (name.startswith("adm"))


def test_list_models_and_cli(server, tmp_path, monkeypatch, capsys) -> None:
    rows = {r["name"]: r for r in zoo.list_models()}
    assert {"adm-imagenet256", "adm-celebahq256", "ddpm-celebahq256", "fashion32", "photo32"} <= set(rows)
    assert rows["ddpm-celebahq256"]["status"] == "not downloaded" and not rows["ddpm-celebahq256"]["available"]
    assert rows["adm-celebahq256"]["status"] == "manual download"

    name = _register(monkeypatch, tmp_path, server, _pt_bytes(_tiny(ADMUNet, TINY_ADM).state_dict()), TINY_ADM, "adm")
    assert main(["download", name, "--no-progress"]) == 0
    assert server.hits["/tiny.pt"] == 1 and (tmp_path / "cache" / "models" / "tiny.pt").is_file()
    assert capsys.readouterr().out.strip() == f"tiny-adm: {tmp_path / 'cache' / 'models' / 'tiny.pt'}"
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("tiny-adm"))
    assert "cached" in line and "MiB" in line
    assert "ddpm-celebahq256" in out and "not downloaded" in out

    assert main(["download", "nope"]) == 2
    assert main(["download", "adm-celebahq256"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "drive.google.com/uc?id=" in err

    # `download lpips-alex` goes to the LPIPS backbone fetcher (here: local bytes that fail its sha256 check)
    server.files["/alexnet.pth"] = b"not alexnet"
    monkeypatch.setattr("deqir_edu.metrics.lpips.BACKBONE_URL", server.url("/alexnet.pth"))
    assert main(["download", "lpips-alex"]) == 2
    assert server.hits["/alexnet.pth"] == 1 and "corrupt download" in capsys.readouterr().err
