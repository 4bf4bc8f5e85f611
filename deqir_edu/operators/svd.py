"""Separable degradations with an SVD pseudo-inverse: bicubic super-resolution and deblurring.

Notation (code name -> paper symbol, DeqIR Sec. 3, Eq. (5); DDRM/DDNM conventions)

    M_h, M_w          1-D matrices acting on the rows (H axis) and the columns (W axis)
    A x               M_h @ x @ M_w^T, per image and channel; A = M_h (x) M_w (Kronecker product)
    U, s, V^T         SVD of one axis, M = U diag(s) V^T
    zero              singular values s < zero are set to 0 (DDRM/DDNM: ZERO = 3e-2)
    A^dagger y        P_h @ y @ P_w^T with P = V diag(1/s, 0 where s = 0) U^T

A 2-D separable blur or resize of an ``H x W`` image is ``X -> M_h X M_w^T``; as one big matrix it
is the Kronecker product ``M_h (x) M_w``, whose SVD is the Kronecker product of the 1-D SVDs and
whose pseudo-inverse is ``M_h^+ (x) M_w^+``.  So two small SVDs (H x H and W x W) suffice.

Truncation.  As in DDRM's ``H_functions`` (whose forward ``H`` also uses the zeroed singular
values), ``A`` itself is the truncated matrix ``U diag(s_trunc) V^T`` per axis.  Then ``A^dagger``
is the exact Moore-Penrose inverse of ``A`` (the Penrose identities hold to rounding), and ``A``
differs from the plain convolution by less than ``zero`` in operator norm per axis.  Like DDRM we
threshold each axis; the 2-D singular values are the products ``s_i t_j`` and may be smaller than
``zero`` (not smaller than ``zero**2``).  ``op.full_h`` / ``op.full_w`` keep the untruncated matrices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .base import Operator

__all__ = [
    "cubic",
    "bicubic_kernel",
    "gaussian_kernel",
    "blur_matrix",
    "downsample_matrix",
    "SeparableSVDOperator",
    "make_svd_operator",
    "SVD_TASKS",
]

ZERO = 3e-2  # DDRM/DDNM threshold on the 1-D singular values


def cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel with parameter ``a`` (-0.5: the usual "bicubic")."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1  # |t| <= 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a  # 1 < |t| < 2
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def bicubic_kernel(scale: int, a: float = -0.5) -> torch.Tensor:
    """The ``4 * scale`` taps of the bicubic anti-aliasing kernel for downsampling by ``scale``.

    Tap ``i`` sits at ``(i - 2 scale + 0.5) / scale`` (DDRM/DDNM's ``sr_bicubic``); sum 1, float64.
    """
    i = torch.arange(4 * scale, dtype=torch.float64)
    k = cubic((i - 2 * scale + 0.5) / scale, a)
    return k / k.sum()


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """``size`` (odd) taps ``exp(-k^2 / (2 sigma^2))``, ``k = -(size-1)/2 .. (size-1)/2``, sum 1."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"blur kernel size must be a positive odd number (a centred kernel), got {size}")
    if not sigma > 0:
        raise ValueError(f"blur sigma must be positive, got {sigma}")
    k = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-0.5 * (k / sigma) ** 2)
    return w / w.sum()


