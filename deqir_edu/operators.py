"""Linear degradation operators A, their pseudo-inverses A^dagger and the null-space projection.

Notation (code name -> paper symbol, DeqIR Sec. 3, Eqs. (1) and (5))

    x                      x                  clean image, (B, C, H, W), values in [-1, 1]
    y                      y                  measurement y = A x (noise-free), shape ``measurement_shape``
    op.A(x)                A x                the degradation
    op.A_pinv(y)           A^dagger y         Moore-Penrose pseudo-inverse applied to y
    op.project(x)          A^dagger A x       orthogonal projection onto the row space of A
    op.null_space_project  x0_hat             A^dagger y + (I - A^dagger A) x0,  Eq. (5)

The protocol.  Samplers only ever call ``op.A`` and ``op.A_pinv``; any object with these two
methods is an operator.  ``A^dagger`` must be the Moore-Penrose pseudo-inverse, i.e. satisfy

    A A^+ A = A,   A^+ A A^+ = A^+,   (A A^+)^T = A A^+,   (A^+ A)^T = A^+ A      (Penrose)

so that ``A^+ A`` is an orthogonal projector and Eq. (5) keeps exactly the part of ``x0`` that
``y`` says nothing about.  :func:`penrose_residuals` checks the four identities numerically.

A user's own degradation, e.g. "flip left-right, then keep the left half of the columns".  The
selection matrix S has orthonormal rows (S S^T = I), so its pseudo-inverse is S^T: put the
columns back, fill the rest with zeros, flip back.

>>> import torch
>>> from deqir_edu.operators import null_space_project, penrose_residuals
>>> class FlipCrop:
...     name = "flip-crop"
...     def A(self, x):                       # (B, C, H, W) -> (B, C, H, W // 2)
...         return x.flip(-1)[..., : x.shape[-1] // 2]
...     def A_pinv(self, y):                  # (B, C, H, W // 2) -> (B, C, H, W)
...         return torch.cat([y, torch.zeros_like(y)], dim=-1).flip(-1)
>>> op, x = FlipCrop(), torch.randn(2, 3, 8, 8, dtype=torch.float64)
>>> x0_hat = null_space_project(op, torch.zeros_like(x), op.A(x))   # Eq. (5) with x0 = 0
>>> bool(torch.allclose(x0_hat[..., 4:], x[..., 4:]))                 # the observed half comes back
True
>>> max(penrose_residuals(op, x, op.A(x)).values()) < 1e-12
True

The same works for a mask drawn by the user: ``make_operator("inpaint-box", (3, 64, 64),
mask=my_mask)`` with ``my_mask`` an ``(H, W)`` tensor of 0 (missing) and 1 (observed).
The SVD-based operators (bicubic SR, deblurring) live in :mod:`deqir_edu.operators_svd`, the mask
generators in :mod:`deqir_edu.masks`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._checks import check_image

__all__ = [
    "Operator", "Identity", "AveragePoolSR", "Inpainting", "Colorization", "ComposedOperator",
    "make_operator", "null_space_project", "penrose_residuals", "TASKS",
]


class Operator:
    """Base class: a linear map ``A`` from images ``image_shape`` to ``measurement_shape``.

    Subclasses implement ``A(x)`` and ``A_pinv(y)`` (calling ``check_x`` / ``check_y`` first) and set
    ``name``, ``image_shape = (C, H, W)`` and ``measurement_shape = (C', H', W')``.  Constant
    tensors are stored in float64 on the CPU and follow the input at use (``self._like(t, x)``).
    """

    name: str = "operator"
    image_shape: tuple[int, int, int]
    measurement_shape: tuple[int, int, int]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``A^dagger A x``: the part of ``x`` that the measurement sees, (B, C, H, W)."""
        return self.A_pinv(self.A(x))

    def null_space_project(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. (5): ``A^dagger y + (I - A^dagger A) x0``, (B, C, H, W)."""
        return self.A_pinv(y) + x0 - self.A_pinv(self.A(x0))

    def check_x(self, x: torch.Tensor) -> None:
        check_image(x, self.image_shape, name=f"{self.name}: image x")

    def check_y(self, y: torch.Tensor) -> None:
        check_image(y, self.measurement_shape, name=f"{self.name}: measurement y")

    @staticmethod
    def _like(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return t.to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, image_shape={self.image_shape})"


class Identity(Operator):
    """``A = A^dagger = I`` (denoising-free reconstruction: y is the image itself)."""

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        self.name, self.image_shape = "identity", image_shape
        self.measurement_shape = image_shape

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return x.clone()

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        return y.clone()


class AveragePoolSR(Operator):
    """Super-resolution by ``s x s`` average pooling, ``A^dagger`` = nearest upsampling.

    Each row of A holds ``s^2`` entries ``1/s^2`` on disjoint pixels, so ``A A^T = I / s^2`` and
    ``A^dagger = A^T (A A^T)^{-1} = s^2 A^T``: every entry of ``s^2 A^T`` is 1, i.e. replication.
    (``A^T`` alone, the adjoint, would shrink the image by ``1/s^2``.)
    """

    def __init__(self, image_shape: tuple[int, int, int], scale: int) -> None:
        c, h, w = image_shape
        if h % scale or w % scale:
            raise ValueError(
                f"image size {(h, w)} is not divisible by the super-resolution scale {scale}; "
                f"crop or pad the image to a multiple of {scale}"
            )
        self.name, self.scale, self.image_shape = f"sr{scale}", scale, image_shape
        self.measurement_shape = (c, h // scale, w // scale)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return F.avg_pool2d(x, self.scale)  # (B, C, H/s, W/s)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        s = self.scale
        return y.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)  # s^2 A^T y


class Inpainting(Operator):
    """``A = A^dagger = diag(mask)``: keep observed pixels, zero the missing ones (as DDNM).

    ``y`` keeps the image shape with zeros where pixels are missing.  For a 0/1 mask the diagonal
    matrix is an orthogonal projector, hence its own pseudo-inverse.
    """

    def __init__(self, image_shape: tuple[int, int, int], mask: torch.Tensor, name: str = "inpaint") -> None:
        _, h, w = image_shape
        mask = torch.as_tensor(mask)
        if mask.dim() == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if tuple(mask.shape) != (h, w):
            raise ValueError(
                f"mask has shape {tuple(mask.shape)} but the image is {(h, w)}; "
                f"pass an (H, W) = {(h, w)} tensor of 0 (missing) and 1 (observed)"
            )
        mask = mask.to(torch.float64)
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 (missing) and 1 (observed); threshold it, e.g. (m > 0.5)")
        self.name, self.image_shape, self.measurement_shape = name, image_shape, image_shape
        self.mask = mask  # (H, W), float64, 1 = observed

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return x * self._like(self.mask, x)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        return y * self._like(self.mask, y)


class Colorization(Operator):
    """``A`` = mean over the C colour channels, (B, C, H, W) -> (B, 1, H, W); ``A^dagger`` = repeat.

    Per pixel A is the row ``(1/C, ..., 1/C)``: ``A A^T = 1/C`` and ``A^dagger = A^T (A A^T)^{-1}
    = C A^T = (1, ..., 1)^T``, i.e. copy the grey value into every channel.
    """

    def __init__(self, image_shape: tuple[int, int, int]) -> None:
        c, h, w = image_shape
        self.name, self.image_shape, self.measurement_shape = "colorize", image_shape, (1, h, w)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self.check_x(x)
        return x.mean(dim=1, keepdim=True)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        self.check_y(y)
        return y.repeat(1, self.image_shape[0], 1, 1)


class ComposedOperator(Operator):
    """``A = A_outer A_inner`` (first ``inner``, then ``outer``) with ``A^dagger = A_inner^+ A_outer^+``.

    In general ``(A2 A1)^+ != A1^+ A2^+``.  The reversal law is exact, for instance, when one factor
    acts only on the colour channels and the other only on pixel positions, in the same way in
    every channel.  Then A is a Kronecker product ``Q (x) S`` and ``(Q (x) S)^+ = Q^+ (x) S^+
    = (Q^+ (x) I)(I (x) S^+)``.  This covers the paper's old-photo degradation (Sec. 5.8):
    the mask ``M`` is per pixel, the colour mean ``P`` per pixel, they commute, and directly
    ``A = M P`` (grey mask after mean), ``A A^T = M P P^T M = M / C``, so
    ``A^+ = A^T (A A^T)^+ = C P^T M = P^+ M = M_C P^+ = A1^+ A2^+``.
    For other pairs check with :func:`penrose_residuals` before trusting Eq. (5).
    """

    def __init__(self, outer: Any, inner: Any, name: str | None = None) -> None:
        shape_in = getattr(inner, "measurement_shape", None)
        shape_out = getattr(outer, "image_shape", None)
        if shape_in is not None and shape_out is not None and tuple(shape_in) != tuple(shape_out):
            raise ValueError(
                f"cannot compose: inner operator outputs {tuple(shape_in)} but outer expects {tuple(shape_out)}; "
                "build the outer operator for the inner operator's measurement shape"
            )
        self.outer, self.inner = outer, inner
        self.name = name or f"{getattr(outer, 'name', 'outer')}*{getattr(inner, 'name', 'inner')}"
        self.image_shape = getattr(inner, "image_shape", None)
        self.measurement_shape = getattr(outer, "measurement_shape", None)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.A(self.inner.A(x))

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.inner.A_pinv(self.outer.A_pinv(y))


def null_space_project(op: Any, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. (5) for any object with ``A`` and ``A_pinv``: ``A^+ y + x0 - A^+ A x0``."""
    return op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))


