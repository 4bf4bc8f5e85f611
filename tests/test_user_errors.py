"""Issue #29: no option is ever silently ignored, and every user error is one clear line (exit code 2) that
names the file, option or environment variable and the fix; the API says what to pass instead of dying
inside torch.  Each case measured in the issue is a test here."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file, save_file

from deqir_edu.apps import cliargs, restore_cmd
from deqir_edu.apps.cli import main
from deqir_edu.apps.errors import user_error_text
from deqir_edu.apps.images import load_image, load_mask, save_image
from deqir_edu.apps.restore_checks import check_options
from deqir_edu.core.checks import check_device, is_integer
from deqir_edu.datasets import image_folder
from deqir_edu.diffusion import chain_config, draw_noises
from deqir_edu.models import load_model, zoo
from deqir_edu.models.budget import check_budget, parse_size
from deqir_edu.models.checkpoints import read_spec
from deqir_edu.sampling import ddim_sample, ddnm_sample, deqir_sample
from deqir_edu.training import load_config

REPO_MODELS = Path(__file__).resolve().parents[1] / "data" / "models"


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _user_error(argv: list, *names: str) -> str:
    """Run the CLI; assert exit code 2 and one line ``deqir-edu CMD: error: ...`` that contains ``names``."""
    code, _, err = _cli(argv)
    lines = err.strip().splitlines()
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and lines[0].startswith(f"deqir-edu {argv[0]}: error:"), err
    assert "internal error" not in err and "Traceback" not in err, err
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _grey(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(path)
    return path


def _mask(path: Path, size: int = 32, grey_edge: bool = False) -> Path:
    m = np.full((size, size), 255, np.uint8)
    m[8:20, 10:24] = 0
    if grey_edge:  # an anti-aliased border: a few grey pixels
        m[7, 10:24] = 128
    Image.fromarray(m).save(path)
    return path


@pytest.fixture()
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder (the current one) with a few inputs for fashion32 (1 x 32 x 32)."""
    monkeypatch.chdir(tmp_path)
    _grey(tmp_path / "x8.png", 8)
    _grey(tmp_path / "p32.png", 32, seed=1)
    _grey(tmp_path / "q32.png", 32, seed=2)
    _mask(tmp_path / "mask.png")
    return tmp_path


SMALL = ["--steps", "2", "--sampler", "ddnm"]


# --- options are never silently ignored --------------------------------------------------------------------


def test_solver_and_iters_select_deqir_or_are_refused(work, capsys) -> None:
    args = argparse.Namespace(sampler="auto", solver="anderson", iters=15, mask=None, task="sr4", input="x8.png")
    check_options(args)
    note = capsys.readouterr().out
    assert args.sampler == "deqir" and "--solver anderson and --iters 15 given: sampler deqir" in note
    check_options(args)  # a folder's images pass through again: no second note
    assert capsys.readouterr().out == ""
    argv = ["restore", "x8.png", "--task", "sr4", "--solver", "picard", "--iters", "2", "--steps", "2"]
    code, out, err = _cli([*argv, "--out", "o.png"])
    assert code == 0, err
    assert "sampler deqir" in out and "with deqir: o.png" in out
    for opt in (["--iters", "5"], ["--solver", "taa"]):
        line = _user_error(["restore", "x8.png", "--task", "sr4", *opt, "--out", "o2.png", *SMALL], opt[0], "ddnm")
        assert "--sampler deqir" in line
    assert not (work / "o2.png").exists()


@pytest.mark.parametrize("value", ["", ",", " , ", "cpu,", "mps", "meta", "cuda:7", "nonsense", "cpu,cuda:0"])
def test_devices_empty_or_impossible(work, value) -> None:
    _user_error(["restore", "x8.png", "--task", "sr4", "--devices", value, "--out", "o.png", *SMALL], "--devices")
    assert not (work / "o.png").exists()


def test_device_check_knows_mps_and_meta() -> None:
    assert check_device("cpu") == torch.device("cpu")
    for name in ("mps", "meta", "xpu", "cuda:99"):
        with pytest.raises(ValueError, match="not available here"):
            check_device(name)


@pytest.mark.parametrize(
    ("value", "words"),
    [("900TB", "more than the"), ("-1GB", "negative"), ("1" + "0" * 400 + "TB", "more than 1 PB"), ("-.5G", "")],
)
def test_memory_is_checked_against_the_machine(work, value, words) -> None:
    line = _user_error(["restore", "x8.png", "--task", "sr4", "--memory", value, "--out", "o.png", *SMALL], "--memory")
    assert words in line and "expected one argument" not in line


def test_memory_bounds() -> None:
    assert parse_size("2GB") == 2 << 30
    with pytest.raises(ValueError, match="more than the .* of memory of this machine"):
        check_budget(1 << 49, "cpu", "--memory")
    assert check_budget(64 << 20, "cpu") == 64 << 20


