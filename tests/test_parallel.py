"""Faster parallel solvers (solvers/freezing.py) and multi-device DeqIR (models/sharding.py, apps/launch.py).

Exact prior, float64, tiny images: every solver must reach the sequential chain, the faster ones
must need fewer passes / network evaluations (measured counts in the comments), and two CPU ranks
over gloo must give the single-process result.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from deqir_edu.apps.cli import build_parser
from deqir_edu.apps.launch import parse_devices, run_sharded
from deqir_edu.diffusion import chain_config, draw_noises
from deqir_edu.models import ShardedModel
from deqir_edu.operators import make_operator
from deqir_edu.sampling import FixedPointMap, ddnm_sample, deqir_sample, prepare_chain
from deqir_edu.solvers import SOLVERS, WindowConfig, solver_spec, window_solve

T = 20


def problem(toy, task: str = "sr4", batch: int = 2):
    """The shared toy problem (conftest): prior, operator and measurements of ``batch`` images."""
    prior, _, op, y, _, _ = toy(task, batch=batch)
    return prior, op, y


def run(prior, op, y, eta, solver, max_iter=None, **options):
    """DeqIR with ``solver``; options that are fields of ``WindowConfig`` override the solver's preset."""
    fields = {k: options.pop(k) for k in list(options) if k in WindowConfig.__dataclass_fields__}
    if fields:
        options["config"] = replace(solver_spec(solver).config, **fields)
    gen = torch.Generator().manual_seed(1)
    return deqir_sample(prior, op, y, T, eta, gen, solver=solver, max_iter=max_iter, solver_options=options)


def reference(prior, op, y, eta):
    return ddnm_sample(prior, op, y, T, eta, torch.Generator().manual_seed(1))


@pytest.mark.parametrize("task, eta", [("sr4", 0.15), ("inpaint-box", 0.85)])
def test_every_solver_reaches_the_sequential_chain(toy, task: str, eta: float) -> None:
    prior, op, y = problem(toy, task)
    ref = reference(prior, op, y, eta)
    for name in (n for n in SOLVERS if n not in ("picard", "anderson")):  # the solvers with freezing
        res = run(prior, op, y, eta, name, max_iter=T, tol=1e-4, reference=ref)
        tr = res.trace
        err = float((res.x0 - ref).abs().max())
        assert tr.converged and tr.passes <= T, name  # stops by its own per-state rule
        assert err < 1e-3, (name, err)  # measured <= 1.2e-6
        n = tr.passes
        assert len(tr.residual) == len(tr.state_residual) == len(tr.x0_error) == len(tr.evaluations) == n
        assert tr.x0_error[-1] == pytest.approx(err) and tr.evaluations[-1] == res.evaluations
        assert tr.state_residual[0].shape == (T,) and len(tr.window) == n


def test_freezing_is_exact_with_half_the_network_evaluations(toy) -> None:
    """tol = 0 freezes only states whose inputs are final: exact after T passes, T(T+1)/2 evaluations."""
    prior, op, y = problem(toy)
    ref = reference(prior, op, y, 0.15)
    plain = run(prior, op, y, 0.15, "picard", max_iter=T, tol=0.0)
    frozen = run(prior, op, y, 0.15, "picard-freeze", max_iter=T, tol=0.0)
    assert float((frozen.x0 - ref).abs().max()) < 1e-10
    assert frozen.trace.passes == plain.trace.passes == T
    assert plain.evaluations == T * T and frozen.evaluations == T * (T + 1) // 2
    assert frozen.trace.boundary == list(range(T - 1, -1, -1))  # one more final state per pass


def test_faster_solvers_need_fewer_passes_or_evaluations(toy) -> None:
    prior, op, y = problem(toy)
    ref = reference(prior, op, y, 0.15)
    kw = dict(tol=1e-4, reference=ref)
    picard = run(prior, op, y, 0.15, "picard", max_iter=T + 5, **kw).trace  # 17 passes, 340 evaluations
    anderson = run(prior, op, y, 0.15, "anderson", max_iter=2 * T, **kw).trace  # 36 passes
    taa = run(prior, op, y, 0.15, "taa", max_iter=T, **kw).trace  # 20 passes
    gauss = run(prior, op, y, 0.15, "gauss-freeze", max_iter=T, **kw).trace  # 6 passes, 88 evaluations
    window = run(prior, op, y, 0.15, "picard-window", max_iter=T, **kw).trace  # 18 passes, 87 evaluations
    for tr in (picard, anderson, taa, gauss, window):
        assert tr.converged and tr.x0_error[-1] < 1e-3
    assert 2 * gauss.passes <= picard.passes
    assert gauss.passes < taa.passes < anderson.passes
    assert 2 * gauss.evaluations[-1] < picard.evaluations[-1]
    assert (
        3 * window.evaluations[-1] < picard.evaluations[-1] and max(hi - lo + 1 for lo, hi in window.window) == T // 4
    )


