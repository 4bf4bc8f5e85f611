"""Tests for deqir_edu.operators / operators_svd / masks: Penrose identities on random inputs for
every task, exactness against dense pseudo-inverses, independent references, dtype/device, errors."""

from __future__ import annotations

import doctest
import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import deqir_edu
from deqir_edu import make_operator
from deqir_edu.operators import (
    TASKS,
    ComposedOperator,
    Inpainting,
    Operator,
    box_mask,
    null_space_project,
    penrose_residuals,
    random_mask,
    stripes_mask,
    text_mask,
)
from deqir_edu.operators import base as operators_module
from deqir_edu.operators.svd import ZERO, bicubic_kernel, gaussian_kernel

SHAPES = [(1, 8, 8), (3, 16, 16)]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FEW = settings(max_examples=8, deadline=None)  # the CPU is shared: keep example counts modest


@functools.cache
def op_for(task: str, shape: tuple[int, int, int]) -> Operator:
    return make_operator(task, shape)


def randn(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def dense(f, n_in: int, shape_in: tuple[int, ...]) -> torch.Tensor:
    """Matrix of a linear map by applying it to the standard basis (columns)."""
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape_in)
    return f(basis).reshape(n_in, -1).T


def test_tasks_list_and_public_api() -> None:
    assert set(TASKS) == {
        "identity",
        "sr2",
        "sr4",
        "sr8",
        "sr2-bicubic",
        "sr4-bicubic",
        "deblur-gauss",
        "deblur-aniso",
        "inpaint-box",
        "inpaint-random",
        "inpaint-stripes",
        "inpaint-text",
        "colorize",
        "old-photo",
    }
    assert deqir_edu.make_operator is make_operator and deqir_edu.operators.Operator is Operator


# ---------------------------------------------------------------- Penrose identities, every task
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("task", TASKS)
@FEW
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), scale=st.floats(1e-2, 1e2))
def test_penrose_identities(task: str, shape: tuple[int, int, int], seed: int, batch: int, scale: float) -> None:
    op = op_for(task, shape)
    x = scale * randn((batch, *shape), seed)
    y = scale * randn((batch, *op.measurement_shape), seed + 1)
    u, v = randn((batch, *shape), seed + 2), randn((batch, *shape), seed + 3)
    a, b = randn((batch, *op.measurement_shape), seed + 4), randn((batch, *op.measurement_shape), seed + 5)
    tol = 1e-10
    assert rel(op.A(op.A_pinv(op.A(x))), op.A(x)) < tol  # A A+ A = A
    assert rel(op.A_pinv(op.A(op.A_pinv(y))), op.A_pinv(y)) < tol  # A+ A A+ = A+
    px = op.project(x)
    assert rel(op.project(px), px) < tol  # A+ A idempotent
    lhs, rhs = (op.project(u) * v).sum(), (u * op.project(v)).sum()  # <A+A u, v> = <u, A+A v>
    assert abs(float(lhs - rhs)) < tol * float(u.norm() * v.norm())
    lhs, rhs = (op.A(op.A_pinv(a)) * b).sum(), (a * op.A(op.A_pinv(b))).sum()  # A A+ symmetric
    assert abs(float(lhs - rhs)) < tol * float(a.norm() * b.norm())
    # Eq. (5): the result is consistent with y = A x and keeps x0 in the null space
    x0 = randn((batch, *shape), seed + 6)
    x0_hat = op.null_space_project(x0, op.A(x))
    assert rel(op.A(x0_hat), op.A(x)) < tol
    assert rel(null_space_project(op, x, op.A(x)), x) < tol  # a consistent x0 is left unchanged
    null_hat, null_0 = x0_hat - op.project(x0_hat), x0 - op.project(x0)  # null-space part is x0's
    assert float((null_hat - null_0).norm()) <= tol * float(x0.norm() + x.norm())


@pytest.mark.parametrize("task", TASKS)
def test_pinv_equals_dense_moore_penrose(task: str) -> None:
    """Matrix-free A_pinv equals torch.linalg.pinv of the dense matrix of A (independent check)."""
    shape = (3, 8, 8)
    op = op_for(task, shape)
    n_in, n_out = math.prod(shape), math.prod(op.measurement_shape)
    a_dense = dense(op.A, n_in, shape)
    p_dense = dense(op.A_pinv, n_out, op.measurement_shape)
    ref = torch.linalg.pinv(a_dense, atol=1e-9)
    assert torch.allclose(p_dense, ref, atol=1e-8 * float(ref.abs().max()) + 1e-12)