def test_negative_values_are_read_as_values(work) -> None:
    line = _user_error(["restore", "x8.png", "--task", "sr4", "--eta", "-1e-3", "--out", "o.png", *SMALL], "--eta")
    assert "out of range" in line


def test_folder_output_named_like_an_image_is_refused(work) -> None:
    _grey(work / "imgs" / "a.png", 8)
    _user_error(["restore", "imgs", "--task", "sr4", "--out", "result.png", *SMALL], "--out result.png", "folder")
    assert not (work / "result.png").exists()


def test_masks_are_checked(work, capsys) -> None:
    _grey(work / "imgs" / "p1.png", 32)
    shutil.copy(work / "mask.png", work / "imgs" / "mask.png")
    argv = ["--task", "inpaint-box", *SMALL]
    _user_error(["restore", "imgs", "--mask", "imgs/mask.png", "--out", "outm", *argv], "--mask", "inside the input")
    assert not (work / "outm").exists()
    _user_error(["restore", "p32.png", "--mask", "q32.png", "--out", "o.png", *argv], "q32.png", "looks like a photo")
    _user_error(["restore", "p32.png", "--mask", "p32.png", "--out", "o.png", *argv], "--mask p32.png", "input image")
    _mask(work / "m16.png", 16)
    _user_error(["restore", "p32.png", "--mask", "m16.png", "--out", "o.png", *argv], "m16.png", "16 x 16")
    notes: list[str] = []
    mask = load_mask(_mask(work / "soft.png", grey_edge=True), (32, 32), notes)
    assert float(mask.sum()) == 32 * 32 - 12 * 14 and "thresholded at half" in notes[0]
    assert not (work / "o.png").exists()


def test_train_contradictory_options(work) -> None:
    line = _user_error(["train", "tiny", "--resume", "--overwrite", "--out", "run", "--steps", "1"], "--resume")
    assert "--overwrite" in line and not (work / "run").exists()
    _user_error(["train", "tiny", "--out", "run", "--export", "ex", "--steps", "5"], "--export", "--steps")


# --- messages that name the right culprit ------------------------------------------------------------------


def test_models_says_a_zero_byte_file_is_damaged(tmp_path, monkeypatch, capsys) -> None:
    data = tmp_path / "data" / "models"
    data.mkdir(parents=True)
    (data / "fashion32.safetensors").write_bytes(b"")
    shutil.copy(REPO_MODELS / "fashion32.json", data / "fashion32.json")
    monkeypatch.setenv("DEQIR_EDU_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fashion32 "))
    assert "damaged" in row and "present" not in row and "0 bytes" in row
    assert "fashion32.safetensors is empty (0 bytes)" in out and "deqir-edu train fashion32" in out
    assert not next(r for r in zoo.list_models() if r["name"] == "fashion32")["available"]


@pytest.fixture()
def nan_checkpoint(work) -> Path:
    """fashion32's weights times NaN, with its config next to them: a broken network."""
    sd = load_file(str(REPO_MODELS / "fashion32.safetensors"))
    save_file({k: v * float("nan") for k, v in sd.items()}, str(work / "nan.safetensors"))
    shutil.copy(REPO_MODELS / "fashion32.json", work / "nan.json")
    return work / "nan.safetensors"


@pytest.mark.parametrize("sampler", ["ddnm", "deqir"])
def test_a_nan_network_is_blamed_not_the_image(work, nan_checkpoint, sampler) -> None:
    argv = ["restore", "x8.png", "--task", "sr4", "--model", "nan.safetensors", "--steps", "2", "--sampler", sampler]
    line = _user_error([*argv, "--out", "o.png"], "--model nan.safetensors", "network returned NaN")
    assert "image" not in line.split("network")[0] and not (work / "o.png").exists()


def test_a_diverging_training_is_a_user_error(work) -> None:
    cfg = {**load_config("tiny"), "name": "hugelr", "steps": 2, "log_every": 1, "checkpoint_every": 100}
    cfg["optimizer"] = {**cfg["optimizer"], "lr": 1e30, "warmup": 0, "grad_clip": 0}
    (work / "hugelr.json").write_text(json.dumps(cfg))
    _user_error(["train", "hugelr.json", "--out", "run", "--no-progress"], "diverged", "learning rate")


def test_full_disk_and_long_names_are_one_line(work, monkeypatch) -> None:
    def full(x, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restore_cmd, "save_image", full)
    _user_error(["restore", "x8.png", "--task", "sr4", "--out", "o.png", *SMALL], "no space left", "--out")
    long = "a" * 300 + ".png"
    _user_error(["restore", "x8.png", "--task", "sr4", "--out", long, *SMALL], "too long", "--out")
    _user_error(["demo", "--n", "1", "--out", long], "too long", "--out")


