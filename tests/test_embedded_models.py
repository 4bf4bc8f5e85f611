"""The shipped weights in data/models/: they load fast, say how they were trained, and restore.

These tests run the real embedded networks on a few frozen test images (a few seconds each); the
full quality figures are in data/models/README.md (scripts/model_card_*.py).
"""

from __future__ import annotations

import json
import time

import pytest
import torch

import deqir_edu as dq
from deqir_edu.core import data_dir
from deqir_edu.metrics import nn_distance


@pytest.mark.parametrize("name, shape, min_steps", [("fashion32", (1, 32, 32), 15000), ("photo32", (3, 32, 32), 17000)])
def test_shipped_weights_load_fast_and_record_their_recipe(name: str, shape: tuple, min_steps: int) -> None:
    dq.load_model(name)  # warm the imports (networks, safetensors)
    t0 = time.perf_counter()
    model = dq.load_model(name)
    assert time.perf_counter() - t0 < 1.0
    assert model.image_shape == shape and not model.learn_sigma
    assert not any(p.requires_grad for p in model.parameters())
    meta = json.loads((data_dir() / "models" / f"{name}.json").read_text())
    assert meta["config"]["name"] == name and meta["config"]["steps"] >= min_steps
    assert (data_dir() / "models" / f"{name}.safetensors").stat().st_size < 10 * 2**20  # a few MB
    log = (data_dir() / "models" / f"{name}_loss.csv").read_text().splitlines()
    last = float(log[-1].split(",")[1])
    assert 0 < last < 0.1  # eps-prediction MSE: 1.0 for an untrained network


@pytest.mark.parametrize("name, ratio", [("fashion32", 0.5), ("photo32", 0.8)])
def test_samples_are_nearer_the_test_set_than_noise(name: str, ratio: float) -> None:
    """DDIM samples against the frozen test set: fashion32's sit as close as training images do (model
    card: 0.355 vs 0.360), photo32's between training patches and noise (0.49; 0.37 and 0.76)."""
    model = dq.load_model(name)
    test = dq.load_testset(name)
    shape = (16, *model.image_shape)
    samples = dq.ddim_sample(model, shape, steps=10, eta=0.0, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    assert nn_distance(samples.clamp(-1, 1), test) < ratio * nn_distance(noise, test)


@pytest.mark.parametrize("task, gain", [("sr4", 3.0), ("inpaint-random", 8.0), ("deblur-gauss", 8.0)])
def test_fashion32_ddnm_beats_the_pseudo_inverse(task: str, gain: float) -> None:
    """The issue's targets (T = 20, eta = 0.85, no clipping), on the first 8 frozen test images."""
    model = dq.load_model("fashion32")
    x = dq.load_testset("fashion32", n=8)
    op = dq.make_operator(task, (1, 32, 32), **({"missing": 0.8} if task == "inpaint-random" else {}))
    y = op.A(x)
    out = dq.ddnm_sample(model, op, y, steps=20, eta=0.85, generator=torch.Generator().manual_seed(0))
    assert float(dq.psnr(out, x).mean()) > float(dq.psnr(op.A_pinv(y), x).mean()) + gain


@pytest.mark.parametrize("task, gain", [("colorize", 2.5), ("inpaint-random", 6.0)])
def test_photo32_ddnm_beats_the_pseudo_inverse_on_held_out_crops(task: str, gain: float) -> None:
    """Colour from a grey image, and 80 % missing pixels, on 16 crops of photographs the model never
    saw (T = 20, eta = 0.85); colorization needs the channel means that 8 GroupNorm groups let through."""
    model = dq.load_model("photo32")
    x = dq.load_testset("photo32")[::4]
    op = dq.make_operator(task, (3, 32, 32), **({"missing": 0.8} if task == "inpaint-random" else {}))
    y = op.A(x)
    out = dq.ddnm_sample(model, op, y, steps=20, eta=0.85, generator=torch.Generator().manual_seed(0))
    assert float(dq.psnr(out, x).mean()) > float(dq.psnr(op.A_pinv(y), x).mean()) + gain


def test_photo32_sr4_mean_of_16_runs_beats_bicubic() -> None:
    """x4 SR on 16 held-out crops: the mean of 16 DDNM runs (an estimate of the posterior mean) beats
    bicubic interpolation by more than 0.3 dB and one run (one posterior draw) by more than 1.5 dB.
    Measured here: +0.47 and +2.42 dB; the model card's 32 crops give +0.55 dB over bicubic (the issue's
    target is +0.5) and one run -1.54."""
    from deqir_edu.experiments import bicubic_upsample, restore

    model = dq.load_model("photo32")
    x = dq.load_testset("photo32")[::4]
    op = dq.make_operator("sr4", (3, 32, 32))
    y = op.A(x)
    bicubic = float(dq.psnr(bicubic_upsample(y, 4), x).mean())
    one, mean16 = (
        float(
            dq.psnr(
                restore(
                    model,
                    op,
                    y,
                    sampler="ddnm",
                    steps=20,
                    eta=0.85,
                    samples=k,
                    generator=torch.Generator().manual_seed(0),
                ),
                x,
            ).mean()
        )
        for k in (1, 16)
    )
    print(f"bicubic {bicubic:.3f}  one run {one:.3f}  mean of 16 {mean16:.3f}")
    assert mean16 > bicubic + 0.3 and mean16 > one + 1.5
