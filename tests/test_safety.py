"""Users' files are safe: atomic writes, no overwritten inputs or runs, images as people have them,
bounded memory, checked downloads and weights, and one clear line (exit 2) for every bad input."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from deqir_edu.apps.cli import main
from deqir_edu.apps.images import load_image, load_mask, save_image
from deqir_edu.apps.restore_cmd import save_image_checked
from deqir_edu.apps.tiling import TileSampling, plan_tiled, restore_tiled
from deqir_edu.core.download import download, sidecar_path
from deqir_edu.core.files import atomic_path, check_writable, safe_name, same_file
from deqir_edu.diffusion import ddim_timesteps
from deqir_edu.models import load_model, zoo
from deqir_edu.training import check_run_folder, load_config, read_checkpoint


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _grey(path: Path, size: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(path)
    return path


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# --- files are written atomically, inputs and runs are never overwritten ---------------------------------


def test_atomic_path_keeps_the_old_file_on_failure(tmp_path) -> None:
    dest = tmp_path / "a.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed during the write")
    assert dest.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic_path(dest) as tmp:
        tmp.write_text("new")
    assert dest.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_interrupted_image_save_leaves_the_previous_file(tmp_path, monkeypatch) -> None:
    dest = _grey(tmp_path / "out.png")
    before = dest.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        save_image(torch.zeros(1, 1, 8, 8), dest)
    assert dest.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_restore_refuses_to_overwrite_its_input(tmp_path, monkeypatch) -> None:
    src = _grey(tmp_path / "x.png")
    (tmp_path / "link.png").symlink_to(src)
    monkeypatch.chdir(tmp_path)
    before = _digests(tmp_path)
    for out in ("x.png", "./x.png", str(src), "sub/../x.png", "link.png"):
        code, _, err = _cli(["restore", "x.png", "--task", "sr4", "--out", out, "--steps", "2"])
        assert code == 2 and "refusing to overwrite" in err and len(err.strip().splitlines()) == 1, (out, err)
    assert _digests(tmp_path) == before
    assert same_file("x.png", "link.png") and not same_file("x.png", "y.png")


def test_output_is_checked_before_any_work(tmp_path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path / "folder")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "out.png")
    assert check_writable(tmp_path / "new" / "out.png").parent.is_dir()


def test_train_refuses_a_folder_that_holds_a_run(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"an earlier run")
    code, _, err = _cli(["train", "tiny", "--out", str(run), "--steps", "1", "--no-progress"])
    assert code == 2 and "already holds a run" in err and "--overwrite" in err
    assert (run / "checkpoint.pt").read_bytes() == b"an earlier run"
    check_run_folder(run, "tiny", resume=False, overwrite=True)  # asked for: allowed
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        read_checkpoint(run / "checkpoint.pt")
    torch.save({"model": {}, "step": 3}, run / "partial.pt")
    with pytest.raises(ValueError, match="missing ema, optimizer"):
        read_checkpoint(run / "partial.pt")


@pytest.mark.parametrize("name", ["../../escape", "/abs", "a/b", "..", "", "x" * 200])
def test_config_names_cannot_leave_the_output_folder(tmp_path, name) -> None:
    cfg = {**load_config("tiny"), "name": name}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="not a plain file name"):
        load_config(path)
    code, _, err = _cli(["train", str(path), "--out", str(tmp_path / "out"), "--steps", "1"])
    assert code == 2 and "plain file name" in err and not (tmp_path / "out").exists()
    assert safe_name("fashion32") == "fashion32"


# --- images as people have them -------------------------------------------------------------------------


def test_16bit_palette_alpha_and_exif(tmp_path) -> None:
    ramp = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    notes: list[str] = []
    x = load_image(tmp_path / "g16.png", 1, notes)
    assert abs(float(x.mean())) < 0.05 and float(x.min()) == -1.0 and float(x.max()) == 1.0  # not white
    assert any("16-bit" in n for n in notes)

    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png", 3).shape == (1, 3, 8, 8)

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent black -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    notes = []
    assert float(load_image(tmp_path / "a.png", 3, notes).min()) == 1.0 and any("alpha" in n for n in notes)

    img = Image.new("L", (6, 4))  # 6 wide, 4 high; orientation 6: shown turned by 90 degrees
    img.putpixel((0, 0), 255)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "turned.jpg", exif=exif)
    notes = []
    x = load_image(tmp_path / "turned.jpg", 1, notes)
    assert x.shape == (1, 1, 6, 4) and any("EXIF orientation 6" in n for n in notes)
    assert float(x[0, 0, 0, -1]) > 0.5  # the bright top-left pixel is now top-right, as a viewer shows it


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"])
def test_broken_files_are_one_line_errors(tmp_path, content) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match="bad.png is (not an image|damaged)"):
        load_image(bad, 1)


def test_truncated_png_and_bomb(tmp_path) -> None:
    good = _grey(tmp_path / "g.png", 64)
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:120])
    with pytest.raises(ValueError, match="damaged or truncated|not an image"):
        load_image(tmp_path / "cut.png", 1)
    Image.new("1", (9000, 9000)).save(tmp_path / "bomb.png")  # 81 M pixels, a few KB on disk
    with pytest.raises(ValueError, match="more than|too large"):
        load_image(tmp_path / "bomb.png", 1)


def test_user_mask_is_used_for_inpainting(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _grey(tmp_path / "photo.png", 32, seed=1)
    mask = np.full((32, 32), 255, np.uint8)
    mask[8:20, 10:24] = 0  # black = the damaged region
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert float(load_mask(tmp_path / "mask.png", (32, 32)).sum()) == 32 * 32 - 12 * 14
    code, out, err = _cli(
        [
            "restore",
            "photo.png",
            "--task",
            "inpaint-box",
            "--mask",
            "mask.png",
            "--out",
            "o.png",
            "--sampler",
            "ddnm",
            "--steps",
            "3",
        ]
    )
    assert code == 0, err
    a = np.asarray(Image.open("photo.png"), np.int16)
    b = np.asarray(Image.open("o.png"), np.int16)
    kept = mask > 0
    assert np.abs(a - b)[kept].max() <= 1  # the kept pixels are the user's (A x = y, Eq. (5))
    assert np.abs(a - b)[~kept].max() > 5  # the damaged region was filled in
    code, _, err = _cli(["restore", "photo.png", "--task", "sr4", "--mask", "mask.png", "--out", "p.png"])
    assert code == 2 and "--mask is for the inpainting" in err


def test_colorize_with_a_grey_model_is_refused(tmp_path) -> None:
    src = _grey(tmp_path / "x.png", 32)
    code, _, err = _cli(["restore", str(src), "--task", "colorize", "--out", str(tmp_path / "o.png")])
    assert code == 2 and "needs a colour model" in err and not (tmp_path / "o.png").exists()


def test_nan_from_the_model_is_named_and_nothing_written(tmp_path) -> None:
    with pytest.raises(RuntimeError, match="model produced NaN"):
        save_image_checked(torch.full((1, 1, 8, 8), float("nan")), str(tmp_path / "o.png"))
    assert not (tmp_path / "o.png").exists()


# --- the chain starts at pure noise for every T ---------------------------------------------------------


def test_top_timestep_matches_pure_noise_for_every_T() -> None:
    for T in range(1, 1001):
        ts = ddim_timesteps(T)
        assert ts.numel() == T and bool((ts[1:] > ts[:-1]).all()) and int(ts[0]) == 0
        assert 999 - int(ts[-1]) <= 1000 / T, T  # the top time lies within 1000 / T of 999
        if 1000 % T == 0:  # the official sequence is kept
            assert ts.tolist() == list(range(0, 1000, 1000 // T))
    assert int(ddim_timesteps(334)[-1]) == 997  # was 666 with range(0, 1000, 2)[:334]


# --- downloads and embedded weights are checked ---------------------------------------------------------


def test_html_page_with_status_200_is_not_saved(server, tmp_path) -> None:
    server.files["/login.pt"] = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    dest = tmp_path / "ckpt.pt"
    with pytest.raises(ValueError, match="web page"):
        download(server.url("/login.pt"), dest, progress=False)
    assert not dest.exists() and not sidecar_path(dest).exists()


def test_damaged_embedded_weights_are_refused(tmp_path, monkeypatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(zoo.data_dir() / "models", data / "models")
    monkeypatch.setattr(zoo, "data_dir", lambda: data)
    monkeypatch.delenv("DEQIR_EDU_DATA", raising=False)
    assert load_model("fashion32").image_shape == (1, 32, 32)  # the shipped bytes pass
    path = data / "models" / "fashion32.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1000] ^= 0xFF  # one flipped byte in a weight: loads fine, quietly loses dB
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="damaged"):
        load_model("fashion32")


def test_corrupt_safetensors_and_cache_that_is_a_file(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(os.urandom(256))
    code, _, err = _cli(
        [
            "restore",
            str(_grey(tmp_path / "x.png", 8)),
            "--task",
            "sr4",
            "--model",
            str(bad),
            "--out",
            str(tmp_path / "o.png"),
        ]
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    (tmp_path / "cachefile").write_text("x")
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cachefile"))
    code, _, err = _cli(["models"])
    assert code == 2 and "DEQIR_EDU_CACHE" in err and "is a file" in err


# --- bounded memory, the plan of the work, half precision -----------------------------------------------


class _Counting:
    """An eps-model that records the batch size of every call."""

    def __init__(self, model) -> None:
        self.model, self.image_shape, self.alphas_cumprod = model, model.image_shape, model.alphas_cumprod
        self.sizes: list[int] = []

    def __call__(self, x, t):
        self.sizes.append(x.shape[0])
        return self.model(x, t)


def test_network_calls_stay_within_the_memory_budget() -> None:
    model = _Counting(load_model("fashion32"))
    y = torch.zeros(1, 1, 12, 12)  # 48 x 48 after x4 SR: 4 tiles of 32
    plan = plan_tiled(model, "sr4", (48, 48), "deqir", steps=3, iters=2, samples=4, memory=60 << 20)
    assert plan.tiles == 4 and plan.per_call == 2 and plan.evaluations == 4 * 4 * 3 * 2
    model.sizes.clear()
    report: dict = {}
    x = restore_tiled(
        model,
        "sr4",
        y,
        (48, 48),
        sampling=TileSampling(steps=3, iters=2, samples=4),
        memory=60 << 20,
        report=report,
        generator=torch.Generator().manual_seed(0),
    )
    calls = [s for s in model.sizes if s != 8]  # the probe's calls have 8 images
    assert x.shape == (1, 1, 48, 48) and max(calls) <= plan.per_call
    assert report["not_converged"] == 4  # tiles whose solve stopped at K = 2 < T: said, not hidden


def test_deqir_sample_in_half_precision() -> None:
    from deqir_edu import deqir_sample, make_operator

    model = load_model("fashion32")
    op = make_operator("sr4", model.image_shape)
    for dtype in (torch.bfloat16, torch.float16):
        y = torch.zeros(1, 1, 8, 8, dtype=dtype)
        res = deqir_sample(
            model.to(dtype=dtype), op, y, steps=3, max_iter=3, generator=torch.Generator().manual_seed(0)
        )
        assert res.x0.dtype == dtype and bool(torch.isfinite(res.x0).all())


def test_errors_of_worker_processes_come_back_as_one_error(tmp_path) -> None:
    from deqir_edu.apps.launch import _raise_child_error

    result = str(tmp_path / "result.pt")
    Path(result + ".error1").write_text("ValueError\nbad input on this rank")
    with pytest.raises(ValueError, match=r"bad input on this rank \(rank 1 of 2\)"):
        _raise_child_error(result, 2, RuntimeError("process 1 terminated"))


# --- the property: any bad argument or file -> exit 2, one short line, nothing changed ------------------

_BAD_OPTIONS = [
    ["--task", "srx"],
    ["--task", "sr0"],
    ["--task", ""],
    ["--steps", "0"],
    ["--steps", "-1"],
    ["--steps", "1001"],
    ["--steps", "abc"],
    ["--iters", "0"],
    ["--eta", "-1"],
    ["--eta", "1"],
    ["--eta", "nan"],
    ["--eta", "x"],
    ["--seed", "99999999999999999999999"],
    ["--seed", "-1"],
    ["--samples", "0"],
    ["--samples", "-3"],
    ["--solver", "nosuch"],
    ["--sampler", "nosuch"],
    ["--memory", "lots"],
    ["--memory", "1KB"],
    ["--model", "nosuch-model"],
    ["--devices", "nonsense"],
    ["--devices", "cuda:7"],
    ["--task", "colorize"],
    ["--mask", "MISSING.png"],
    ["--nosuch-flag"],
]
_BAD_FILES = ["empty", "text", "truncated", "folder", "missing", "same-as-out"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    option=st.sampled_from(_BAD_OPTIONS),
    bad_file=st.one_of(st.none(), st.sampled_from(_BAD_FILES)),
    out_name=st.sampled_from(["o.png", "sub/o.png"]),
)
def test_cli_bad_input_property(tmp_path_factory, option, bad_file, out_name) -> None:
    work = tmp_path_factory.mktemp("bad")
    _grey(work / "x.png", 8)
    (work / "empty.png").write_bytes(b"")
    (work / "text.png").write_text("hello")
    (work / "truncated.png").write_bytes((work / "x.png").read_bytes()[:40])
    (work / "folder.png").mkdir()
    src = {
        "empty": "empty.png",
        "text": "text.png",
        "truncated": "truncated.png",
        "folder": "folder.png",
        "missing": "missing.png",
        "same-as-out": "x.png",
        None: "x.png",
    }[bad_file]
    out = "x.png" if bad_file == "same-as-out" else out_name
    before = _digests(work)
    old = os.getcwd()
    os.chdir(work)
    try:
        code, _, err = _cli(["restore", src, "--task", "sr4", "--out", out, "--steps", "2", "--iters", "2", *option])
    finally:
        os.chdir(old)
    assert code == 2, (option, bad_file, err)
    assert "Traceback" not in err and 1 <= len(err.strip().splitlines()) <= 3, err
    assert err.startswith("deqir-edu restore: error:"), err
    assert _digests(work) == before  # no file changed (and no output written)


def test_a_plan_for_another_sampler_reuses_the_measured_call(monkeypatch) -> None:
    """sampler="auto" plans once (one probe) and re-counts for the chosen sampler (#17)."""
    from deqir_edu.apps import tiling
    from deqir_edu.models.budget import Probe

    calls = []

    def fake_probe(model, n=8, like=None):  # deterministic: 1 MB and 10 ms per image
        calls.append(1)
        return Probe(bytes_per_image=1 << 20, seconds_per_image=0.01)

    monkeypatch.setattr(tiling, "probe", fake_probe)
    model = load_model("fashion32")
    deqir = tiling.plan_tiled(model, "sr4", (48, 48), "deqir", steps=5, iters=3, samples=2, memory=64 << 20)
    ddnm = tiling.plan_tiled(model, "sr4", (48, 48), "ddnm", steps=5, samples=2, memory=64 << 20)
    assert deqir.for_sampler("ddnm", 5) == ddnm and ddnm.for_sampler("deqir", 5, 3) == deqir
    assert ddnm.evaluations == 4 * 2 * 5 and ddnm.seconds == pytest.approx(ddnm.evaluations * 0.01)
    calls.clear()
    sampler, why = tiling.choose_sampler(model, "ddnm", 5, deqir)
    assert (sampler, why) == ("ddnm", None) and not calls
    assert tiling.choose_sampler(model, "auto", 5, deqir, several_devices=True) == ("deqir", None)