def test_os_errors_name_the_variable_or_the_option(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEQIR_EDU_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    denied = errno.EACCES, "Permission denied"
    data_file = PermissionError(*denied, str(tmp_path / "data" / "models" / "fashion32.safetensors"))
    assert "DEQIR_EDU_DATA=" in user_error_text(data_file)
    assert "DEQIR_EDU_CACHE=" in user_error_text(PermissionError(*denied, str(tmp_path / "cache" / "models")))
    assert "--out" in user_error_text(PermissionError(*denied, str(tmp_path / "elsewhere.png")))
    assert "read-only" in user_error_text(OSError(errno.EROFS, "Read-only file system", "/x/o.png"))
    assert user_error_text(ZeroDivisionError("a bug")) is None

    def denied_cache():
        raise PermissionError(*denied, str(tmp_path / "cache" / "models"))

    monkeypatch.setattr("deqir_edu.apps.cli.list_models", denied_cache)
    _user_error(["models"], "permission denied", "DEQIR_EDU_CACHE")


def test_eval_on_a_folder_of_unreadable_images(work) -> None:
    (work / "bad").mkdir()
    (work / "bad" / "a.png").write_text("not an image")
    (work / "bad" / "b.png").write_bytes(b"")
    line = _user_error(["eval", "--images", "bad", "--n", "1", "--methods", "pinv", "--out", "ev"], "bad/a.png")
    assert "2 of the 2 images" in line
    with pytest.raises(ValueError, match="cannot be read"):
        image_folder(work / "bad", 1)


def test_a_bad_loss_log_on_resume_is_never_an_internal_error(work) -> None:
    assert _cli(["train", "tiny", "--steps", "1", "--out", "run", "--no-progress"])[0] == 0
    (work / "run" / "loss_log.csv").write_bytes(b"step,loss\nnot,a,number\n\x00\x01")
    code, _, err = _cli(["train", "tiny", "--steps", "2", "--resume", "--out", "run", "--no-progress"])
    assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1 and "loss_log.csv" in err), err
    state = torch.load(work / "run" / "checkpoint.pt", weights_only=True)
    torch.save({**state, "config": '{"model": '}, work / "run" / "checkpoint.pt")  # its stored JSON, damaged
    _user_error(["train", "tiny", "--out", "run", "--export", "ex"], "checkpoint.pt", "not valid JSON")


def test_json_errors_name_the_file(work) -> None:
    (work / "bad.json").write_text('{"name": "tiny", "model": ')
    _user_error(["train", "bad.json", "--out", "run"], "bad.json", "not valid JSON")
    shutil.copy(REPO_MODELS / "fashion32.safetensors", work / "ck.safetensors")
    (work / "ck.json").write_text('{"architecture": "adm",')
    _user_error(["restore", "x8.png", "--task", "sr4", "--model", "ck.safetensors", "--out", "o.png"], "ck.json")
    with pytest.raises(ValueError, match="metadata of m.safetensors is not valid JSON"):
        read_spec("metadata of m.safetensors", "{")
    with pytest.raises(ValueError, match="x.json: a model config is a JSON object"):
        read_spec("x.json", "[1, 2]")


def test_decompression_bomb_message_does_not_ask_for_a_png(tmp_path) -> None:
    Image.new("1", (9500, 9500)).save(tmp_path / "bomb.png")  # 90 M pixels: Pillow's guard
    with pytest.raises(ValueError, match="crop or downscale it first") as caught:
        load_image(tmp_path / "bomb.png", 1)
    assert "give a PNG" not in str(caught.value)


@pytest.mark.parametrize(("bad", "words"), [("text", "not an image"), ("small", "smaller than the model")])
def test_a_folder_run_checks_every_input_first(work, bad, words) -> None:
    _grey(work / "imgs" / "a.png", 8)
    if bad == "text":
        (work / "imgs" / "b.png").write_text("not an image")
    else:
        _grey(work / "imgs" / "b.png", 4)
    _grey(work / "imgs" / "c.png", 8)
    line = _user_error(["restore", "imgs", "--task", "sr4", "--out", "out", *SMALL], "imgs/b.png", words)
    assert "1 of the 3 images" in line
    assert not list((work / "out").glob("*.png")) if (work / "out").exists() else True


def test_demo_refuses_a_figure_name_before_any_work(work, monkeypatch) -> None:
    monkeypatch.setattr("deqir_edu.apps.cli.default_model", lambda name: pytest.fail("work started"))
    _user_error(["demo", "--n", "1", "--out", "d.txt"], "--out d.txt", ".png")


# --- the API checks its inputs at the entry points -----------------------------------------------------------