# ---------------------------------------------------------------- shapes, linearity, batches, dtypes
@pytest.mark.parametrize("task", TASKS)
def test_shapes_linearity_and_batch_consistency(task: str) -> None:
    shape = (3, 16, 16)
    op = op_for(task, shape)
    assert op.name == task and op.image_shape == shape
    x1, x2 = randn((4, *shape), 1), randn((4, *shape), 2)
    y = op.A(x1)
    assert y.shape == (4, *op.measurement_shape)
    assert op.A_pinv(y).shape == (4, *shape) and op.project(x1).shape == (4, *shape)
    assert rel(op.A(2.0 * x1 - 3.0 * x2), 2.0 * op.A(x1) - 3.0 * op.A(x2)) < 1e-12
    for i in range(4):  # each image is treated on its own
        assert torch.allclose(op.A(x1[i : i + 1]), y[i : i + 1], rtol=0, atol=1e-12)
        assert torch.allclose(op.A_pinv(y[i : i + 1]), op.A_pinv(y)[i : i + 1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("task", TASKS)
def test_dtype_and_device_follow_input(task: str, dtype: torch.dtype, device: str) -> None:
    shape = (3, 16, 16)
    op = op_for(task, shape)
    x64 = randn((2, *shape), 7)
    x = x64.to(device=device, dtype=dtype)
    y = op.A(x)
    z = op.A_pinv(y)
    w = op.null_space_project(x, y)
    for t in (y, z, w):
        assert t.dtype == dtype and t.device.type == device
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 5e-2}[dtype]
    assert rel(y.double().cpu(), op.A(x64)) < tol
    # A^+ amplifies by up to 1/zero^2 for the SVD tasks: compare on a range-space input
    y64 = op.A(x64)
    assert rel(op.A(op.A_pinv(y64.to(device=device, dtype=dtype))).double().cpu(), y64) < 20 * tol


def test_gradients_flow_through_operators() -> None:
    op = op_for("sr4-bicubic", (3, 16, 16))
    x = randn((2, 3, 16, 16), 3).requires_grad_(True)
    op.null_space_project(x, op.A(x.detach() * 0.5)).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------- each operator against a reference
@pytest.mark.parametrize("s", [2, 4, 8])
def test_average_pooling_and_replication(s: int) -> None:
    op = op_for(f"sr{s}", (3, 16, 16))
    x = randn((2, 3, 16, 16), 5)
    blocks = x.reshape(2, 3, 16 // s, s, 16 // s, s).mean(dim=(3, 5))
    assert torch.allclose(op.A(x), blocks, atol=1e-14)
    y = randn((2, 3, 16 // s, 16 // s), 6)
    up = op.A_pinv(y)
    assert torch.equal(up[..., ::s, ::s], y) and torch.equal(up[..., s - 1 :: s, s - 1 :: s], y)
    # A^+ = s^2 A^T: compare with the adjoint obtained by autograd
    xr = torch.zeros(1, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    (adjoint,) = torch.autograd.grad((op.A(xr) * y[:1]).sum(), xr)
    assert torch.allclose(up[:1], s * s * adjoint, atol=1e-14)


def test_colorization_is_mean_and_repeat() -> None:
    op = op_for("colorize", (3, 8, 8))
    x = randn((2, 3, 8, 8), 8)
    assert torch.allclose(op.A(x), (x[:, 0:1] + x[:, 1:2] + x[:, 2:3]) / 3, atol=1e-15)
    y = randn((2, 1, 8, 8), 9)
    assert torch.equal(op.A_pinv(y), y.expand(2, 3, 8, 8))


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_matches_pillow_in_the_interior(scale: int) -> None:
    """Untruncated bicubic matrix = Pillow's antialiased BICUBIC resize away from the borders."""
    from PIL import Image

    n = 32
    op = make_operator(f"sr{scale}-bicubic", (1, n, n))
    img = torch.rand(n, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = op.full_h @ img @ op.full_w.T
    pil = Image.fromarray(img.float().numpy(), mode="F").resize((n // scale, n // scale), Image.BICUBIC)
    pil = torch.from_numpy(np.asarray(pil, dtype=np.float64).copy())
    assert torch.allclose(ours[2:-2, 2:-2], pil[2:-2, 2:-2], atol=1e-5)
    k = bicubic_kernel(scale)
    assert k.numel() == 4 * scale and torch.allclose(k, k.flip(0)) and abs(float(k.sum()) - 1) < 1e-15
    assert torch.allclose(op.full_h.sum(dim=1), torch.ones(n // scale, dtype=torch.float64))


@pytest.mark.parametrize("task", ["deblur-gauss", "deblur-aniso"])
def test_deblur_uses_full_centred_kernel(task: str) -> None:
    """full_h x full_w^T = 2-D convolution with every tap (DDRM's loop drops the last one)."""
    n = 24
    op = make_operator(task, (1, n, n))
    k_h, k_w = (
        (gaussian_kernel(10.0, 5),) * 2
        if task == "deblur-gauss"
        else (gaussian_kernel(1.0, 9), gaussian_kernel(20.0, 9))
    )
    x = randn((1, 1, n, n), 11)
    ref = F.conv2d(x, torch.outer(k_h, k_w)[None, None], padding=(k_h.numel() // 2, k_w.numel() // 2))
    assert torch.allclose(op.full_h @ x @ op.full_w.T, ref, atol=1e-14)
    r = k_h.numel() // 2  # interior rows hold the whole kernel, so they sum to exactly 1
    assert torch.allclose(op.full_h[r:-r].sum(dim=1), torch.ones(n - 2 * r, dtype=torch.float64))
    assert torch.allclose(op.full_h[r, : 2 * r + 1], k_h)


@pytest.mark.parametrize("task", ["sr2-bicubic", "sr4-bicubic", "deblur-gauss", "deblur-aniso"])
def test_svd_truncation_is_small_and_thresholded(task: str) -> None:
    op = make_operator(task, (1, 32, 32))
    for full, trunc, s in ((op.full_h, op.A_h, op.singulars_h), (op.full_w, op.A_w, op.singulars_w)):
        assert float(torch.linalg.matrix_norm(full - trunc, ord=2)) < ZERO
        assert bool(((s == 0) | (s >= ZERO)).all())
        s_full = torch.linalg.svdvals(full)
        assert torch.allclose(s[s > 0], s_full[s_full >= ZERO])
    looser = make_operator(task, (1, 32, 32), zero=0.0)  # no truncation: A is the plain matrix
    assert torch.allclose(looser.A_h, looser.full_h, atol=1e-12)


# ---------------------------------------------------------------- masks and composition
def test_mask_generators() -> None:
    box = box_mask(16, 16, size=4)
    assert box.sum() == 256 - 16 and box[6:10, 6:10].sum() == 0 and box[5, :].all()
    rnd = random_mask(20, 10, missing=0.8, seed=3)
    assert int((rnd == 0).sum()) == 160 and torch.equal(rnd, random_mask(20, 10, missing=0.8, seed=3))
    assert not torch.equal(rnd, random_mask(20, 10, missing=0.8, seed=4))
    st_ = stripes_mask(8, 6, width=2)
    assert st_[:, 0].tolist() == [1, 1, 0, 0, 1, 1, 0, 0] and (st_ == st_[:, :1]).all()
    txt = text_mask(64, 64)
    assert torch.equal(txt, text_mask(64, 64)) and 0.5 < float(txt.mean()) < 0.98
    for m in (box, rnd, st_, txt):
        assert m.dtype == torch.float64 and bool(((m == 0) | (m == 1)).all())


def test_user_mask_and_mask_options() -> None:
    mask = torch.zeros(8, 8)
    mask[:, :4] = 1
    op = make_operator("inpaint-box", (3, 8, 8), mask=mask)
    x = randn((1, 3, 8, 8), 1)
    assert torch.equal(op.A(x)[..., :4], x[..., :4]) and (op.A(x)[..., 4:] == 0).all()
    op2 = make_operator("inpaint-random", (1, 8, 8), missing=0.5, seed=1)
    assert float(op2.mask.mean()) == 0.5


def test_old_photo_is_mask_then_colour_mean() -> None:
    op = make_operator("old-photo", (3, 16, 16), inpaint="inpaint-box", size=6)
    x = randn((2, 3, 16, 16), 2)
    mask = box_mask(16, 16, size=6)
    assert torch.allclose(op.A(x), (x * mask).mean(dim=1, keepdim=True), atol=1e-15)
    assert isinstance(op, ComposedOperator) and op.measurement_shape == (1, 16, 16)


def test_penrose_residuals_detects_a_wrong_composition() -> None:
    """Mask then blur does not obey the reversal law: A1^+ A2^+ is not the pseudo-inverse."""
    shape = (1, 8, 8)
    blur = make_operator("deblur-aniso", shape, sigmas=(2.0, 2.0), sizes=(5, 5))
    wrong = ComposedOperator(blur, op_for("inpaint-box", shape))
    x, y = randn((2, *shape), 1), randn((2, *shape), 2)
    assert max(penrose_residuals(wrong, x, y).values()) > 1e-3
    assert (
        max(penrose_residuals(op_for("old-photo", (3, 8, 8)), randn((2, 3, 8, 8), 1), randn((2, 1, 8, 8), 2)).values())
        < 1e-12
    )


def test_docstring_example_user_operator() -> None:
    result = doctest.testmod(operators_module, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_operator("sr3", (3, 8, 8)), "unknown task 'sr3'; valid tasks are: identity"),
        (lambda: make_operator(4, (3, 8, 8)), "task must be a string"),
        (lambda: make_operator("sr4", (3, 18, 18)), "not divisible by the super-resolution scale 4"),
        (lambda: make_operator("sr2-bicubic", (3, 15, 16)), "not divisible by the super-resolution scale 2"),
        (lambda: make_operator("sr4", (3, 16)), r"image_shape must be \(C, H, W\)"),
        (lambda: make_operator("sr4", (3, 16, 16), mask=1), "takes no options"),
        (lambda: make_operator("deblur-gauss", (3, 16, 16), sigmas=2), "does not take option"),
        (lambda: make_operator("deblur-gauss", (3, 16, 16), size=4), "odd"),
        (lambda: make_operator("inpaint-box", (3, 8, 8), mask=torch.ones(8, 9)), "mask has shape"),
        (lambda: make_operator("inpaint-box", (3, 8, 8), mask=torch.full((8, 8), 0.5)), "only 0"),
        (lambda: make_operator("inpaint-box", (3, 8, 8), mask=torch.ones(8, 8), size=3), "ignored"),
        (lambda: make_operator("inpaint-random", (3, 8, 8), missing=1.5), "missing"),
        (lambda: make_operator("inpaint-random", (3, 8, 8), holes=3), "bad option"),
        (lambda: make_operator("old-photo", (3, 8, 8), inpaint="sr4"), "not a mask task"),
    ],
)
def test_factory_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("task", TASKS)
def test_bad_inputs_raise(task: str) -> None:
    op = op_for(task, (3, 16, 16))
    x = randn((2, 3, 16, 16), 0)
    y = op.A(x)
    with pytest.raises(ValueError, match="channels"):
        op.A(x[:, :2])
    with pytest.raises(ValueError, match="spatial size"):
        op.A(x[..., :8, :8])
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        op.A(x[0])
    x_nan, y_inf = x.clone(), y.clone()
    x_nan[1, 2, 3, 4], y_inf[0, 0, 1, 1] = torch.nan, torch.inf
    with pytest.raises(ValueError, match="NaN"):
        op.A(x_nan)
    with pytest.raises(ValueError, match="NaN"):
        op.A_pinv(y_inf)
    with pytest.raises(ValueError, match="floating-point"):
        op.A(x.long())
    wrong_y = torch.zeros(2, op.measurement_shape[0], 5, 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="measurement y"):
        op.A_pinv(wrong_y)


def test_inpainting_class_accepts_1hw_mask() -> None:
    op = Inpainting((3, 4, 4), torch.ones(1, 4, 4))
    assert op.mask.shape == (4, 4)
