"""The exact Gaussian-mixture prior: its noise predictor is E[eps | x_t] (Tweedie), checked two ways."""

from __future__ import annotations

import pytest
import torch

from deqir_edu.diffusion import GaussianMixturePrior

SHAPE = (3, 8, 8)


@pytest.mark.parametrize("t", [0, 50, 300, 700, 999])
def test_eps_is_scaled_score(toy, t: int) -> None:
    """eps(x_t) = -sqrt(1 - abar_t) grad_x log p_t(x_t), with log p_t by autograd."""
    prior = toy(weights=True).prior  # the shared toy problem (conftest), unequal weights
    g = torch.Generator().manual_seed(1)
    a = prior.alphas_cumprod[t]
    x0 = prior.sample(5, g)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t.requires_grad_(True)
    tt = torch.full((5,), t, dtype=torch.long)
    (score,) = torch.autograd.grad(prior.log_prob(x_t, tt).sum(), x_t)
    eps = prior(x_t.detach(), tt)
    torch.testing.assert_close(eps, -(1 - a).sqrt() * score, rtol=1e-9, atol=1e-10)
    # the clean estimate of the samplers is the posterior mean E[x0 | x_t]
    x0_pred = (x_t.detach() - (1 - a).sqrt() * eps) / a.sqrt()
    torch.testing.assert_close(x0_pred, prior.posterior_mean(x_t.detach(), tt), rtol=1e-9, atol=1e-9)


def test_eps_monte_carlo_orthogonality(toy) -> None:
    """MMSE property: the error eps - E[eps|x_t] is uncorrelated with any function of x_t."""
    prior = toy(components=3, std=0.3, weights=True).prior
    g = torch.Generator().manual_seed(2)
    n, t = 8000, 400
    a = prior.alphas_cumprod[t]
    eps = torch.randn(n, *SHAPE, generator=g, dtype=torch.float64)
    x_t = a.sqrt() * prior.sample(n, g) + (1 - a).sqrt() * eps
    hat = prior(x_t, torch.full((n,), t, dtype=torch.long))
    err = (eps - hat).flatten(1)
    for h in (hat.flatten(1), x_t.flatten(1), x_t.flatten(1) ** 2):
        corr = (err * h).mean(0)  # per pixel, MC estimate of E[(eps - hat) h(x_t)] = 0
        se = (err * h).std(0) / n**0.5
        assert float((corr.abs() / se).mean()) < 1.5  # |z| averages ~0.8 under the null
    # and it beats the best single-Gaussian (linear) predictor in mean squared error
    lin = GaussianMixturePrior(prior.sample(4000, g).mean(0, keepdim=True), 0.6)(x_t, torch.full((n,), t))
    assert float(err.pow(2).mean()) < float((eps - lin).pow(2).mean())


def test_float32_and_flat_means(toy) -> None:
    prior = toy(weights=True).prior  # the shared toy problem (conftest), unequal weights
    flat = GaussianMixturePrior(prior.means.flatten(1), prior.std, weights=prior.weights, image_shape=SHAPE)
    x = torch.randn(4, *SHAPE, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 999])
    e64 = prior(x, t)
    torch.testing.assert_close(flat(x, t), e64)
    e32 = prior(x.float(), t)
    assert e32.dtype == torch.float32
    torch.testing.assert_close(e32.double(), e64, rtol=1e-4, atol=1e-4)
    assert prior.image_shape == SHAPE and prior.alphas_cumprod.shape == (1000,)


def test_sample_and_fit(toy) -> None:
    prior = toy(components=3, std=0.05, weights=True).prior
    g = torch.Generator().manual_seed(3)
    x = prior.sample(600, g)
    assert x.shape == (600, *SHAPE) and x.dtype == torch.float64
    fitted = GaussianMixturePrior.fit(x, 3, generator=torch.Generator().manual_seed(4))
    # each true mean is recovered by one fitted mean; the shared std is recovered
    d = torch.cdist(prior.means.flatten(1), fitted.means.flatten(1))  # means are ~9 apart
    assert float(d.min(1).values.max()) < 0.2
    assert abs(fitted.std - 0.05) < 0.005
    torch.testing.assert_close(fitted.weights.sort().values, prior.weights.sort().values, atol=0.06, rtol=0)


@pytest.mark.parametrize(
    "x, t, match",
    [
        (torch.randn(2, 3, 8), torch.tensor([1, 2]), "shape"),
        (torch.randn(2, 1, 8, 8), torch.tensor([1, 2]), "channels"),
        (torch.randn(2, 3, 4, 8), torch.tensor([1, 2]), "spatial size"),
        (torch.full((2, 3, 8, 8), float("nan")), torch.tensor([1, 2]), "NaN"),
        (torch.randn(2, 3, 8, 8), torch.tensor([1.0, 2.0]), "integer"),
        (torch.randn(2, 3, 8, 8), torch.tensor([1, 1000]), r"\[0, 999\]"),
        (torch.randn(2, 3, 8, 8), torch.tensor([1]), r"shape \(B,\)"),
    ],
)
def test_bad_inputs(toy, x: torch.Tensor, t: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        toy(weights=True).prior(x.double(), t)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="image_shape"):
        GaussianMixturePrior(torch.zeros(2, 12), 0.1)
    with pytest.raises(ValueError, match="std"):
        GaussianMixturePrior(torch.zeros(2, *SHAPE), -1.0)
    with pytest.raises(ValueError, match="weights"):
        GaussianMixturePrior(torch.zeros(2, *SHAPE), 0.1, weights=torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="NaN"):
        GaussianMixturePrior(torch.full((2, *SHAPE), float("nan")), 0.1)
    with pytest.raises(ValueError, match="n_components"):
        GaussianMixturePrior.fit(torch.zeros(3, *SHAPE), 5)


def test_shipped_book_prior_is_its_refit() -> None:
    """``fashion_mixture()`` reads data/models/gmm-fashion32.safetensors; it must be the fit it names."""
    from deqir_edu.diffusion import fashion_mixture

    shipped, refit = fashion_mixture(), fashion_mixture(refit=True)
    assert shipped.n_components == refit.n_components == 256
    assert torch.equal(shipped.means, refit.means)
    assert abs(shipped.std - refit.std) < 1e-12  # a float sum: the last bit depends on the threads
    torch.testing.assert_close(shipped.weights, refit.weights, rtol=0, atol=1e-15)


def test_damaged_shipped_prior_is_refused(tmp_path, monkeypatch) -> None:
    import shutil

    from deqir_edu.core.paths import data_dir
    from deqir_edu.diffusion import fashion_mixture, prior

    root = tmp_path / "data"
    shutil.copytree(data_dir() / "models", root / "models")
    (root / prior.SHIPPED_MIXTURE).write_bytes(b"damaged")
    monkeypatch.setattr(prior, "data_dir", lambda: root, raising=False)
    monkeypatch.setattr("deqir_edu.core.paths.data_dir", lambda: root)
    with pytest.raises(ValueError, match="damaged"):
        fashion_mixture()
