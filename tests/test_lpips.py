"""Tests of deqir_edu.metrics.lpips, all offline: random backbones, the heads of the installed lpips wheel (read as
data), weight files written to tmp dirs, and a local HTTP server on 127.0.0.1 for the download path."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import socket
import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F

import deqir_edu.metrics.lpips as L
from deqir_edu.metrics.lpips import LPIPS

HAS_WHEEL = importlib.util.find_spec("lpips") is not None
needs_wheel = pytest.mark.skipif(not HAS_WHEEL, reason="lpips wheel not installed: pip install --no-deps lpips")

# torchvision's alexnet().features, written out here independently of the module under test
TV_SHAPES = {
    "features.0.weight": (64, 3, 11, 11),
    "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5),
    "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3),
    "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3),
    "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3),
    "features.10.bias": (256,),
}


def images(b: int = 2, c: int = 3, h: int = 32, w: int = 32, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g, dtype=dtype) * 2 - 1
    y = (x + 0.3 * torch.randn(b, c, h, w, generator=g, dtype=dtype)).clamp(-1, 1)
    return x, y


def reference_lpips(x, y, sd: dict, heads: list[torch.Tensor]) -> torch.Tensor:
    """Zhang et al. 2018, Eq. (1), from the raw weights: AlexNet convs, unit-normalised channel vectors,
    squared difference, 1x1 head weights, spatial mean, sum over the 5 layers."""
    # the scaling constants of the lpips package, stored (there and here) as float32
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float32).to(x.dtype).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float32).to(x.dtype).view(1, 3, 1, 1)

    def taps(z):
        z = (z - shift) / scale
        r1 = F.relu(F.conv2d(z, sd["features.0.weight"], sd["features.0.bias"], stride=4, padding=2))
        r2 = F.relu(F.conv2d(F.max_pool2d(r1, 3, 2), sd["features.3.weight"], sd["features.3.bias"], padding=2))
        r3 = F.relu(F.conv2d(F.max_pool2d(r2, 3, 2), sd["features.6.weight"], sd["features.6.bias"], padding=1))
        r4 = F.relu(F.conv2d(r3, sd["features.8.weight"], sd["features.8.bias"], padding=1))
        r5 = F.relu(F.conv2d(r4, sd["features.10.weight"], sd["features.10.bias"], padding=1))
        return [r1, r2, r3, r4, r5]

    total = torch.zeros(x.shape[0], dtype=x.dtype)
    for a, b, w in zip(taps(x), taps(y), heads, strict=False):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        per_pixel = ((a - b) ** 2 * w.view(1, -1, 1, 1)).sum(1)  # (B, H_l, W_l)
        total = total + per_pixel.mean(dim=(1, 2))
    return total


def tv_state(model: LPIPS) -> dict[str, torch.Tensor]:
    """The model's backbone as torchvision saves it (with classifier keys, which must be dropped)."""
    sd = {f"features.{k}": v.clone() for k, v in model.features.state_dict().items()}
    sd["classifier.1.weight"] = torch.zeros(4, 9216)
    sd["classifier.6.bias"] = torch.zeros(1000)
    return sd


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Empty hub dir and deqir-edu cache, a download URL on a closed local port, no cached model."""
    hub, cache = tmp_path / "hub", tmp_path / "cache"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(cache))
    with socket.socket() as s:  # bind to get a free port, then close it: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(L, "BACKBONE_URL", f"http://127.0.0.1:{port}/{L.BACKBONE_FILE}")
    monkeypatch.setattr(L, "_CACHE", {})
    return hub, cache


def test_backbone_layout_matches_torchvision():
    sd = {f"features.{k}": tuple(v.shape) for k, v in LPIPS.random().features.state_dict().items()}
    assert sd == TV_SHAPES


def test_identity_symmetry_shape():
    model = LPIPS.random(seed=1)
    x, y = images(b=3)
    d = model(x, y)
    assert d.shape == (3,) and d.dtype == torch.float32
    assert bool((d > 0).all())
    assert torch.equal(model(x, x), torch.zeros(3))
    assert torch.equal(model(y, x), d)
    assert model(*images(b=1, h=40, w=56)).shape == (1,)  # non-square sizes


def test_grey_is_repeated_to_rgb():
    model = LPIPS.random(seed=2)
    x, y = images(c=1)
    torch.testing.assert_close(model(x, y), model(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


def test_gradient_flows_to_input_not_to_weights():
    model = LPIPS.random(seed=3)
    x, y = images()
    x.requires_grad_(True)
    model(x, y).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("heads", ["random", pytest.param("wheel", marks=needs_wheel)])
def test_agrees_with_reference_formula(heads):
    model = LPIPS.random(seed=4, heads=None if heads == "random" else "auto").double()
    x, y = images(b=2, h=48, w=40, dtype=torch.float64)
    sd = {f"features.{k}": v for k, v in model.features.state_dict().items()}
    ref = reference_lpips(x, y, sd, [h.weight.detach().flatten() for h in model.heads])
    torch.testing.assert_close(model(x, y), ref, rtol=1e-10, atol=1e-12)


@needs_wheel
def test_heads_load_from_installed_wheel():
    path = L.heads_path()
    assert path.parts[-4:] == ("lpips", "weights", "v0.1", "alex.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert sorted(raw) == [f"lin{i}.model.1.weight" for i in range(5)]
    model = LPIPS.random(heads="auto")
    for i, (head, c) in enumerate(zip(model.heads, (64, 192, 384, 256, 256), strict=False)):
        assert tuple(raw[f"lin{i}.model.1.weight"].shape) == (1, c, 1, 1)
        assert torch.equal(head.weight, raw[f"lin{i}.model.1.weight"])
        assert bool((head.weight >= 0).all()) and head.weight.sum() > 0


def test_no_torchvision_or_lpips_import():
    heads = "'auto'" if HAS_WHEEL else "None"
    code = (
        "import sys, torch, deqir_edu; from deqir_edu.metrics.lpips import LPIPS; "
        f"LPIPS.random(heads={heads})(*[torch.zeros(1, 3, 32, 32)] * 2); deqir_edu.metrics.lpips_available(); "
        "bad = [m for m in ('torchvision', 'lpips') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_backbone_error(isolated):
    hub, cache = isolated
    with pytest.raises(FileNotFoundError) as info:
        LPIPS(heads=None)
    msg = str(info.value)
    assert "deqir-edu download lpips-alex" in msg and L.BACKBONE_FILE in msg
    assert str(hub / "checkpoints" / L.BACKBONE_FILE) in msg and str(cache / L.BACKBONE_FILE) in msg
    ok, reason = L.lpips_available()
    assert not ok and "deqir-edu download lpips-alex" in reason
    assert not (cache / L.BACKBONE_FILE).exists()


def test_cli_download_lpips_alex_offline(isolated, capsys):
    from deqir_edu.apps.cli import main

    assert main(["download", "lpips-alex"]) == 2
    err = capsys.readouterr().err
    assert "could not download" in err and "127.0.0.1" in err and L.BACKBONE_FILE in err


@needs_wheel
def test_backbone_from_hub_cache_and_cached_lpips(isolated):
    hub, _ = isolated
    random = LPIPS.random(seed=5, heads="auto")
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(tv_state(random), hub / "checkpoints" / L.BACKBONE_FILE)
    ok, where = L.lpips_available()
    assert ok and str(hub) in where
    assert L.download_backbone() == hub / "checkpoints" / L.BACKBONE_FILE  # no request (URL is dead)
    x, y = images()
    expected = random(x, y)
    torch.testing.assert_close(LPIPS()(x, y), expected)
    torch.testing.assert_close(L.lpips(x, y), expected)
    assert L.lpips(x.double(), y.double()).dtype == torch.float64  # cached model follows the input dtype


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A random AlexNet file served on 127.0.0.1; BACKBONE_URL points at it."""
    root = tmp_path / "www"
    root.mkdir()
    model = LPIPS.random(seed=6)
    torch.save(tv_state(model), root / L.BACKBONE_FILE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(L, "BACKBONE_URL", f"http://127.0.0.1:{server.server_port}/{L.BACKBONE_FILE}")
    yield model, root / L.BACKBONE_FILE
    server.shutdown()
    server.server_close()


def test_download_checks_sha256_prefix(isolated, served, monkeypatch):
    _, cache = isolated
    model, source = served
    from deqir_edu.core.download import file_sha256

    monkeypatch.setattr(L, "BACKBONE_SHA256_PREFIX", "00000000")  # not the served file's hash
    with pytest.raises(ValueError, match="corrupt download"):
        LPIPS(heads=None)
    assert not (cache / L.BACKBONE_FILE).exists()

    monkeypatch.setattr(L, "BACKBONE_SHA256_PREFIX", file_sha256(source)[:8])
    downloaded = LPIPS(heads=None)
    assert (cache / L.BACKBONE_FILE).is_file()
    x, y = images()
    got, want = downloaded.features.state_dict(), model.features.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    model.heads.load_state_dict(downloaded.heads.state_dict())  # heads were random with other seeds
    torch.testing.assert_close(downloaded(x, y), model(x, y))


def test_wrong_files_are_rejected(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, bad)
    with pytest.raises(ValueError, match="missing keys"):
        LPIPS(backbone_weights=bad, heads=None)
    sd = tv_state(LPIPS.random())
    sd["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    torch.save(sd, bad)
    with pytest.raises(ValueError, match="wrong shapes"):
        LPIPS(backbone_weights=bad, heads=None)
    torch.save({f"lin{i}.model.1.weight": torch.zeros(1, 8, 1, 1) for i in range(5)}, bad)
    with pytest.raises(ValueError, match="wrong shapes"):
        LPIPS.random(heads=bad)


@pytest.mark.parametrize(
    "pair, match",
    [
        ((torch.zeros(1, 3, 32, 32), torch.zeros(2, 3, 32, 32)), "same shape"),
        ((torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32)), "channels"),
        ((torch.zeros(3, 32, 32), torch.zeros(3, 32, 32)), "batch dimension"),
        ((torch.full((1, 3, 32, 32), float("nan")), torch.zeros(1, 3, 32, 32)), "NaN"),
        ((torch.zeros(1, 3, 30, 32), torch.zeros(1, 3, 30, 32)), "H, W >= 31"),
    ],
)
def test_bad_inputs(pair, match):
    with pytest.raises(ValueError, match=match):
        LPIPS.random()(*pair)


def test_smallest_size_works():
    assert LPIPS.random()(*images(h=31, w=31)).shape == (2,)
