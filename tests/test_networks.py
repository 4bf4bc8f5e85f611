"""Tests of deqir_edu.models.networks (ADM and "simple" DDPM UNets) and deqir_edu.models.DiffusionModel."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from deqir_edu.diffusion import alphas_cumprod, linear_betas
from deqir_edu.models import DiffusionModel
from deqir_edu.models.networks import ADMUNet, DDPMUNet
from deqir_edu.models.networks.adm import AttentionBlock

FIXTURES = Path(__file__).parent / "fixtures"
CLASSES = {"adm": ADMUNet, "ddpm_simple": DDPMUNet}
MANIFESTS = {
    "adm_imagenet256_uncond.json": ADMUNet,
    "adm_celebahq256_repaint.json": ADMUNet,
    "ddpm_celebahq256_sdedit.json": DDPMUNet,
}


@pytest.fixture(scope="module")
def reference() -> dict:
    return torch.load(FIXTURES / "unet_reference_outputs.pt", weights_only=True)


def _loaded(reference: dict, key: str) -> torch.nn.Module:
    entry = reference[key]
    net = CLASSES[key].from_config(entry["config"]).eval()
    net.load_state_dict(entry["state_dict"], strict=True)
    return net


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_reference_outputs_reproduced(reference: dict, key: str) -> None:
    entry = reference[key]
    net = _loaded(reference, key)
    with torch.no_grad():
        out = net(entry["x"], entry["t"])
        out_float_t = net(entry["x"], entry["t"].float())
    assert out.shape == entry["out"].shape
    assert float(entry["out"].abs().max()) > 1e-2  # the reference is not trivially zero
    torch.testing.assert_close(out, entry["out"], rtol=0, atol=1e-5)
    torch.testing.assert_close(out_float_t, out, rtol=0, atol=1e-6)


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_timesteps_matter(reference: dict, key: str) -> None:
    entry = reference[key]
    net = _loaded(reference, key)
    x = entry["x"][:1].expand(2, -1, -1, -1)
    with torch.no_grad():
        out = net(x, torch.tensor([0, 999]))
        out_scalar = net(x, 999)
    assert (out[0] - out[1]).abs().max() > 1e-4
    torch.testing.assert_close(out_scalar[0], out[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_full_config_matches_manifest(name: str) -> None:
    manifest = json.loads((FIXTURES / "manifests" / name).read_text())
    with torch.device("meta"):
        net = MANIFESTS[name].from_config(manifest["config"])
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert list(shapes) == list(manifest["params"])  # same names in the same order
    assert shapes == manifest["params"]
    assert sum(p.numel() for p in net.parameters()) == manifest["n_params"]


def test_strict_load_rejects_other_architecture(reference: dict) -> None:
    net = DDPMUNet.from_config(reference["ddpm_simple"]["config"])
    with pytest.raises(RuntimeError, match="Missing key"):
        net.load_state_dict(reference["adm"]["state_dict"], strict=True)


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_bfloat16_close_to_float32(reference: dict, key: str) -> None:
    entry = reference[key]
    net = _loaded(reference, key)
    with torch.no_grad():
        ref = net(entry["x"], entry["t"])
        half = copy.deepcopy(net).to(torch.bfloat16)(entry["x"], entry["t"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = net(entry["x"], entry["t"])
    assert half.dtype == torch.bfloat16
    for out in (half.float(), auto.float()):
        assert torch.isfinite(out).all()
        assert float((out - ref).norm() / ref.norm()) < 0.05


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_wrong_input_raises(reference: dict, key: str) -> None:
    net = _loaded(reference, key)
    with pytest.raises(ValueError, match="input channels"):
        net(torch.zeros(1, 1, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="divisible by 4"):
        net(torch.zeros(1, 3, 30, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.zeros(3, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="timesteps"):
        net(torch.zeros(2, 3, 32, 32), torch.tensor([0, 1, 2]))


def test_adm_small_grey_config_any_channel_mult() -> None:
    torch.manual_seed(0)
    cfg = dict(
        image_size=32,
        in_channels=1,
        num_channels=32,
        num_res_blocks=1,
        channel_mult=(1, 2),
        attention_resolutions="16",
        num_head_channels=32,
        learn_sigma=True,
        resblock_updown=False,
        use_scale_shift_norm=False,
        dropout=0.1,
        diffusion_steps=1000,
    )
    net = ADMUNet.from_config(cfg).eval()
    attn = [m for m in net.modules() if isinstance(m, AttentionBlock)]
    # attention at resolution 16 = rate 2: one encoder block, the middle, two decoder blocks
    assert len(attn) == 4 and all(a.num_heads == 2 for a in attn)
    out = net(torch.randn(2, 1, 32, 32), torch.tensor([1, 2]))
    assert out.shape == (2, 2, 32, 32)


def test_adm_new_attention_order_is_a_permutation_of_legacy(reference: dict) -> None:
    cfg = reference["adm"]["config"]
    legacy = _loaded(reference, "adm")
    new = ADMUNet.from_config({**cfg, "use_new_attention_order": True}).eval()
    sd = dict(reference["adm"]["state_dict"])
    for name, module in legacy.named_modules():
        if isinstance(module, AttentionBlock):  # rows [head][qkv][d] -> [qkv][head][d]
            h, c = module.num_heads, module.qkv.out_channels // 3
            for p in ("weight", "bias"):
                w = sd[f"{name}.qkv.{p}"]
                sd[f"{name}.qkv.{p}"] = w.reshape(h, 3, c // h, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
    new.load_state_dict(sd, strict=True)
    x, t = reference["adm"]["x"], reference["adm"]["t"]
    with torch.no_grad():
        torch.testing.assert_close(new(x, t), legacy(x, t), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"class_cond": True}, "class_cond"),
        ({"num_chanels": 64}, "unknown ADM config"),
        ({"image_size": 48, "channel_mult": ""}, "no default channel_mult"),
        ({"attention_resolutions": "7"}, "does not divide"),
        ({"num_channels": 48}, "multiple of 32"),
    ],
)
def test_adm_bad_config_raises(reference: dict, bad: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ADMUNet.from_config({**reference["adm"]["config"], **bad})


def test_adm_norm_groups_same_parameters_and_keeps_the_channel_means() -> None:
    """``norm_groups`` (our flag, 32 in ADM) changes no parameter; with one channel per group the last
    GroupNorm's per-channel spatial means are its bias beta whatever the input, with 8 groups they are not."""
    torch.manual_seed(0)
    cfg = dict(
        image_size=32,
        in_channels=3,
        num_channels=32,
        num_res_blocks=1,
        channel_mult="1,2",
        attention_resolutions="16",
        num_head_channels=32,
        resblock_updown=True,
    )
    ref, g8 = ADMUNet.from_config(cfg).eval(), ADMUNet.from_config({**cfg, "norm_groups": 8}).eval()
    g8.load_state_dict(ref.state_dict(), strict=True)
    assert {m.num_groups for m in g8.modules() if isinstance(m, torch.nn.GroupNorm)} == {8}
    r = torch.randn(1, 32, 8, 8)
    h = torch.cat([r, r + torch.linspace(-1, 1, 32).view(1, 32, 1, 1)])  # same pattern, other channel means
    with torch.no_grad():
        means_ref, means_g8 = ref.out[0](h).mean(dim=(2, 3)), g8.out[0](h).mean(dim=(2, 3))  # (2, 32)
    torch.testing.assert_close(means_ref[0], means_ref[1], rtol=0, atol=1e-5)  # the input's DC is gone
    assert float((means_g8[0] - means_g8[1]).abs().max()) > 0.1
    with pytest.raises(ValueError, match="norm_groups must divide 32"):
        ADMUNet.from_config({**cfg, "norm_groups": 5})


