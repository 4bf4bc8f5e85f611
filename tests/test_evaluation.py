"""`deqir-edu eval`, the ablations and the official-code coefficients, on exact priors and a tiny network."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import deqir_edu as dq
import deqir_edu.metrics.lpips as L
from deqir_edu.apps.cli import main
from deqir_edu.diffusion import chain_config, ddim_timesteps, official_chain, official_noises
from deqir_edu.experiments import (
    NA_SMALL,
    NA_WEIGHTS,
    TASKS_COLOUR,
    TASKS_GREY,
    Method,
    compare_coefficient_sets,
    evaluate,
    iterate_curve,
    parse_method,
    per_image_gap,
    read_results,
    sweep,
    write_results,
)
from deqir_edu.sampling import FixedPointMap


@pytest.fixture(scope="module")
def grey(toy) -> tuple[dq.GaussianMixturePrior, torch.Tensor]:
    """The shared toy problem (conftest): 6 components in [-1, 1] over grey 16 x 16 images, two images."""
    prior, x, *_ = toy(shape=(1, 16, 16), components=6, scale=1.0, sample_seed=1)
    return prior, x


@pytest.fixture(scope="module")
def colour(toy) -> tuple[dq.GaussianMixturePrior, torch.Tensor]:
    """The same on colour 16 x 16 images (another seed)."""
    prior, x, *_ = toy(shape=(3, 16, 16), components=6, scale=1.0, seed=2, sample_seed=3)
    return prior, x


# ------------------------------------------------------------------------------------------ the grid
def test_picard_at_k_equals_t_matches_ddnm_on_every_task(grey, colour) -> None:
    rows = []
    for (prior, x), tasks in ((grey, TASKS_GREY), (colour, ("colorize",))):
        rows += evaluate(prior, x, tasks=tasks, methods=["ddnm", "deqir-picard"], steps=20, batch_size=2, lpips_fn=None)
    assert {r["task"] for r in rows} == set(TASKS_COLOUR)
    for task in TASKS_COLOUR:
        ddnm, pic = (next(r for r in rows if r["task"] == task and r["method"] == m) for m in ("ddnm", "deqir-picard"))
        # PSNR above 100 dB means an error below 1e-5: rounding noise (deblur-gauss is invertible on 16 x 16,
        # so every method returns x to ~1e-15 and the PSNR of ~300 dB only measures float64 round-off)
        cap = lambda r: np.minimum(np.array(r["psnr_per_image"]), 100.0)  # noqa: E731
        gaps = np.abs(cap(ddnm) - cap(pic))
        assert gaps.max() < 0.01, (task, gaps)
        assert (ddnm["evaluations"], ddnm["passes"]) == (20, 20)
        assert (pic["evaluations"], pic["passes"], pic["iters"]) == (400, 20, 20)
        assert pic["consistency"] < 1e-8  # x_0 = A^+ y + (I - A^+ A) x_{0|1} is exactly consistent


def test_unconverged_anderson_differs_and_columns_are_sane(grey) -> None:
    prior, x = grey
    rows = evaluate(prior, x, tasks=["sr4"], methods=["pinv", "ddnm", "deqir-k2", "ddnm-t5"], steps=10, lpips_fn=None)
    by = {r["method"]: r for r in rows}
    assert by["pinv"]["evaluations"] == 0 and by["pinv"]["passes"] == 0
    assert by["deqir-k2"]["passes"] == 2 and by["deqir-k2"]["evaluations"] == 20 and not by["deqir-k2"]["converged"]
    assert by["ddnm-t5"]["steps"] == 5 and by["ddnm-t5"]["evaluations"] == 5
    assert abs(by["deqir-k2"]["psnr"] - by["ddnm"]["psnr"]) > 0.01  # two iterations are not the chain
    assert by["pinv"]["cons"] < 0.05 * x.shape[-1] ** 2  # 8-bit rounding only
    assert all(math.isfinite(r["psnr"]) and -1 <= r["ssim"] <= 1 for r in rows), rows


def test_results_do_not_depend_on_batch_size(grey) -> None:
    prior, x = grey
    kw = dict(tasks=["sr4"], methods=["ddnm", "deqir-k3", "deqir-picard"], steps=6, tol=0.0, lpips_fn=None)
    a = evaluate(prior, x, batch_size=1, **kw)
    b = evaluate(prior, x, batch_size=2, **kw)
    for ra, rb in zip(a, b, strict=False):
        assert ra["psnr_per_image"] == pytest.approx(rb["psnr_per_image"], abs=1e-9)


def test_lpips_is_never_a_silent_zero(grey, monkeypatch) -> None:
    prior, x = grey
    monkeypatch.setattr(L, "lpips_available", lambda: (False, "no weights in this test"))
    rows = evaluate(prior, x, tasks=["sr2"], methods=["pinv", "ddnm"], steps=4)  # "auto" without weights
    assert [r["lpips"] for r in rows] == [NA_WEIGHTS, NA_WEIGHTS]
    rows = evaluate(prior, x, tasks=["sr2"], methods=["pinv"], steps=4, lpips_fn=L.LPIPS.random())
    assert rows[0]["lpips"] == NA_SMALL  # 16 px: AlexNet-LPIPS needs >= 31 px


def test_lpips_filled_with_an_injected_network(toy) -> None:
    prior, x, *_ = toy(shape=(1, 32, 32), scale=1.0, sample_seed=0)
    net = L.LPIPS.random(seed=3)
    rows = evaluate(prior, x, tasks=["sr4"], methods=["pinv", "ddnm"], steps=4, lpips_fn=net)
    op = dq.make_operator("sr4", (1, 32, 32))
    want = float(net(op.A_pinv(op.A(x)).float(), x.float()).mean())
    assert rows[0]["lpips"] == pytest.approx(want, rel=1e-6)
    assert all(isinstance(r["lpips"], float) and r["lpips"] > 0 for r in rows)


def test_bad_inputs(grey) -> None:
    prior, x = grey
    with pytest.raises(ValueError, match="colorize needs a 3-channel"):
        evaluate(prior, x, tasks=["colorize"], methods=["pinv"], lpips_fn=None)
    with pytest.raises(ValueError, match="images must be"):
        evaluate(prior, x[:, :, :8], tasks=["sr2"], methods=["pinv"], lpips_fn=None)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(prior, x, tasks=["sr3"], methods=["pinv"], lpips_fn=None)
    for bad in ("deqir-x", "ddnm-k5", "pinv-t3", "deqir-t0-k2", "anderson"):
        with pytest.raises(ValueError, match="method"):
            parse_method(bad)
    assert parse_method("deqir-t35-k7") == Method("deqir-t35-k7", "deqir", 35, 7, "anderson")
    assert parse_method("deqir-picard", steps=12).iters == 12


def test_json_and_markdown_writer(grey, tmp_path) -> None:
    prior, x = grey
    rows = evaluate(prior, x, tasks=["sr2", "inpaint-stripes"], methods=["pinv", "deqir-k2"], steps=4, lpips_fn=None)
    js, md = write_results(rows, tmp_path / "out", {"command": "deqir-edu eval --test", "model": "prior"})

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(js.read_text(), parse_constant=no_constants)
    assert data["meta"]["model"] == "prior" and data["rows"] == rows
    meta, back = read_results(tmp_path / "out")
    assert back == rows and meta["command"] == "deqir-edu eval --test"
    text = md.read_text()
    assert "## sr2" in text and "## inpaint-stripes" in text and "deqir-edu eval --test" in text
    assert text.count(NA_WEIGHTS) == 4 and "| deqir-k2 | 4 | 2* |" in text
    with pytest.raises(FileNotFoundError):
        read_results(tmp_path / "missing")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_eval_end_to_end_on_a_tiny_checkpoint(tmp_path, capsys) -> None:
    from safetensors.torch import save_file

    from deqir_edu.training import build_model, load_config

    cfg = load_config("tiny")["model"]  # 1 x 16 x 16 ADM UNet, random weights: a pipeline check, not a restoration
    torch.manual_seed(0)
    net = build_model(cfg)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "tiny.safetensors"))
    (tmp_path / "tiny.json").write_text(json.dumps({"architecture": "adm", "image_shape": [1, 16, 16], "config": cfg}))
    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((20, 24)) * 255).astype(np.uint8)).save(pics / f"{i}.png")
    out = tmp_path / "res"
    rc = main(
        [
            "eval",
            "--model",
            str(tmp_path / "tiny.safetensors"),
            "--n",
            "2",
            "--images",
            str(pics),
            "--tasks",
            "sr2,inpaint-stripes",
            "--methods",
            "pinv,ddnm,deqir-k2,deqir-picard",
            "--steps",
            "3",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    meta, rows = read_results(out)
    assert len(rows) == 8 and meta["n"] == 2 and meta["command"].startswith("deqir-edu eval --model")
    assert "folder" in meta["images"] and (out / "results.md").is_file()
    for task in ("sr2", "inpaint-stripes"):
        by = {r["method"]: r for r in rows if r["task"] == task}
        assert (by["ddnm"]["evaluations"], by["deqir-picard"]["evaluations"], by["deqir-k2"]["evaluations"]) == (
            3,
            9,
            6,
        )
    assert set(per_image_gap(rows)) == {"sr2", "inpaint-stripes"} and max(per_image_gap(rows).values()) < 0.01
    assert "wrote" in capsys.readouterr().out
    assert main(["eval", "--model", str(tmp_path / "tiny.safetensors"), "--n", "0", "--images", str(pics)]) == 2


def test_per_image_gap_is_the_largest_difference_per_task() -> None:
    rows = [
        {"task": "sr4", "method": "ddnm", "psnr_per_image": [20.0, 30.0]},
        {"task": "sr4", "method": "deqir-picard", "psnr_per_image": [20.5, 29.0]},
        {"task": "colorize", "method": "ddnm", "psnr_per_image": [18.0]},
        {"task": "colorize", "method": "deqir-picard", "psnr_per_image": [18.25]},
        {"task": "deblur-gauss", "method": "ddnm", "psnr_per_image": [40.0]},
    ]  # no Picard row: left out
    assert per_image_gap(rows) == {"sr4": 1.0, "colorize": 0.25}
    assert per_image_gap(rows, "ddnm", "pinv") == {}


# ------------------------------------------------------------------------------------------ official code
def test_official_readme_setting_coefficients() -> None:
    T = 20
    base = chain_config(T, 0.0)
    readme = official_chain(T)  # etw = 0.1, nw = 0, --use_svd
    prev = base.abar[:-1]
    assert torch.equal(readme.c1, torch.zeros(T + 1))  # no fresh noise at all
    assert torch.allclose(readme.c2[1:], (1 - prev).sqrt() * math.sqrt(0.99), atol=0, rtol=1e-15)
    plain = official_chain(T, etw=0.0)  # etw = nw = 0 is DDIM eta = 0
    assert torch.allclose(plain.c2, base.c2) and torch.allclose(plain.c1, base.c1)
    nosvd = official_chain(T, svd=False)
    assert torch.allclose(nosvd.c2[1:], readme.c2[1:] * (1 - prev**2).sqrt())
    x_T, eps = official_noises((2, 1, 4, 4), T, torch.Generator().manual_seed(0))
    assert torch.equal(eps[0], eps[-1]) and x_T.shape == (2, 1, 4, 4)
    with pytest.raises(ValueError):
        official_chain(T, etw=1.5)


@pytest.mark.parametrize("svd", [True, False])
def test_official_cumulative_formula_is_our_fixed_point_map(grey, svd) -> None:
    """Re-derive the official code's F (cumulative sums of (e2 - e1) Q eps, current-step P eps) independently
    and compare it with FixedPointMap built on official_coefficients."""
    prior, x = grey
    op = dq.make_operator("sr2", (1, 16, 16))
    y, T, etw, nw = op.A(x), 6, 0.1, 0.3
    g = torch.Generator().manual_seed(5)
    x_T, noises = dq.draw_noises(tuple(x.shape), T, g)
    states = torch.randn(T, *x.shape, generator=g, dtype=torch.float64)
    ac = prior.alphas_cumprod
    ts = ddim_timesteps(T)
    abar = torch.cat([torch.ones(1, dtype=torch.float64), ac[ts]])
    Q = lambda v: v - op.A_pinv(op.A(v))  # noqa: E731
    P = lambda v: op.A_pinv(op.A(v))  # noqa: E731
    want = torch.empty_like(states)
    cum = torch.zeros_like(x)
    for i in range(T):  # official index i: current state k = T - i, output x_{k-1}
        k = T - i
        a_t, a_n = abar[k], abar[k - 1]
        sig = 1.0 if svd else float((1 - a_n**2).sqrt())
        xin = x_T if i == 0 else states[k]
        et = prior(xin, torch.full((x.shape[0],), int(ts[k - 1])))
        e1 = ((1 - a_t) / a_t).sqrt()
        e2 = (1 - a_n).sqrt() * math.sqrt(1 - etw**2) * sig / a_n.sqrt()
        nc = (1 - a_n).sqrt() * nw * sig / a_n.sqrt()
        cum = cum + (e2 - e1) * Q(et) + nc * Q(noises[i])
        want[k - 1] = (a_n / abar[T]).sqrt() * Q(x_T) + a_n.sqrt() * (
            cum + e2 * P(et) + nc * P(noises[i]) + op.A_pinv(y)
        )
    f = FixedPointMap(prior, op, y, x_T, noises, official_chain(T, etw, nw, svd))
    assert (f(states) - want).abs().max() < 1e-10


def test_any_coefficient_set_keeps_proposition_1(grey) -> None:
    prior, x = grey
    op = dq.make_operator("inpaint-text", (1, 16, 16))
    y = op.A(x)
    noises = dq.draw_noises(tuple(x.shape), 8, torch.Generator().manual_seed(0))
    for chain in (official_chain(8), official_chain(8, svd=False), chain_config(8, 0.15)):
        seq = dq.ddnm_sample(prior, op, y, noises=noises, chain=chain)
        res = dq.deqir_sample(
            prior, op, y, noises=noises, chain=chain, solver="picard", max_iter=8, solver_options={"tol": 0.0}
        )
        assert (seq - res.x0).abs().max() < 1e-10 and res.evaluations == 64 and res.passes == 8
    ref = dq.ddnm_sample(prior, op, y, steps=8, eta=0.15, noises=noises)
    assert torch.equal(dq.ddnm_sample(prior, op, y, noises=noises, chain=chain_config(8, 0.15)), ref)
    with pytest.raises(ValueError, match="ChainConfig"):
        dq.ddnm_sample(prior, op, y, noises=noises, chain="eta=0.15")
    with pytest.raises(ValueError, match="noise schedule"):  # a chain built for another schedule
        dq.ddnm_sample(prior, op, y, noises=noises, chain=chain_config(8, 0.15, prior.alphas_cumprod * 0.9))


def test_official_setting_runs_the_freezing_solvers(grey) -> None:
    """The chain configuration replaces the official code's own copies of the samplers: every
    registered solver runs on the official setting, and finite termination still holds."""
    prior, x = grey
    op = dq.make_operator("sr2", (1, 16, 16))
    y = op.A(x)
    noises = dq.draw_noises(tuple(x.shape), 8, torch.Generator().manual_seed(1))
    chain = official_chain(8, etw=0.1, nw=0.3)
    assert chain.eta is None and chain.setting.startswith("official")
    seq = dq.ddnm_sample(prior, op, y, noises=noises, chain=chain)
    for solver in ("picard-freeze", "taa", "gauss-freeze"):
        res = dq.deqir_sample(
            prior, op, y, noises=noises, chain=chain, solver=solver, max_iter=8, solver_options={"tol": 0.0}
        )
        assert (res.x0 - seq).abs().max() < 1e-8, solver


# ------------------------------------------------------------------------------------------ ablations
def test_ablation_functions(grey) -> None:
    prior, x = grey
    op = dq.make_operator("sr4", (1, 16, 16))
    curve = iterate_curve(prior, op, x, steps=6, solver="picard", keep_images=True)
    assert curve["k"] == list(range(1, 7)) and curve["to_chain"][-1] < 1e-10
    assert curve["psnr"][-1] == pytest.approx(curve["chain"]["psnr"], abs=1e-8)
    assert curve["images"].shape == (6, *x.shape)
    rows = sweep(prior, op, x, "iters", [1, 6], steps=6, solver="picard")
    assert rows[0]["to_chain"] > 1e-3 and rows[1]["to_chain"] < 1e-10 and abs(rows[1]["gap"]) < 1e-8
    rows = sweep(prior, op, x, "steps", [3, 5], iters=5, solver="picard")
    assert rows[1]["to_chain"] < 1e-10 and rows[0]["evaluations"] == 15
    rows = compare_coefficient_sets(prior, op, x, steps=5, iters=5)
    assert len(rows) == 5 and all(len(r["ddnm_psnr"]) == 2 for r in rows)
    with pytest.raises(ValueError, match="factor"):
        sweep(prior, op, x, "T", [3])


# ------------------------------------------------------------------------------------------ full-scale script
def test_reproduce_table1_runs_offline_until_the_weights(monkeypatch, capsys) -> None:
    import importlib.util
    from pathlib import Path

    import deqir_edu.models as zoo
    from deqir_edu.core.download import DownloadError

    path = Path(__file__).resolve().parents[1] / "scripts" / "reproduce_table1.py"
    spec = importlib.util.spec_from_file_location("reproduce_table1", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = ["--n", "1", "--tasks", "sr4-bicubic", "--device", "cpu"]
    assert script.main(args + ["--baseline-only"]) == 0
    out = capsys.readouterr().out
    assert "| sr4-bicubic | pinv |" in out and "25.15" in out  # ours beside the paper's ImageNet baseline

    def offline(name, **kw):
        raise DownloadError(f"could not download {name} (offline in this test)")

    monkeypatch.setattr(zoo, "load_model", offline)
    assert script.main(args) == 3
    assert "deqir-edu download adm-imagenet256" in capsys.readouterr().err
