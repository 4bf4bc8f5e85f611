"""Tests for deqir_edu.metrics: PSNR known values, SSIM against scikit-image, consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from deqir_edu import consistency, make_operator, psnr, ssim
from deqir_edu.metrics import nn_distance

skmetrics = pytest.importorskip("skimage.metrics")  # test dependency only
skdata = pytest.importorskip("skimage.data")


def sk_ssim(x: torch.Tensor, ref: torch.Tensor) -> list[float]:
    """scikit-image reference on [0, 1] images, one value per image of a (B, C, H, W) batch."""
    u = ((x.double() + 1) / 2).clamp(0, 1).numpy()
    v = ((ref.double() + 1) / 2).clamp(0, 1).numpy()
    return [
        float(
            skmetrics.structural_similarity(
                u[i],
                v[i],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
                channel_axis=0,
            )
        )
        for i in range(u.shape[0])
    ]


def to_pm1(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) photo -> (1, C, H, W) float64 in [-1, 1]."""
    t = torch.from_numpy(img.astype(np.float64) / 127.5 - 1.0)
    return (t[None] if t.dim() == 2 else t.permute(2, 0, 1))[None]


# ---------------------------------------------------------------- PSNR
def test_psnr_identical_is_inf_and_shape() -> None:
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64) * 2 - 1
    out = psnr(x, x)
    assert out.shape == (3,) and torch.isinf(out).all() and (out > 0).all()


def test_psnr_known_values() -> None:
    ref = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    x = ref.clone()
    x[0] += 0.2  # [0, 1] difference 0.1 everywhere -> mse 1e-2 -> 20 dB
    x[1, :, :4] += 0.02  # difference 0.01 on half of the pixels -> mse 5e-5
    out = psnr(x, ref)
    assert out.dtype == torch.float64
    assert torch.allclose(out, torch.tensor([20.0, -10 * math.log10(5e-5)], dtype=torch.float64))


def test_psnr_clamps_to_valid_range() -> None:
    ref = torch.ones(1, 1, 4, 4)
    assert torch.isinf(psnr(ref * 3.0, ref)).all()  # 3 is clamped to 1
    assert torch.allclose(psnr(-ref, ref), torch.zeros(1))  # black vs white: mse 1 -> 0 dB
    assert psnr(ref.float(), ref.float()).dtype == torch.float32


# ---------------------------------------------------------------- SSIM
@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    c=st.sampled_from([1, 3]),
    h=st.integers(11, 24),
    w=st.integers(11, 24),
    noise=st.floats(0.01, 1.0),
)
def test_ssim_matches_skimage_random(seed: int, c: int, h: int, w: int, noise: float) -> None:
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(2, c, h, w, generator=g, dtype=torch.float64) * 2 - 1
    x = ref + noise * torch.randn(2, c, h, w, generator=g, dtype=torch.float64)  # partly out of range
    ours = ssim(x, ref)
    assert ours.shape == (2,)
    assert np.allclose(ours.numpy(), sk_ssim(x, ref), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ssim_matches_skimage_structured(dtype: torch.dtype) -> None:
    cam = to_pm1(skdata.camera()[::8, ::8])  # (1, 1, 64, 64) photo
    astro = to_pm1(skdata.astronaut()[::8, ::8])  # (1, 3, 64, 64) photo
    for ref in (cam, astro):
        blurred = (ref + ref.roll(1, -1) + ref.roll(1, -2)) / 3  # a plausible restoration
        dark = 0.7 * ref - 0.2
        x = torch.cat([blurred, dark, ref])
        refs = ref.expand_as(x)
        ours = ssim(x.to(dtype), refs.to(dtype))
        assert ours.dtype == dtype
        expected = sk_ssim(x, refs)
        assert np.allclose(ours.double().numpy(), expected, rtol=0, atol=1e-4)
        assert abs(expected[2] - 1.0) < 1e-12 and expected[0] < 0.99


def test_metrics_errors() -> None:
    x = torch.zeros(2, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        ssim(x, torch.full_like(x, torch.nan))
    with pytest.raises(ValueError, match="at least 11 x 11"):
        ssim(x[..., :8, :8], x[..., :8, :8])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        psnr(x[0], x[0])


# ---------------------------------------------------------------- consistency
def test_consistency_values() -> None:
    op = make_operator("colorize", (3, 8, 8))
    g = torch.Generator().manual_seed(0)
    x_true = torch.rand(2, 3, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    y = op.A(x_true)
    assert torch.allclose(consistency(x_true, y, op), torch.zeros(2, dtype=torch.float64))
    x = x_true.clone()
    x[0] += 0.3  # shifts the grey value of image 0 by 0.3 at all 64 pixels
    l2 = consistency(x, y, op)
    assert l2.shape == (2,) and torch.allclose(l2, torch.tensor([0.3 * 8, 0.0], dtype=torch.float64))
    assert torch.allclose(consistency(x, y, op, norm="l1"), torch.tensor([0.3 * 64, 0.0], dtype=torch.float64))
    assert torch.allclose(consistency(x, y, op, unit_range=True), l2 / 2)
    # the [0, 1] identity behind unit_range: A u - y01 = (A x - y) / 2 for u = (x + 1) / 2
    y01 = op.A((x_true + 1) / 2)
    assert torch.allclose((op.A((x + 1) / 2) - y01).flatten(1).norm(dim=1), l2 / 2)
    # a null-space projection is consistent by construction (Eq. (5))
    x_hat = op.null_space_project(torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64), y)
    assert consistency(x_hat, y, op).max() < 1e-12


def test_consistency_errors_and_user_operator() -> None:
    class Crop:  # any object with A and A_pinv
        def A(self, x):
            return x[..., :4]

        def A_pinv(self, y):
            return torch.cat([y, torch.zeros_like(y)], dim=-1)

    x = torch.ones(1, 1, 4, 8)
    assert torch.allclose(consistency(x, torch.zeros(1, 1, 4, 4), Crop()), torch.tensor([4.0]))
    with pytest.raises(ValueError, match="A\\(x\\) has shape"):
        consistency(x, torch.zeros(1, 1, 4, 8), Crop())
    with pytest.raises(ValueError, match="norm must be"):
        consistency(x, torch.zeros(1, 1, 4, 4), Crop(), norm="linf")
    with pytest.raises(ValueError, match="NaN"):
        consistency(x, torch.full((1, 1, 4, 4), torch.nan), Crop())


def test_nn_distance_finds_the_nearest_reference() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64)
    assert nn_distance(ref, ref) == 0.0
    x = ref[:2] + 0.1  # each is 0.1 (RMS) from its source, farther from the others
    others = torch.cdist(x.flatten(1), ref.flatten(1)) / 4
    assert nn_distance(x, ref) == pytest.approx(float(others.min(dim=1).values.mean()))
    assert nn_distance(x, ref) <= 0.1 + 1e-12
    with pytest.raises(ValueError, match="same image shape"):
        nn_distance(x, ref[:, :, :2])
