"""Linear degradation operators A, their pseudo-inverses A^dagger and the null-space projection.

Notation (code name -> paper symbol, DeqIR Sec. 3, Eqs. (1) and (5))

    x                      x                  clean image, (B, C, H, W), values in [-1, 1]
    y                      y                  measurement y = A x (noise-free), shape ``measurement_shape``
    op.A(x)                A x                the degradation
    op.A_pinv(y)           A^dagger y         Moore-Penrose pseudo-inverse applied to y
    project(op, x)         A^dagger A x       orthogonal projection onto the row space of A
    null_space(op, x)      Q x                (I - A^dagger A) x, the null-space part
    null_space_project     x0_hat             A^dagger y + (I - A^dagger A) x0,  Eq. (5) (written once, here)

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
The pixel operators live in ``pixel.py``, the SVD-based ones (bicubic SR, deblurring) in ``svd.py``,
the mask generators in ``masks.py`` and ``make_operator`` (task name -> operator) in ``tasks.py``.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.checks import check_image

__all__ = [
    "Operator",
    "Identity",
    "ComposedOperator",
    "project",
    "null_space",
    "null_space_project",
    "penrose_residuals",
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
        return project(self, x)

    def null_space_project(self, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Eq. (5): ``A^dagger y + (I - A^dagger A) x0``, (B, C, H, W)."""
        return null_space_project(self, x0, y)

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


def project(op: Any, x: torch.Tensor) -> torch.Tensor:
    """``A^+ A x`` for any object with ``A`` and ``A_pinv``: the orthogonal projection onto A's row space."""
    return op.A_pinv(op.A(x))


def null_space(op: Any, x: torch.Tensor) -> torch.Tensor:
    """``(I - A^+ A) x``: the part of ``x`` that the measurement does not see (Q in the samplers' notation)."""
    return x - project(op, x)


def null_space_project(op: Any, x0: torch.Tensor, y: torch.Tensor, pinv_y: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (5) for any object with ``A`` and ``A_pinv``: ``A^+ y + x0 - A^+ A x0``, ``(B, C, H, W)``.

    The one place of Eq. (5): the samplers, the map F and tiling call it.  ``pinv_y``: ``A^+ y`` if already computed.
    """
    return (op.A_pinv(y) if pinv_y is None else pinv_y) + x0 - project(op, x0)


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