def test_secant_gains_need_fewer_passes_and_keep_finite_termination(toy) -> None:
    """``secant=True`` re-fits each state's gains from its last two evaluations (freezing._secant_gains)."""
    prior, op, y = problem(toy)
    for eta, fewer in ((0.15, 4), (0.85, 7)):  # measured: 6 -> 4 passes at eta 0.15, 12 -> 7 at 0.85
        ref = reference(prior, op, y, eta)
        plain = run(prior, op, y, eta, "gauss-freeze", max_iter=T, tol=1e-4, reference=ref).trace
        sec = run(prior, op, y, eta, "gauss-freeze", max_iter=T, tol=1e-4, reference=ref, secant=True).trace
        assert sec.converged and sec.x0_error[-1] < 1e-6 and sec.passes <= fewer < plain.passes, (
            sec.passes,
            plain.passes,
        )
        exact = run(prior, op, y, eta, "gauss-freeze", max_iter=T, tol=0.0, secant=True)
        assert exact.trace.passes == T and float((exact.x0 - ref).abs().max()) < 1e-12  # the chain after T passes
    with pytest.raises(ValueError, match="x0_scale"):
        run(prior, op, y, 0.15, "gauss-freeze", x0_scale="max")
    with pytest.raises(ValueError, match="rates"):
        run(prior, op, y, 0.15, "gauss-freeze", rates=0)


def test_auto_cautious_rate_keeps_the_book_prior_within_005_db_at_t100() -> None:
    """The exact 256-component prior switches components abruptly: one observed rate can dip by chance and
    freeze a state too early.  Measured (4 images, sr4, T = 100, eta = 0.15): with each state's rate from its
    last ratio only (x_0's from three) auto stopped 0.057 dB from the chain; with the largest of the last three
    for every state (``AUTO.rates = 3``) 0.003 dB, after as many passes (49)."""
    from deqir_edu import fashion_mixture, load_testset
    from deqir_edu.metrics import psnr

    x = load_testset("fashion32", 4).to(torch.float64)
    op = make_operator("sr4", tuple(x.shape[1:]))
    y, prior, steps = op.A(x), fashion_mixture(), 100
    noises = draw_noises(tuple(x.shape), steps, torch.Generator().manual_seed(0))
    chain = psnr(ddnm_sample(prior, op, y, steps=steps, eta=0.15, noises=noises), x)
    res = deqir_sample(prior, op, y, steps=steps, eta=0.15, noises=noises)  # the default solver: auto
    gap = float((psnr(res.x0, x) - chain).abs().max())
    assert res.converged and res.passes < 0.6 * steps and gap < 0.05, (res.passes, gap)


def test_ddim_start_keeps_the_first_iterate_in_range(toy) -> None:
    """Algorithm 1's start x_k = x_T lacks the injected noise (eta > 0): Eq. (9) amplifies the mismatch."""
    prior, op, y = problem(toy)
    chain = chain_config(T, 0.85)
    x_T, noises, _ = prepare_chain(prior, op, y, chain, torch.Generator().manual_seed(1), None)
    first = {}
    for start in ("given", "ddim"):
        f = FixedPointMap(prior, op, y, x_T, noises, chain)
        first[start] = []
        window_solve(
            f,
            x_T.expand(T, *x_T.shape).clone(),
            max_iter=1,
            tol=0.0,
            config=WindowConfig(start=start),
            callback=lambda d, s=start: first[s].append(float(d["states"].abs().max())),
        )
    assert first["ddim"][0] < 20 and 10 * first["ddim"][0] < first["given"][0], first  # measured 8.5, 334


def test_bad_options_raise(toy) -> None:
    prior, op, y = problem(toy)
    with pytest.raises(ValueError, match="unknown solver"):
        run(prior, op, y, 0.15, "no-such-solver")
    with pytest.raises(ValueError, match="window"):
        run(prior, op, y, 0.15, "picard-freeze", window=0)
    with pytest.raises(ValueError, match="form"):
        run(prior, op, y, 0.15, "picard-freeze", form="newton")
    with pytest.raises(ValueError, match="devices"):
        parse_devices(" , ")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            parse_devices("cuda:0,cuda:1")
    args = build_parser().parse_args(["restore", "in.png", "--task", "sr4", "--out", "o.png", "--devices", "cpu,cpu"])
    assert args.devices == "cpu,cpu"


def test_world_size_one_is_the_plain_model(toy) -> None:
    prior, op, y = problem(toy)
    plain = run(prior, op, y, 0.15, "anderson")
    sharded = run(ShardedModel(prior), op, y, 0.15, "anderson")
    assert torch.equal(plain.x0, sharded.x0)


def _fake_work(toy, wrap) -> dict:
    """A callable on tensors as the CLI's restore passes to run_sharded: sample with the sharded model."""
    torch.set_num_threads(1)
    prior, op, y = problem(toy, batch=3)
    model = wrap(prior)
    out = {name: run(model, op, y, 0.15, name, max_iter=T, tol=1e-4).x0 for name in ("anderson", "gauss-window")}
    out["evaluations"] = torch.tensor(model.evaluations)
    return out


