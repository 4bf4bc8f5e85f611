"""Image-quality metrics: PSNR, SSIM and measurement consistency ||A x - y||.

Notation (code name -> symbol; DeqIR Sec. 5, "Evaluation metrics")

    x, ref        restored image and ground truth, (B, C, H, W), values in [-1, 1]
    u, v          the same mapped to [0, 1]: u = clamp((x + 1) / 2, 0, 1)
    mse           mean over (C, H, W) of (u - v)^2
    psnr          10 log10(1 / mse)                        [dB], data range 1
    ssim          mean SSIM map (Wang et al. 2004), Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03
    consistency   ||A x - y|| per image (L2 by default), "Cons" in Table 3
    nn_distance   mean over a set of images of the RMS distance to the nearest image of a reference set

Every metric returns one value per image, a tensor of shape ``(B,)`` (float64 for float64 input,
else float32) on the input's device.  PSNR of two identical images is ``inf`` (mse = 0); we do
not cap it, so a perfect reconstruction is visible as such.

SSIM follows ``skimage.metrics.structural_similarity(u, v, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0, channel_axis=0)``: local means, variances and the
covariance come from a separable Gaussian filter with radius ``int(3.5 * 1.5 + 0.5) = 5``; the SSIM
map is averaged over the pixels at least 5 pixels from the border (where the window fits, so the
padding never matters), and then over the channels.  Images must be at least 11 x 11.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core.checks import check_finite, check_image

__all__ = ["psnr", "ssim", "consistency", "nn_distance", "to_unit_range"]


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _pair(x: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_image(x, name="x")
    check_image(ref, name="ref")
    if x.shape != ref.shape:
        raise ValueError(
            f"x has shape {tuple(x.shape)} but ref has {tuple(ref.shape)}; compare images of the same shape"
        )
    dtype = _work_dtype(x)
    return to_unit_range(x.to(dtype)), to_unit_range(ref.to(dtype=dtype, device=x.device))


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """Map ``[-1, 1]`` to ``[0, 1]`` and clamp: ``clamp((x + 1) / 2, 0, 1)``."""
    return ((x + 1) / 2).clamp(0, 1)


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, (B,).  ``inf`` where ``x == ref``."""
    u, v = _pair(x, ref)
    mse = ((u - v) ** 2).flatten(1).mean(dim=1)
    return 10 * torch.log10(1.0 / mse)  # data range 1; 1 / 0 = inf for identical images


def _gaussian_window(sigma: float, radius: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (k / sigma) ** 2)
    return (w / w.sum()).to(dtype=dtype, device=device)


def ssim(x: torch.Tensor, ref: torch.Tensor, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity per image, (B,), on ``[0, 1]`` (data range 1), Gaussian window 11."""
    u, v = _pair(x, ref)
    b, c, h, w = u.shape
    radius = int(3.5 * sigma + 0.5)  # scipy/skimage truncate = 3.5 -> radius 5, window 11
    if min(h, w) < 2 * radius + 1:
        raise ValueError(
            f"SSIM needs images of at least {2 * radius + 1} x {2 * radius + 1} pixels, got {(h, w)}; "
            "upsample the images or compare with psnr instead"
        )
    g = _gaussian_window(sigma, radius, u.dtype, u.device)

    def blur(t: torch.Tensor) -> torch.Tensor:  # 'valid' separable Gaussian filter, (B*C, 1, H-2r, W-2r)
        t = F.conv2d(t.reshape(b * c, 1, h, w), g.view(1, 1, -1, 1))
        return F.conv2d(t, g.view(1, 1, 1, -1))

    mu_u, mu_v = blur(u), blur(v)
    var_u = blur(u * u) - mu_u**2  # population (not sample) covariance, as use_sample_covariance=False
    var_v = blur(v * v) - mu_v**2
    cov = blur(u * v) - mu_u * mu_v
    c1, c2 = (k1 * 1.0) ** 2, (k2 * 1.0) ** 2  # (K * data_range)^2
    ssim_map = ((2 * mu_u * mu_v + c1) * (2 * cov + c2)) / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2))
    return ssim_map.reshape(b, -1).mean(dim=1)  # mean over channels and valid pixels


def consistency(x: torch.Tensor, y: torch.Tensor, op: Any, norm: str = "l2", unit_range: bool = False) -> torch.Tensor:
    """Per-image distance between ``A x`` and the measurement ``y``, (B,).

    ``norm="l2"`` (default): ``||A x - y||_2`` over all measurement entries, in the units of the
    inputs (``[-1, 1]`` images).  ``norm="l1"``: ``sum |A x - y|``; DDNM, whose "Consistency" DeqIR's
    Table 3 reports as "Cons", describes it as ``||A x0 - y||_1``; their exact normalisation is not
    in the code we read, so we do not claim to reproduce the published numbers.  ``unit_range=True``
    reports the value for images on ``[0, 1]``: A is linear and ``y = A x_true``, so ``A u - y_01 =
    (A x - y) / 2`` and the value is simply halved.  No clamping: consistency judges ``x`` as given.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")
    ax = op.A(x)
    if not isinstance(y, torch.Tensor) or y.shape != ax.shape:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y has shape {got} but A(x) has shape {tuple(ax.shape)}; pass y = A(x_true)")
    check_finite(y, "y")
    dtype = _work_dtype(ax)
    r = (ax.to(dtype) - y.to(dtype=dtype, device=ax.device)).flatten(1)
    value = r.norm(dim=1) if norm == "l2" else r.abs().sum(dim=1)
    return value / 2 if unit_range else value


def nn_distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over the images of ``x`` (N, C, H, W) of the per-pixel RMS distance to the nearest image
    of ``ref`` (M, C, H, W), in float64.  A check of samples that needs no network from outside: it
    should be close to that of real images and far below that of noise (model cards)."""
    if x.dim() != 4 or ref.dim() != 4 or x.shape[1:] != ref.shape[1:]:
        raise ValueError(
            "x and ref must be (N, C, H, W) stacks of the same image shape, "
            f"got {tuple(x.shape)} and {tuple(ref.shape)}"
        )
    d = torch.cdist(x.flatten(1).double(), ref.flatten(1).double()) / x[0].numel() ** 0.5
    return float(d.min(dim=1).values.mean())