def penrose_residuals(op: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Relative errors of the four Penrose identities, tested on an image ``x`` and a measurement ``y``.

    Symmetry of ``P = A^+ A`` is tested as ``<P x, x'> = <x, P x'>`` with ``x' = x.flip(0)``
    (another batch order), likewise for ``A A^+``.  All values should be ~1e-12 in float64.
    """
    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm().clamp_min(1e-30))

    def sym(f: Any, u: torch.Tensor) -> float:
        v = u.flip(0) + 0.5 * u
        lhs, rhs = (f(u) * v).sum(), (u * f(v)).sum()
        return float((lhs - rhs).abs() / (f(u).norm() * v.norm()).clamp_min(1e-30))

    ax, py = op.A(x), op.A_pinv(y)
    return {
        "A A+ A = A": rel(op.A(op.A_pinv(ax)), ax),
        "A+ A A+ = A+": rel(op.A_pinv(op.A(py)), py),
        "A A+ symmetric": sym(lambda v: op.A(op.A_pinv(v)), y),
        "A+ A symmetric": sym(lambda v: op.A_pinv(op.A(v)), x),
    }


TASKS: tuple[str, ...] = (
    "identity", "sr2", "sr4", "sr8", "sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso",
    "inpaint-box", "inpaint-random", "inpaint-stripes", "inpaint-text", "colorize", "old-photo",
)


def _image_shape(image_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(int(s) for s in image_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
    return shape  # type: ignore[return-value]


def _mask_operator(task: str, shape: tuple[int, int, int], options: dict[str, Any], name: str) -> Inpainting:
    from .masks import MASKS

    mask = options.pop("mask", None)
    if mask is None:
        mask = MASKS[task](shape[1], shape[2], **options)
    elif options:
        raise ValueError(f"options {sorted(options)} are ignored when `mask=` is given; drop them")
    return Inpainting(shape, mask, name=name)


def make_operator(task: str, image_shape: tuple[int, int, int], **options: Any) -> Operator:
    """Build the operator for ``task`` (one of ``TASKS``) on images of shape ``(C, H, W)``.

        task                     A                                   A^dagger
        identity                 I                                   I
        sr2, sr4, sr8            s x s average pooling               replication (nearest upsampling)
        sr2-/sr4-bicubic         bicubic filter, subsample (SVD)     V S^+ U^T on each axis
        deblur-gauss/-aniso      separable Gaussian blur (SVD)       V S^+ U^T on each axis
        inpaint-box/random/...   multiply by the 0/1 mask            the same
        colorize                 mean over the channels              copy into every channel
        old-photo                mask, then channel mean             copy, then mask

    Options: inpainting tasks take ``mask=`` (an ``(H, W)`` 0/1 tensor) or the generator's options
    (``size`` for box, ``missing``/``seed`` for random, ``width``/``vertical`` for stripes,
    ``text``/``scale`` for text; see :mod:`deqir_edu.masks`).  ``"old-photo"`` (mask, then colour
    mean) takes ``mask=`` or ``inpaint=`` (a mask task name, default ``"inpaint-text"``) plus its
    options.  ``"deblur-gauss"`` takes ``sigma``, ``size``; ``"deblur-aniso"`` takes ``sigmas``,
    ``sizes``; the SVD tasks take ``zero`` (singular-value threshold, default 3e-2).
    """
    if not isinstance(task, str):
        raise ValueError(f"task must be a string, one of: {', '.join(TASKS)}; got {task!r}")
    shape = _image_shape(image_shape)
    options = dict(options)
    try:
        if task == "identity" and not options:
            return Identity(shape)
        if task in ("sr2", "sr4", "sr8") and not options:
            return AveragePoolSR(shape, int(task[2:]))
        if task == "colorize" and not options:
            return Colorization(shape)
        if task.startswith("inpaint-") and task in TASKS:
            return _mask_operator(task, shape, options, name=task)
        if task == "old-photo":
            mask_task = options.pop("inpaint", "inpaint-text")
            if mask_task not in TASKS or not mask_task.startswith("inpaint-"):
                raise ValueError(f"inpaint={mask_task!r} is not a mask task; use one of inpaint-box/random/stripes/text")
            inner = _mask_operator(mask_task, shape, options, name=mask_task)
            return ComposedOperator(Colorization(shape), inner, name="old-photo")
        if task in ("sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso"):
            from .operators_svd import make_svd_operator

            return make_svd_operator(task, shape, **options)
    except TypeError as err:  # an option the generator or constructor does not know
        raise ValueError(f"bad option for task {task!r}: {err}") from None
    if task in TASKS:
        raise ValueError(f"task {task!r} takes no options, got {sorted(options)}; remove them")
    raise ValueError(f"unknown task {task!r}; valid tasks are: {', '.join(TASKS)}")
