"""An exact diffusion prior: a Gaussian mixture with a closed-form noise predictor.

A pretrained network ``eps_theta(x_t, t)`` approximates the MMSE noise ``E[eps | x_t]``.  When the
data distribution is a Gaussian mixture this expectation has a closed form, so the mixture can stand
in for a network wherever exact answers are needed (tests, first chapters of the book).

Notation (code name -> paper symbol, DeqIR Sec. 3)

    means[j]     mu_j                 mean of component j, shape (C, H, W)
    std          sigma_data           shared isotropic standard deviation of every component
    weights[j]   pi_j                 mixture weight, sum_j pi_j = 1
    a            abar_t               alpha-bar at the integer time t, Eq. (2)
    s2           s_t^2                abar_t sigma_data^2 + 1 - abar_t, variance of x_t | j
    resp[j]      p(j | x_t)           posterior responsibility of component j
    eps          eps_theta(x_t, t)    E[eps | x_t], the noise a perfect network would predict

Forward process (Eq. (2)): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.  Given component j,
x_0 ~ N(mu_j, std^2 I), hence x_t | j ~ N(sqrt(abar_t) mu_j, s_t^2 I), and::

    p(j | x_t)  ~  pi_j exp(-||x_t - sqrt(abar_t) mu_j||^2 / (2 s_t^2))        (log-sum-exp)
    E[eps | x_t] = sqrt(1 - abar_t) / s_t^2 * (x_t - sqrt(abar_t) sum_j p(j | x_t) mu_j)
                 = -sqrt(1 - abar_t) * grad_x log p(x_t)                         (Tweedie)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from safetensors.torch import load_file
from torch import nn

from ..core.checks import check_finite, check_image, is_integer
from ..core.download import file_sha256
from ..core.paths import data_dir
from ..datasets import fashion_subset, pad_to_32, to_tensor_images
from .schedules import alphas_cumprod as _alphas_cumprod
from .schedules import linear_betas

__all__ = ["GaussianMixturePrior", "fashion_mixture"]


class GaussianMixturePrior(nn.Module):
    """Gaussian-mixture data distribution with the exact noise predictor ``E[eps | x_t]``.

    Follows the model protocol of the package: ``model(x_t, t) -> eps`` with ``x_t`` of shape
    ``(B, C, H, W)`` and ``t`` a long tensor ``(B,)`` of times in ``[0, 999]``; attributes
    ``image_shape == (C, H, W)`` and ``alphas_cumprod`` (float64 ``(1000,)``).

    Args:
        means: ``(K, C, H, W)``, or ``(K, D)`` together with ``image_shape`` (``C * H * W == D``).
        std: shared isotropic standard deviation ``sigma_data >= 0`` of every component.
        weights: ``(K,)`` non-negative mixture weights (normalised here); default uniform.
        alphas_cumprod: ``(n_train,)`` schedule; default the linear 1e-4..0.02 schedule, n = 1000.
        image_shape: ``(C, H, W)``, needed only when ``means`` is flat.

    Computation happens in the dtype and on the device of ``x_t`` (the means are cast).
    """

    def __init__(
        self,
        means: torch.Tensor,
        std: float,
        weights: torch.Tensor | None = None,
        alphas_cumprod: torch.Tensor | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        means = torch.as_tensor(means)
        check_finite(means, "means")
        if means.dim() == 4:
            shape = tuple(int(s) for s in means.shape[1:])
            if image_shape is not None and tuple(image_shape) != shape:
                raise ValueError(f"image_shape {tuple(image_shape)} disagrees with means of shape {tuple(means.shape)}")
        elif means.dim() == 2:
            if image_shape is None:
                raise ValueError("flat means of shape (K, D) need image_shape=(C, H, W)")
            shape = tuple(int(s) for s in image_shape)
            if len(shape) != 3 or math.prod(shape) != means.shape[1]:
                raise ValueError(f"image_shape {shape} must be (C, H, W) with C*H*W == D = {means.shape[1]}")
        else:
            raise ValueError(f"means must have shape (K, C, H, W) or (K, D), got {tuple(means.shape)}")
        if means.shape[0] < 1:
            raise ValueError("means must hold at least one component")
        if not (math.isfinite(float(std)) and float(std) >= 0.0):
            raise ValueError(f"std must be a finite number >= 0, got {std}")
        k = means.shape[0]
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (k,) or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
            raise ValueError(f"weights must be {k} finite non-negative numbers, got {weights}")
        if float(weights.sum()) <= 0:
            raise ValueError("weights must not all be zero")
        if alphas_cumprod is None:
            alphas_cumprod = _alphas_cumprod(linear_betas())
        self.image_shape: tuple[int, int, int] = shape  # (C, H, W)
        self.std = float(std)
        self.register_buffer("means", means.reshape(k, *shape).to(torch.float64))  # (K, C, H, W)
        self.register_buffer("weights", weights / weights.sum())  # (K,)
        self.register_buffer("alphas_cumprod", torch.as_tensor(alphas_cumprod, dtype=torch.float64))

    @property
    def n_components(self) -> int:
        return int(self.means.shape[0])

    def _check(self, x_t: torch.Tensor, t: torch.Tensor) -> None:
        check_image(x_t, self.image_shape, "x_t")
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != x_t.shape[0]:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a tensor of shape (B,) = ({x_t.shape[0]},), got {got}")
        if torch.is_floating_point(t) or torch.is_complex(t):
            raise ValueError(f"t must hold integer times (a long tensor), got dtype {t.dtype}")
        n = self.alphas_cumprod.numel()
        if bool((t < 0).any()) or bool((t >= n).any()):
            raise ValueError(f"times t must lie in [0, {n - 1}], got min {int(t.min())}, max {int(t.max())}")

    def _abar(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """abar_t broadcast to ``(B, 1)`` in the dtype/device of ``x_t``."""
        return self.alphas_cumprod.to(x_t.device)[t.to(x_t.device)].to(x_t.dtype)[:, None]

    def responsibilities(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Posterior ``p(j | x_t)``, shape ``(B, K)``; rows sum to one."""
        self._check(x_t, t)
        return self._resp(x_t.reshape(x_t.shape[0], -1), self._abar(x_t, t))

    def _resp(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        mu = self.means.flatten(1).to(x)  # (K, D)
        s2 = a * self.std**2 + 1.0 - a  # (B, 1), variance of x_t | j
        # ||x - sqrt(a) mu_j||^2 expanded so that no (B, K, D) tensor is formed
        d2 = (x * x).sum(1, keepdim=True) - 2.0 * a.sqrt() * (x @ mu.T) + a * (mu * mu).sum(1)[None]
        logits = self.weights.to(x).log()[None] - d2 / (2.0 * s2)  # (B, K)
        return torch.softmax(logits, dim=1)  # log-sum-exp normalisation

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``E[x_0 | x_t]`` of the mixture, shape ``(B, C, H, W)``."""
        self._check(x_t, t)
        x = x_t.reshape(x_t.shape[0], -1)
        a = self._abar(x_t, t)
        s2 = a * self.std**2 + 1.0 - a
        m = self._resp(x, a) @ self.means.flatten(1).to(x)  # sum_j p(j|x_t) mu_j, (B, D)
        # E[x0 | x_t, j] = mu_j + sqrt(a) std^2 / s2 (x_t - sqrt(a) mu_j), averaged over p(j | x_t)
        return (m + a.sqrt() * self.std**2 / s2 * (x - a.sqrt() * m)).reshape(x_t.shape)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact ``eps_theta(x_t, t) = E[eps | x_t]``: ``(B, C, H, W)``, ``(B,)`` -> ``(B, C, H, W)``."""
        self._check(x_t, t)
        x = x_t.reshape(x_t.shape[0], -1)
        a = self._abar(x_t, t)
        s2 = a * self.std**2 + 1.0 - a
        m = self._resp(x, a) @ self.means.flatten(1).to(x)  # (B, D)
        return ((1.0 - a).sqrt() / s2 * (x - a.sqrt() * m)).reshape(x_t.shape)  # module docstring

    def log_prob(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``log p_t(x_t)`` of the noised mixture, shape ``(B,)`` (differentiable; used by the tests)."""
        self._check(x_t, t)
        x = x_t.reshape(x_t.shape[0], -1)
        a = self._abar(x_t, t)
        s2 = a * self.std**2 + 1.0 - a
        mu = self.means.flatten(1).to(x)
        d2 = ((x[:, None, :] - a.sqrt()[:, :, None] * mu[None]) ** 2).sum(-1)  # (B, K)
        dim = x.shape[1]
        log_norm = -0.5 * dim * (math.log(2 * math.pi) + s2.log())  # (B, 1)
        return torch.logsumexp(self.weights.to(x).log()[None] - d2 / (2 * s2) + log_norm, dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` clean images ``x_0 ~ sum_j pi_j N(mu_j, std^2 I)``, shape ``(n, C, H, W)``, float64."""
        if not is_integer(n) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        n = int(n)
        device = self.means.device
        j = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, *self.image_shape, generator=generator, dtype=torch.float64, device=device)
        return self.means[j] + self.std * noise

    @classmethod
    def fit(
        cls,
        images: torch.Tensor,
        n_components: int,
        generator: torch.Generator | None = None,
        n_iter: int = 25,
        alphas_cumprod: torch.Tensor | None = None,
    ) -> GaussianMixturePrior:
        """Fit means by k-means (k-means++ start, ``n_iter`` Lloyd steps) and one shared isotropic std.

        Args:
            images: ``(N, C, H, W)`` training images in ``[-1, 1]``, ``N >= n_components``.
            n_components: number of components ``K``.
            generator: makes the k-means++ start reproducible.
        Returns:
            a prior whose weights are the cluster fractions and whose ``std**2`` is the mean squared
            distance of an image to its cluster mean, per pixel.
        """
        check_image(images, None, "images")
        n = images.shape[0]
        if not is_integer(n_components) or not 1 <= n_components <= n:
            raise ValueError(f"n_components must be an integer in [1, N = {n}], got {n_components!r}")
        x = images.reshape(n, -1).to(torch.float64)
        # k-means++: first centre at random, next ones with probability ~ squared distance
        idx = [int(torch.randint(n, (1,), generator=generator))]
        d2 = torch.cdist(x, x[idx]).pow(2)[:, 0]  # squared distance to the nearest centre so far
        for _ in range(1, n_components):
            p = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
            idx.append(int(torch.multinomial(p, 1, generator=generator)))
            d2 = torch.minimum(d2, torch.cdist(x, x[idx[-1:]]).pow(2)[:, 0])  # O(N D) per centre
        centres = x[idx].clone()
        for _ in range(n_iter):  # Lloyd iterations: each centre moves to the mean of its members
            label = torch.cdist(x, centres).argmin(1)
            count = torch.bincount(label, minlength=n_components)
            sums = torch.zeros_like(centres).index_add_(0, label, x)
            full = count > 0  # an empty cluster keeps its centre
            centres[full] = sums[full] / count[full, None].to(x.dtype)
        label = torch.cdist(x, centres).argmin(1)
        std = float(((x - centres[label]) ** 2).mean().sqrt())
        weights = torch.bincount(label, minlength=n_components).to(torch.float64)
        means = centres.reshape(n_components, *images.shape[1:])
        return cls(means, std, weights=weights.clamp_min(1e-12), alphas_cumprod=alphas_cumprod)


# The book's one exact prior, shipped: ``fashion_mixture()`` reads these bytes (checked) instead of
# refitting; tests/test_prior.py refits and compares (the file holds means, weights and std of that refit).
SHIPPED_MIXTURE = "models/gmm-fashion32.safetensors"
SHIPPED_MIXTURE_SHA256 = "bb9ed24f9cc9e72079fdcfd5ff5d3a4dd3e21add83f276c30531f472059b12a2"
_SHIPPED_FIT = {"n_components": 256, "n_images": 4000, "n_iter": 25, "seed": 0}


def fashion_mixture(
    n_components: int = 256,
    n_images: int = 4000,
    n_iter: int = 25,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    refit: bool = False,
) -> GaussianMixturePrior:
    """THE exact prior of the book, ``gmm-fashion32``: 256 Gaussians fitted to the first 4,000
    Fashion-MNIST training images (padded to 1 x 32 x 32) by ``GaussianMixturePrior.fit`` (seed 0,
    25 Lloyd steps).  Every chapter and the evaluation grid use this one fit.

    With the default arguments the fit is read from ``data/models/gmm-fashion32.safetensors``
    (2 MB, sha256-checked, identical to a refit); other arguments, or ``refit=True``, fit anew
    (about 5 s) from the Fashion-MNIST images shipped in ``data/``.
    """
    args = {"n_components": n_components, "n_images": n_images, "n_iter": n_iter, "seed": seed}
    path = data_dir() / SHIPPED_MIXTURE
    if args == _SHIPPED_FIT and not refit and path.is_file():
        if file_sha256(path) != SHIPPED_MIXTURE_SHA256:
            raise ValueError(
                f"{path} is damaged (sha256 mismatch): reinstall deqir-edu, or call fashion_mixture(refit=True)"
            )
        t = load_file(str(path))
        return GaussianMixturePrior(t["means"].to(dtype), float(t["std"]), weights=t["weights"])
    train, _ = fashion_subset("train", n_images)  # shipped in data/ for n_images <= 4000
    images = pad_to_32(to_tensor_images(train)).to(dtype)
    return GaussianMixturePrior.fit(images, n_components, generator=torch.Generator().manual_seed(seed), n_iter=n_iter)