def test_adm_default_channel_mult_for_image_size() -> None:
    with torch.device("meta"):
        net = ADMUNet.from_config(dict(image_size=64, num_channels=64, num_res_blocks=1))
    assert net.downsample_factor == 8  # (1, 2, 3, 4): four levels


def test_ddpm_bad_config_raises(reference: dict) -> None:
    cfg = reference["ddpm_simple"]["config"]
    with pytest.raises(ValueError, match="unknown DDPM config"):
        DDPMUNet.from_config({**cfg, "chmult": [1, 2]})
    with pytest.raises(ValueError, match="resolution"):
        DDPMUNet.from_config({k: v for k, v in cfg.items() if k != "image_size"})


@pytest.mark.parametrize("key", ["adm", "ddpm_simple"])
def test_diffusion_model_returns_eps(reference: dict, key: str) -> None:
    entry = reference[key]
    net = _loaded(reference, key)
    model = DiffusionModel(net)
    assert model.image_shape == (3, 32, 32)
    assert model.alphas_cumprod.dtype == torch.float64 and model.alphas_cumprod.shape == (1000,)
    torch.testing.assert_close(model.alphas_cumprod, alphas_cumprod(linear_betas(1000, 1e-4, 0.02)))
    with torch.no_grad():
        eps = model(entry["x"], entry["t"])
        eps64 = model(entry["x"].double(), entry["t"])
    assert eps.shape == (3, 3, 32, 32) and eps.dtype == torch.float32 and eps64.dtype == torch.float64
    torch.testing.assert_close(eps, entry["out"][:, :3], rtol=0, atol=1e-5)
    assert model.learn_sigma == (key == "adm")


def test_diffusion_model_dtypes_and_errors(reference: dict) -> None:
    entry = reference["adm"]
    net = _loaded(reference, "adm")
    with torch.no_grad():
        ref = net(entry["x"], entry["t"])[:, :3]
        eps_half = DiffusionModel(copy.deepcopy(net).to(torch.bfloat16))(entry["x"], entry["t"])
        eps_auto = DiffusionModel(net, autocast_dtype=torch.bfloat16)(entry["x"], entry["t"])
    for eps in (eps_half, eps_auto):
        assert eps.dtype == torch.float32
        assert float((eps - ref).norm() / ref.norm()) < 0.05
    model = DiffusionModel(net)
    with pytest.raises(ValueError, match="channels"):
        model(torch.zeros(1, 1, 32, 32), torch.tensor([0]))
    with pytest.raises(ValueError, match="spatial size"):
        model(torch.zeros(1, 3, 16, 16), torch.tensor([0]))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 3, 32, 32), float("nan")), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        model(torch.zeros(1, 3, 32, 32), torch.tensor([1000]))
    with pytest.raises(ValueError, match="outputs 6 channels"):
        DiffusionModel(net, image_shape=(1, 32, 32))