def test_two_gloo_ranks_equal_one_process(toy) -> None:
    """``run_sharded`` on cpu,cpu: 2 spawned processes, each evaluates half of every network pass."""
    from functools import partial

    multi = run_sharded(parse_devices("cpu,cpu"), partial(_fake_work, toy))  # toy: a module-level function
    prior, op, y = problem(toy, batch=3)
    counter = ShardedModel(prior)  # world size 1: counts every image of every pass
    passes = 0
    for name in ("anderson", "gauss-window"):
        single = run(counter, op, y, 0.15, name, max_iter=T, tol=1e-4)
        passes += single.trace.passes
        assert float((multi[name] - single.x0).abs().max()) < 1e-6, name
    # rank 0 evaluated its half of every pass (ceil(N / 2) of N images), not all of them
    assert counter.evaluations / 2 <= int(multi["evaluations"]) <= counter.evaluations / 2 + passes


def test_cli_restore_on_two_devices_matches_one(tmp_path) -> None:
    """``deqir-edu restore --devices cpu,cpu`` end to end: a tiny random ADM checkpoint, same PNG as one process."""
    import json

    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from deqir_edu.apps.cli import main
    from deqir_edu.models.networks import ADMUNet

    cfg = {
        "image_size": 16,
        "in_channels": 1,
        "num_channels": 32,
        "num_res_blocks": 1,
        "channel_mult": "1,1",
        "attention_resolutions": "",
        "learn_sigma": False,
    }
    torch.manual_seed(0)
    net = ADMUNet.from_config(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.02 * torch.randn_like(p))
    save_file(net.state_dict(), str(tmp_path / "tiny.safetensors"))
    (tmp_path / "tiny.json").write_text(json.dumps({"architecture": "adm", "config": cfg}))
    src = tmp_path / "clean.png"
    Image.fromarray((np.arange(256).reshape(16, 16) % 251).astype(np.uint8)).save(src)
    outs = []
    for devices in ([], ["--devices", "cpu,cpu"]):
        outs.append(tmp_path / f"out{len(devices)}.png")
        argv = [
            "restore",
            str(src),
            "--task",
            "sr4",
            "--simulate",
            "--steps",
            "4",
            "--iters",
            "3",
            "--model",
            str(tmp_path / "tiny.safetensors"),
            "--out",
            str(outs[-1]),
            *devices,
        ]
        assert main(argv) == 0
    assert np.array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[1])))
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["clean.png", "out0.png", "out2.png"]  # rank 1 wrote none


def _eval_rank(rank: int, world: int, device: torch.device, toy) -> list:
    from deqir_edu.experiments import evaluate

    prior, images, *_ = toy(batch=5, shape=(1, 16, 16))  # SSIM needs 11 x 11 pixels at least
    return evaluate(
        prior,
        images,
        tasks=["sr4", "inpaint-box"],
        methods=["ddnm", "deqir-auto", "deqir-k3"],
        steps=8,
        eta=0.85,
        batch_size=2,
        lpips_fn=None,
    )


def test_evaluate_spreads_images_over_ranks_with_the_rows_of_one_process(toy) -> None:
    """``evaluate`` inside a 2-rank gloo group: batches 0, 2 on rank 0, batch 1 on rank 1, then gathered."""
    from deqir_edu.apps.launch import spawn

    multi = spawn(_eval_rank, ["cpu", "cpu"], toy)
    single = _eval_rank(0, 1, torch.device("cpu"), toy)
    assert len(multi) == len(single) == 6
    for a, b in zip(multi, single, strict=True):
        for key in ("task", "method", "n", "passes", "evaluations", "converged", "psnr_per_image", "psnr", "ssim"):
            assert a[key] == b[key], (a["method"], key, a[key], b[key])


def test_restore_folder_spread_over_two_processes_equals_one_file_at_a_time(tmp_path, capsys) -> None:
    """``restore FOLDER --out DIR --devices cpu,cpu``: images 0, 2 on rank 0, image 1 on rank 1; each output is
    the one ``restore FILE`` writes; existing outputs and the input folder as --out are refused."""
    import numpy as np
    from PIL import Image

    from deqir_edu.apps.cli import main

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(src / f"{name}.png")
    common = ["--task", "sr4", "--model", "fashion32", "--steps", "3", "--sampler", "deqir", "--eta", "0.85"]
    assert main(["restore", str(src), "--out", str(tmp_path / "multi"), "--devices", "cpu,cpu", *common]) == 0
    for name in ("a", "b", "c"):
        assert main(["restore", str(src / f"{name}.png"), "--out", str(tmp_path / f"one_{name}.png"), *common]) == 0
        multi = np.asarray(Image.open(tmp_path / "multi" / f"{name}.png"))
        single = np.asarray(Image.open(tmp_path / f"one_{name}.png"))
        assert multi.shape == (32, 32) and np.array_equal(multi, single), name
    capsys.readouterr()
    assert main(["restore", str(src), "--out", str(tmp_path / "multi"), *common]) == 2  # outputs exist
    assert "--overwrite" in capsys.readouterr().err
    assert main(["restore", str(src), "--out", str(src), *common]) == 2  # never into the inputs
    assert sorted(p.name for p in src.iterdir()) == ["a.png", "b.png", "c.png"]
    assert main(["restore", str(src), "--out", str(tmp_path / "multi"), "--overwrite", *common]) == 0