def test_numpy_integers_are_integers(toy) -> None:
    assert is_integer(4) and is_integer(np.int64(4)) and not is_integer(True) and not is_integer(4.0)
    t = toy("sr4", batch=1, steps=3)
    g = torch.Generator().manual_seed(0)
    res = deqir_sample(t.prior, t.op, t.y, steps=np.int64(3), max_iter=np.int64(3), generator=g)
    assert res.x0.shape == t.x.shape
    assert ddnm_sample(t.prior, t.op, t.y, steps=np.int32(3), generator=torch.Generator()).shape == t.x.shape
    assert ddim_sample(t.prior, np.int64(2), steps=np.int64(2), generator=torch.Generator()).shape[0] == 2
    assert chain_config(np.int64(4), 0.15).steps == 4 and draw_noises((1, 1, 2, 2), np.int64(2))[1].shape[0] == 2


class _NoPinv:
    def A(self, x):  # noqa: N802 (the paper's name)
        return x


class _Wrong:
    """An eps-model that returns half the width."""

    def __init__(self, prior) -> None:
        self.prior, self.image_shape, self.alphas_cumprod = prior, prior.image_shape, prior.alphas_cumprod

    def __call__(self, x, t):
        return self.prior(x, t)[..., : x.shape[-1] // 2]


def test_samplers_check_their_inputs(toy) -> None:
    t = toy("sr4", batch=1, steps=3)
    g = torch.Generator
    cases = [
        (dict(y=t.y.to("meta")), "meta device"),
        (dict(y=t.y[:0]), "batch 0"),
        (dict(op=_NoPinv()), "no A_pinv"),
        (dict(model=_Wrong(t.prior)), "must return eps of its input's shape"),
        (dict(model=None), "must be an eps-model"),
        (dict(generator="seed"), "must be a torch.Generator"),
        (dict(y=t.y.clone().requires_grad_(True)), "requires grad"),
    ]
    for sampler in (deqir_sample, ddnm_sample):
        for change, words in cases:
            kw = {**dict(model=t.prior, op=t.op, y=t.y, steps=3, generator=g().manual_seed(0)), **change}
            with pytest.raises(ValueError, match=words):
                sampler(**kw)
    with pytest.raises(ValueError, match="shape must be a number of images"):
        ddim_sample(t.prior, 0, steps=2)
    with pytest.raises(ValueError, match="must return eps"):
        ddim_sample(_Wrong(t.prior), 1, steps=2, generator=g())


def test_load_model_dtype_is_checked() -> None:
    with pytest.raises(ValueError, match="floating-point torch.dtype"):
        load_model("fashion32", dtype=torch.int8)
    with pytest.raises(ValueError, match="floating-point torch.dtype"):
        load_model("fashion32", dtype="float16")


# --- the property: any value of an option is accepted or refused in one line ---------------------------------

_VALUES = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", ",", "-1GB", "1e3", "2GB", "0.5GB", "cpu", "cpu,cpu", "cuda:0", "mps", "-0", "\n1", "1\n"]),
)
_OPTIONS = ["--memory", "--devices", "--steps", "--iters", "--eta", "--seed", "--samples", "--solver", "--sampler"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(_OPTIONS), value=_VALUES)
def test_cli_option_values_property(work, monkeypatch, option, value) -> None:
    """Parse and validate only: the first real work (loading the model) is replaced by an interrupt, so an
    accepted value ends with exit code 130 and nothing is restored."""

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(restore_cmd, "load_model", stop)
    code, _, err = _cli(["restore", "x8.png", "--task", "sr4", "--out", "o.png", option, value])
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (2, 130), (option, value, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("deqir-edu restore: error:"), err
    assert not (work / "o.png").exists()


@settings(max_examples=200, deadline=None)
@given(value=_VALUES)
def test_option_types_property(value) -> None:
    """Every type of a CLI option returns a value or raises ``ArgumentTypeError`` (never anything else)."""
    types = [cliargs.memory, cliargs.devices, cliargs.eta, cliargs.POSITIVE, cliargs.SEED, cliargs.STEPS]
    for parse in types:
        try:
            parse(value)
        except argparse.ArgumentTypeError as err:
            assert str(err).strip(), parse


def test_options_that_would_do_nothing_are_refused(tmp_path, capsys):
    """``restore FILE --overwrite`` (a single output is always replaced) and ``download lpips-alex --force``."""
    src = tmp_path / "x.png"
    save_image(torch.zeros(1, 1, 32, 32), src)
    code = main(["restore", str(src), "--task", "sr4", "--out", str(tmp_path / "o.png"), "--overwrite"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite is for a folder" in err[0], err
    assert not (tmp_path / "o.png").exists()
    code = main(["download", "lpips-alex", "--force"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--force is for zoo models" in err[0], err
