"""The default solver ``auto`` on the embedded models: it stops by itself within 0.05 dB of the
sequential chain (every image), never later than Picard with freezing, and says when it ran out."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from deqir_edu.datasets import load_testset
from deqir_edu.diffusion import draw_noises
from deqir_edu.metrics import psnr
from deqir_edu.models import load_model, sampling_defaults
from deqir_edu.operators import make_operator
from deqir_edu.sampling import ddnm_sample, default_passes, deqir_sample
from deqir_edu.solvers import ConvergenceWarning

CELLS = [
    ("fashion32", "sr4"),
    ("fashion32", "deblur-gauss"),
    ("fashion32", "inpaint-box"),
    ("photo32", "sr4"),
    ("photo32", "colorize"),
    ("photo32", "inpaint-box"),
]
T = 20


@pytest.fixture(scope="module")
def models():
    torch.set_num_threads(2)
    return {name: (load_model(name), load_testset(name, 2)) for name in ("fashion32", "photo32")}


@pytest.mark.slow
@pytest.mark.parametrize("eta", [0.15, 0.85])
@pytest.mark.parametrize("name,task", CELLS)
def test_auto_stops_within_005_db_and_not_after_picard_freeze(models, name, task, eta):
    model, x = models[name]
    op = make_operator(task, tuple(model.image_shape))
    y = op.A(x)
    noises = draw_noises(tuple(x.shape), T, torch.Generator().manual_seed(3), dtype=x.dtype)
    chain_db = psnr(ddnm_sample(model, op, y, T, eta, noises=noises), x)  # (B,)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # auto must stop by its tolerance
        res = deqir_sample(model, op, y, T, eta, noises=noises)  # the defaults: solver auto
    ref = deqir_sample(model, op, y, T, eta, noises=noises, solver="picard-freeze")
    gap = (psnr(res.x0, x) - chain_db).abs()
    assert res.converged and float(gap.max()) < 0.05, (res.passes, gap.tolist())
    assert res.passes <= ref.passes, (res.passes, ref.passes)
    assert res.passes < T  # it did stop early (at T it would be exact, but no faster than the chain)


def test_defaults_auto_and_model_eta(models):
    model, _ = models["photo32"]
    assert sampling_defaults(model) == (0.85, False)
    assert sampling_defaults(lambda x, t: x) == (0.15, False)  # a model without a config: the paper's
    assert default_passes("auto", 20) == 20 and default_passes("anderson", 20) == 15
    import inspect

    assert inspect.signature(deqir_sample).parameters["solver"].default == "auto"


def test_warns_and_says_so_when_the_budget_runs_out(models):
    model, x = models["fashion32"]
    op = make_operator("sr4", tuple(model.image_shape))
    y = op.A(x[:1])
    with pytest.warns(ConvergenceWarning, match="stopped after 2 passes"):
        res = deqir_sample(model, op, y, 10, 0.85, torch.Generator().manual_seed(0), max_iter=2)
    assert not res.converged and res.passes == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # tol = 0: a fixed number of passes was asked for
        deqir_sample(model, op, y, 10, 0.85, torch.Generator().manual_seed(0), max_iter=2, solver_options={"tol": 0.0})
        deqir_sample(model, op, y, 6, 0.85, torch.Generator().manual_seed(0), solver="picard", max_iter=6)


class _Timed:
    """A stand-in network whose call costs ``base + per_image * n`` seconds."""

    image_shape = (1, 4, 4)

    def __init__(self, base: float, per_image: float) -> None:
        self.base, self.per_image = base, per_image

    def __call__(self, x, t):
        import time

        time.sleep(self.base + self.per_image * x.shape[0])
        return x


def test_sampler_auto_picks_the_faster_sampler():
    from deqir_edu.experiments import predict_sampler

    cpu_like = predict_sampler(_Timed(0.0, 0.002), steps=10, batch=1)  # cost grows with the batch: DDNM
    gpu_like = predict_sampler(_Timed(0.01, 0.0), steps=10, batch=1)  # flat cost: 10 calls against ~7 passes
    assert cpu_like.sampler == "ddnm" and cpu_like.parallel > cpu_like.sequential
    assert gpu_like.sampler == "deqir" and gpu_like.parallel < gpu_like.sequential
    from deqir_edu.solvers.auto import AUTO_PASS_FRACTION

    assert gpu_like.passes == pytest.approx(AUTO_PASS_FRACTION * 10) and "sampler auto -> deqir" in gpu_like.describe()
    chunked = predict_sampler(_Timed(0.01, 0.0), steps=10, batch=1, max_batch=2)  # 5 chunked calls per pass
    assert chunked.tT == pytest.approx(5 * chunked.t1, rel=0.5) and chunked.sampler == "ddnm"


def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_adm256.py --smoke: the GPU script's code path (auto, DDNM, t(n), prediction) on the CPU."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEQIR_BENCH_RESULTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "benchmarks/gpu_adm256.py", "--smoke"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "gpu_adm256_smoke.json").read_text())["rows"]
    assert {(r["B"], r["method"]) for r in rows} == {(1, "ddnm"), (1, "auto"), (2, "ddnm"), (2, "auto")}
    assert all(r["passes"] <= r["T"] for r in rows) and "sampler auto ->" in out.stdout


@pytest.mark.slow
def test_stop_rule_benchmark_replays_the_solvers_own_stop(models):
    """benchmarks/stop_rule.py evaluates stopping rules on passes recorded once; on the current rule the replay
    must stop where ``auto`` itself stops (else its table of looser rules would mean nothing)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import stop_rule

    halving = [math.inf] + [0.5**k for k in range(1, 30)]
    assert stop_rule.stop_pass(halving, "c/(1-rate)", 3, 1e-3) == 12  # pass 12: 2^-11 / 0.5 < 1e-3
    assert stop_rule.stop_pass([math.inf, 0.1, 0.2, 0.1, 0.05], "c/(1-rate)", 3, 0.2) is None  # a ratio 2 > 0.99
    for name, task, eta in [("fashion32", "sr4", 0.85), ("photo32", "colorize", 0.15)]:
        model, x = models[name]
        op = make_operator(task, tuple(model.image_shape))
        cell = stop_rule.record(model, op, op.A(x), x, T, eta)
        noises = draw_noises(tuple(x.shape), T, torch.Generator().manual_seed(1), dtype=x.dtype)
        res = deqir_sample(model, op, op.A(x), T, eta, noises=noises)  # the defaults: auto, stop on x_0
        replay = stop_rule.stop_pass(cell["change"], *stop_rule.CURRENT) or len(cell["change"])
        assert replay == res.passes, (name, task, eta, replay, res.passes)
        assert cell["gap"][replay - 1] < 0.05
