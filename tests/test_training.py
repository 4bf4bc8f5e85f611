"""The training recipe (deqir_edu.training): a tiny run, checkpoints, resume, deadline, outputs."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from deqir_edu.apps.cli import main
from deqir_edu.training import recipe as training

TINY = training.load_config("tiny")  # 1x16x16 synthetic images, 20 steps, checkpoint every 10


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "tiny.safetensors"))


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"  # bit-exact on the same machine and threads


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    summary = training.train(TINY, out, progress=False)
    return out, summary


def test_tiny_run_finite_loss_and_outputs(full_run):
    out, summary = full_run
    assert summary["finished"] and summary["step"] == 20 and not summary["stopped_at_deadline"]
    assert math.isfinite(summary["final_loss"])
    rows = list(csv.DictReader(open(out / "loss_log.csv")))
    assert [int(float(r["step"])) for r in rows] == [5, 10, 15, 20]
    losses = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]  # it learns something
    meta = json.loads((out / "tiny.json").read_text())
    assert meta["config"]["model"] == TINY["model"] and meta["run"]["step"] == 20
    # the EMA weights load back into a fresh network, strictly, and run
    net = training.build_model(TINY["model"])
    net.load_state_dict(_weights(out), strict=True)
    eps = net(torch.zeros(2, 1, 16, 16), torch.tensor([0, 999]))
    assert eps.shape == (2, 1, 16, 16) and bool(torch.isfinite(eps).all())
    # EMA differs from the raw weights it averages
    raw = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(raw[k], v) for k, v in _weights(out).items())


def test_stop_and_resume_equals_uninterrupted_run(full_run, tmp_path):
    out, _ = full_run
    part = training.train(TINY, tmp_path, progress=False, stop_after=10)
    assert not part["finished"] and part["step"] == 10 and not (tmp_path / "tiny.safetensors").exists()
    training.train(TINY, tmp_path, progress=False, resume=True)
    _assert_same(_weights(out), _weights(tmp_path))
    assert [r[:2] for r in csv.reader(open(out / "loss_log.csv"))] == [
        r[:2] for r in csv.reader(open(tmp_path / "loss_log.csv"))
    ]


def test_deadline_writes_step_reached_and_resume_with_more_steps_continues(full_run, tmp_path, monkeypatch):
    out, _ = full_run
    clock = iter(range(10**6))  # fake wall clock: one "second" per deadline check, i.e. per step
    monkeypatch.setattr(training.time, "time", lambda: float(next(clock)))
    summary = training.train(TINY, tmp_path, progress=False, deadline=7.0)
    monkeypatch.undo()
    assert summary["stopped_at_deadline"] and summary["step"] == 7 and summary["planned_steps"] == 20
    assert json.loads((tmp_path / "tiny.json").read_text())["config"]["steps"] == 7
    training.train(TINY, tmp_path, progress=False, resume=True, steps=20)
    _assert_same(_weights(out), _weights(tmp_path))  # a 7-step run is a prefix of the 20-step run


def test_ema_warmup_forgets_the_random_init_faster(tmp_path):
    def ema_gap(warmup: bool) -> float:
        cfg = {**TINY, "ema_rate": 0.999, "ema_warmup": warmup}
        training.train(cfg, tmp_path / str(warmup), steps=5, progress=False)
        raw = torch.load(tmp_path / str(warmup) / "checkpoint.pt", weights_only=True)["model"]
        ema = _weights(tmp_path / str(warmup))
        return sum(float((raw[k] - ema[k]).abs().sum()) for k in ema)

    assert ema_gap(True) < 0.5 * ema_gap(False)


def test_resume_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        training.train(TINY, tmp_path, progress=False, resume=True)
    with pytest.raises(FileNotFoundError, match="not found"):
        training.load_config("no-such-config")
    with pytest.raises(ValueError, match="lacks the required entry 'data'"):
        training.load_config({"name": "x", "model": {}})


def test_cli_train(tmp_path, capsys):
    assert main(["train", "tiny", "--out", str(tmp_path), "--steps", "3", "--no-progress"]) == 0
    assert "finished at step 3" in capsys.readouterr().out
    assert (tmp_path / "tiny.safetensors").is_file() and (tmp_path / "loss_log.csv").is_file()
    assert main(["train", "tiny", "--out", str(tmp_path), "--until", "noon"]) == 2


@pytest.mark.parametrize("name, shape", [("fashion32", (1, 32, 32)), ("photo32", (3, 32, 32))])
def test_shipped_configs_build_a_small_adm_unet(name, shape):
    cfg = training.load_config(name)
    net = training.build_model(cfg["model"])
    n = sum(p.numel() for p in net.parameters())
    assert 1.5e6 <= n <= 3e6, n
    assert cfg["batch_size"] == 64 and not cfg["model"]["learn_sigma"]
    with torch.no_grad():
        assert net(torch.zeros((2,) + shape), torch.tensor([3, 500])).shape == (2,) + shape


def test_export_of_an_unfinished_run_loads_through_the_zoo(tmp_path, monkeypatch):
    """`train --export`: the EMA weights of checkpoint.pt at the step reached, loadable as a zoo model."""
    from deqir_edu.apps.cli import main
    from deqir_edu.models import zoo

    training.train(TINY, tmp_path / "run", progress=False, stop_after=6)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    models = tmp_path / "data" / "models"
    assert main(["train", "tiny", "--out", str(tmp_path / "run"), "--export", str(models)]) == 0
    meta = json.loads((models / "tiny.json").read_text())
    assert meta["config"]["steps"] == 6 and meta["run"]["stopped_at_deadline"] and not meta["run"]["finished"]
    _assert_same(ckpt["ema"], _weights(models))
    assert (models / "tiny_loss.csv").is_file()
    monkeypatch.setenv("DEQIR_EDU_DATA", str(tmp_path / "data"))
    model = zoo.load_model(str(models / "tiny.safetensors"))
    assert tuple(model.image_shape) == (1, 16, 16)  # the tiny config's synthetic images


def test_dc_weight_acts_from_its_step_and_not_before(full_run, tmp_path):
    """``loss.dc_weight`` changes training only from ``dc_from_step`` on; the log keeps the plain eps-MSE."""
    out, _ = full_run
    cfg = {**TINY, "loss": {"dc_weight": 50.0, "dc_from_step": 10}}
    training.train(cfg, tmp_path, progress=False)
    plain = [r[:2] for r in csv.reader(open(out / "loss_log.csv"))]  # step, loss (not the seconds)
    dc = [r[:2] for r in csv.reader(open(tmp_path / "loss_log.csv"))]
    assert dc[:3] == plain[:3]  # header and steps 5, 10: the same run, bit for bit
    assert dc[3][1] != plain[3][1]  # step 15: the extra term has changed the weights
    assert json.loads((tmp_path / "tiny.json").read_text())["config"]["loss"]["dc_weight"] == 50.0


def test_lr_schedule_warmup_constant_then_linear_decay(full_run, tmp_path):
    """Warm-up to ``lr``, constant, then (with ``decay_from``) linear to ``lr_final`` at the last step;
    the run applies it (the logged lr) and changes nothing before the decay starts."""
    opt = {"lr": 1e-3, "warmup": 4, "decay_from": 10, "lr_final": 1e-4}
    lrs = [training._lr_at(s, opt, 20) for s in range(21)]
    assert lrs[0] == pytest.approx(2.5e-4) and lrs[3] == lrs[9] == pytest.approx(1e-3)
    assert lrs[15] == pytest.approx(1e-3 + (1e-4 - 1e-3) * 0.5) and lrs[20] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:], strict=False))  # never increases after the warm-up
    assert training._lr_at(15, {"lr": 1e-3, "warmup": 4}, 20) == pytest.approx(1e-3)  # no decay_from: constant
    out, _ = full_run
    cfg = {**TINY, "optimizer": {**TINY["optimizer"], "decay_from": 10, "lr_final": 0.0}}
    training.train(cfg, tmp_path, progress=False)
    plain = list(csv.reader(open(out / "loss_log.csv")))
    decayed = list(csv.reader(open(tmp_path / "loss_log.csv")))
    assert [r[:3] for r in decayed[:3]] == [r[:3] for r in plain[:3]]  # steps 5, 10 unchanged
    assert float(decayed[3][2]) == pytest.approx(6e-4) and float(decayed[4][2]) == pytest.approx(1e-4)  # steps 14, 19
    assert decayed[3][1] != plain[3][1]
