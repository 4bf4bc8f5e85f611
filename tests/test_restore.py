"""Restoration of image files and of images larger than the model (tiles)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import deqir_edu as dq
from deqir_edu.apps import TileSampling, load_image, restore_tiled, save_image
from deqir_edu.experiments import bicubic_upsample, restore
from deqir_edu.operators import observation_shape, sr_scale


@pytest.fixture(scope="module")
def prior(toy) -> dq.GaussianMixturePrior:
    """The shared toy problem's prior (conftest): 6 components in [-1, 1] over grey 16 x 16 images."""
    return toy(shape=(1, 16, 16), components=6, scale=1.0).prior


def test_image_roundtrip(tmp_path):
    x = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    path = save_image(x, tmp_path / "a.png")
    back = load_image(path, 3)
    assert back.shape == (1, 3, 8, 8)
    assert (back - x).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit quantisation
    grey = load_image(path, 1)
    assert grey.shape == (1, 1, 8, 8)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image(tmp_path / "nope.png", 3)


def test_scales_and_shapes():
    assert sr_scale("sr4") == 4 and sr_scale("sr2-bicubic") == 2 and sr_scale("inpaint-box") == 1
    assert observation_shape("sr4", (3, 64, 64)) == (3, 16, 16)
    assert observation_shape("colorize", (3, 64, 64)) == (1, 64, 64)


def test_bicubic_upsample_baseline():
    """Bicubic interpolation: the scaled size, a constant stays constant, overshoot is clipped to [-1, 1]."""
    assert torch.allclose(bicubic_upsample(torch.full((2, 3, 4, 4), 0.3), 4), torch.full((2, 3, 16, 16), 0.3))
    edge = torch.tensor([[-1.0, -1.0, 1.0, 1.0]]).repeat(4, 1).view(1, 1, 4, 4)
    up = bicubic_upsample(edge, 2)
    assert up.shape == (1, 1, 8, 8) and up.min() == -1 and up.max() == 1  # bicubic alone overshoots a step
    assert F.interpolate(edge, scale_factor=2, mode="bicubic", align_corners=False).abs().max() > 1


@pytest.mark.parametrize("task", ["sr4", "inpaint-box", "inpaint-random", "deblur-gauss"])
def test_tiled_restoration_is_consistent(prior, task):
    """A 40x40 image from 16x16 tiles: right shape, exactly consistent with y (final Eq. (5))."""
    big = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1
    op = dq.make_operator(task, (1, 40, 40))
    y = op.A(big)
    out = restore_tiled(
        prior,
        task,
        y,
        (40, 40),
        sampling=TileSampling(sampler="ddnm", steps=8, eta=0.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert out.shape == (1, 1, 40, 40)
    assert torch.isfinite(out).all()
    assert (op.A(out) - y).abs().max() < 1e-10


def test_single_tile_equals_plain_restore(prior):
    """An image of exactly the model's size is one tile: the same as calling the sampler."""
    x = prior.sample(1, generator=torch.Generator().manual_seed(2))
    op = dq.make_operator("sr4", (1, 16, 16))
    y = op.A(x)
    a = restore_tiled(
        prior,
        "sr4",
        y,
        (16, 16),
        sampling=TileSampling(sampler="ddnm", steps=8, eta=0.0),
        generator=torch.Generator().manual_seed(0),
    )
    b = restore(prior, op, y, sampler="ddnm", steps=8, eta=0.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a, b, atol=1e-10)


def test_tiled_restoration_beats_baseline():
    """Periodic 4x4 patterns: every tile origin (a multiple of 4) sees a mixture component again, so
    the tiled DDNM result must beat A^+ y clearly and stay consistent across the seams."""
    g = torch.Generator().manual_seed(3)
    patterns = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    tiled_prior = dq.GaussianMixturePrior(patterns.repeat(1, 1, 4, 4), std=0.05)
    big = patterns[2:3].repeat(1, 1, 8, 8)  # (1, 1, 32, 32)
    op = dq.make_operator("sr2", (1, 32, 32))
    y = op.A(big)
    out = restore_tiled(
        tiled_prior,
        "sr2",
        y,
        (32, 32),
        overlap=4,
        sampling=TileSampling(sampler="ddnm", steps=10, eta=0.0),
        generator=torch.Generator().manual_seed(0),
    )
    assert dq.psnr(out, big).item() > dq.psnr(op.A_pinv(y), big).item() + 3.0


def test_mean_of_k_runs_is_consistent_and_closer_to_the_truth(prior):
    """``samples=k`` averages k runs per image: still A x = y (A is linear, and the k runs of an image
    are averaged with each other, not with another image's), and a lower squared error than one run."""
    x = prior.sample(8, generator=torch.Generator().manual_seed(4))
    op = dq.make_operator("sr4", (1, 16, 16))
    y = op.A(x)
    one = restore(prior, op, y, sampler="ddnm", steps=10, eta=0.85, generator=torch.Generator().manual_seed(0))
    mean = restore(
        prior, op, y, sampler="ddnm", steps=10, eta=0.85, samples=16, generator=torch.Generator().manual_seed(0)
    )
    assert mean.shape == x.shape and (op.A(mean) - y).abs().max() < 1e-10
    assert (mean - x).square().mean() < 0.8 * (one - x).square().mean()
    runs = restore(
        prior, op, y.repeat(16, 1, 1, 1), sampler="ddnm", steps=10, eta=0.85, generator=torch.Generator().manual_seed(0)
    )
    assert torch.allclose(mean, runs.reshape(16, 8, 1, 16, 16).mean(0), atol=1e-12)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        restore(prior, op, y, sampler="ddnm", samples=0)


def test_bad_inputs(prior):
    y = torch.zeros(1, 1, 9, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="not divisible"):
        restore_tiled(prior, "sr4", y, (38, 38))
    with pytest.raises(ValueError, match="unknown task"):
        restore_tiled(prior, "sr3", y, (36, 36))
    with pytest.raises(ValueError, match="smaller than the model"):
        restore_tiled(prior, "inpaint-box", torch.zeros(1, 1, 8, 8, dtype=torch.float64), (8, 8))
    with pytest.raises(ValueError, match="NaN"):
        restore_tiled(prior, "sr4", torch.full((1, 1, 10, 10), float("nan"), dtype=torch.float64), (40, 40))
    with pytest.raises(ValueError, match="unknown sampler"):
        restore(
            prior, dq.make_operator("sr4", (1, 16, 16)), torch.zeros(1, 1, 4, 4, dtype=torch.float64), sampler="magic"
        )