def blur_matrix(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """``(n, n)`` matrix of the centred 1-D convolution with an odd ``kernel``, zero padding.

    Row ``i`` holds ``kernel[j - i + r]`` for ``|j - i| <= r``, ``r = (len - 1) / 2``: all taps.
    (DDRM's ``Deblurring`` loops ``j in range(i - r, i + r)`` and so silently drops the last tap
    of odd kernels; we implement the intended full, centred kernel.)
    """
    size = kernel.numel()
    if size % 2 == 0:
        raise ValueError(f"blur kernel must have an odd number of taps to be centred, got {size}")
    r = size // 2
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(max(0, i - r), min(n, i + r + 1)):
            m[i, j] = kernel[j - i + r]
    return m


def _reflect(j: int, n: int) -> int:
    """Index ``j`` folded into ``0..n-1`` by half-sample symmetric reflection (..., 1, 0 | 0, 1, ...)."""
    j = j % (2 * n)
    return j if j < n else 2 * n - 1 - j


def downsample_matrix(kernel: torch.Tensor, n: int, scale: int) -> torch.Tensor:
    """``(n // scale, n)`` matrix: filter with an even ``kernel`` then keep every ``scale``-th sample.

    Output ``k`` is centred between input pixels ``k*scale + scale//2 - 1`` and ``k*scale + scale//2``
    (the centre of its ``scale`` input pixels); borders use symmetric reflection, as DDRM's ``SRConv``.
    """
    size = kernel.numel()
    m = torch.zeros(n // scale, n, dtype=torch.float64)
    for k in range(n // scale):
        centre = k * scale + scale // 2
        for t in range(size):
            m[k, _reflect(centre - size // 2 + t, n)] += kernel[t]
    return m


class SeparableSVDOperator(Operator):
    """``A x = M_h x M_w^T`` (truncated SVD per axis) with ``A^dagger y = M_h^+ y (M_w^+)^T``.

    ``mat_h``: ``(H', H)``, ``mat_w``: ``(W', W)``, float64; the same in every channel.
    """

    def __init__(
        self,
        name: str,
        image_shape: tuple[int, int, int],
        mat_h: torch.Tensor,
        mat_w: torch.Tensor,
        zero: float = ZERO,
    ) -> None:
        c, h, w = image_shape
        if mat_h.shape[1] != h or mat_w.shape[1] != w:
            raise ValueError(f"matrices {tuple(mat_h.shape)}, {tuple(mat_w.shape)} do not act on an image {(h, w)}")
        self.name, self.image_shape, self.zero = name, image_shape, float(zero)
        self.measurement_shape = (c, mat_h.shape[0], mat_w.shape[0])
        self.full_h, self.full_w = mat_h.to(torch.float64), mat_w.to(torch.float64)
        self.A_h, self.pinv_h, self.singulars_h = self._truncate(self.full_h)
        self.A_w, self.pinv_w, self.singulars_w = self._truncate(self.full_w)

    def _truncate(self, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        s = torch.where(s >= self.zero, s, torch.zeros_like(s))  # DDRM: singulars < ZERO -> 0
        s_inv = torch.where(s > 0, 1.0 / s.clamp_min(1e-300), torch.zeros_like(s))
        return (u * s) @ vh, (vh.T * s_inv) @ u.T, s  # U S V^T,  V S^+ U^T,  s

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H', W')."""
        self.check_x(x)
        return self._like(self.A_h, x) @ x @ self._like(self.A_w, x).T

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        """(B, C, H', W') -> (B, C, H, W)."""
        self.check_y(y)
        return self._like(self.pinv_h, y) @ y @ self._like(self.pinv_w, y).T


SVD_TASKS = ("sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso")


def _pair(v: float | Sequence[float], what: str) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return float(v), float(v)
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"{what} must be one number or a pair (H axis, W axis), got {v!r}")
    return float(v[0]), float(v[1])


def make_svd_operator(
    task: str, image_shape: tuple[int, int, int], zero: float = ZERO, **options: object
) -> SeparableSVDOperator:
    """Build one of ``SVD_TASKS``; defaults follow DDNM's ``svd_based_ddnm_plus``.

    * ``"sr{2,4}-bicubic"``: bicubic (a = -0.5) antialiased downsampling, reflect borders.
    * ``"deblur-gauss"``: ``sigma=10``, ``size=5`` (DDNM: a wide Gaussian on 5 taps, nearly a box).
    * ``"deblur-aniso"``: ``sigmas=(1, 20)`` along (H, W), ``sizes=(9, 9)`` (DDNM's ``deblur_aniso``:
      kernel1 with sigma 1 acts on the rows index, kernel2 with sigma 20 on the columns index).
    """
    _, h, w = image_shape
    allowed = {
        "sr2-bicubic": (),
        "sr4-bicubic": (),
        "deblur-gauss": ("sigma", "size"),
        "deblur-aniso": ("sigmas", "sizes"),
    }
    if task not in allowed:
        raise ValueError(f"unknown SVD task {task!r}; valid: {', '.join(SVD_TASKS)}")
    unknown = sorted(set(options) - set(allowed[task]))
    if unknown:
        ok = ", ".join(("zero",) + allowed[task])
        raise ValueError(f"task {task!r} does not take option(s) {unknown}; accepted: {ok}")
    if not 0 <= zero < 1:
        raise ValueError(f"singular-value threshold `zero` must lie in [0, 1), got {zero}")
    if task.endswith("-bicubic"):
        s = int(task[2])
        if h % s or w % s:
            raise ValueError(
                f"image size {(h, w)} is not divisible by the super-resolution scale {s}; "
                f"crop or pad the image to a multiple of {s}"
            )
        k = bicubic_kernel(s)
        return SeparableSVDOperator(task, image_shape, downsample_matrix(k, h, s), downsample_matrix(k, w, s), zero)
    if task == "deblur-gauss":
        sigma, size = float(options.get("sigma", 10.0)), int(options.get("size", 5))  # type: ignore[arg-type]
        k = gaussian_kernel(sigma, size)
        return SeparableSVDOperator(task, image_shape, blur_matrix(k, h), blur_matrix(k, w), zero)
    sig_h, sig_w = _pair(options.get("sigmas", (1.0, 20.0)), "sigmas")  # type: ignore[arg-type]
    size_h, size_w = _pair(options.get("sizes", (9, 9)), "sizes")  # type: ignore[arg-type]
    if not (math.isclose(size_h, round(size_h)) and math.isclose(size_w, round(size_w))):
        raise ValueError(f"kernel sizes must be integers, got {(size_h, size_w)}")
    k_h, k_w = gaussian_kernel(sig_h, int(size_h)), gaussian_kernel(sig_w, int(size_w))
    return SeparableSVDOperator(task, image_shape, blur_matrix(k_h, h), blur_matrix(k_w, w), zero)
