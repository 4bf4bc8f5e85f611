"""Samplers: Proposition 1 (parallel == sequential) for every task, noise order, clipping, bad inputs."""

from __future__ import annotations

import pytest
import torch

from deqir_edu.diffusion import chain_config, draw_noises
from deqir_edu.models import ChunkedModel, ClippedModel
from deqir_edu.operators import TASKS, make_operator
from deqir_edu.sampling import ddim_sample, ddnm_sample, deqir_sample

SHAPE = (3, 8, 8)
T = 20


@pytest.fixture(scope="module")
def problem(toy):
    """The shared toy problem (conftest): its prior and two images drawn with seed 1 (``PRIOR, X`` below)."""
    prior, x, *_ = toy(sample_seed=1)
    return prior, x


def gen(seed: int = 5) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("eta", [0.0, 0.15])
@pytest.mark.parametrize("task", TASKS)
def test_proposition1_picard_T_iterations_equals_ddnm(problem, task: str, eta: float) -> None:
    PRIOR, X = problem
    op = make_operator(task, SHAPE)
    y = op.A(X)
    seq = ddnm_sample(PRIOR, op, y, T, eta, gen())
    par = deqir_sample(PRIOR, op, y, T, eta, gen(), solver="picard", max_iter=T, solver_options={"tol": 0.0})
    assert par.trace.passes == T and par.evaluations == T * T
    assert float((par.x0 - seq).abs().max()) <= 1e-8
    assert float((op.A(seq) - y).abs().max()) < 1e-10  # A x_0 = y: the last step is a projection
    assert par.states.shape == (T + 1, *X.shape)


def test_draw_noises_order_and_determinism(problem) -> None:
    PRIOR, X = problem
    x_T, eps = draw_noises((2, *SHAPE), 4, gen(3))
    ref = torch.randn((5, 2, *SHAPE), generator=gen(3), dtype=torch.float64)
    assert torch.equal(x_T, ref[0]) and torch.equal(eps, ref[1:])
    # explicit noises and the generator give the same chain; noises[0] is used by the first step
    op = make_operator("inpaint-box", SHAPE)
    y = op.A(X)
    a = ddnm_sample(PRIOR, op, y, 4, 0.5, gen(3))
    b = ddnm_sample(PRIOR, op, y, 4, 0.5, noises=(x_T, eps))
    assert torch.equal(a, b)
    eps2 = eps.clone()
    eps2[0] += 1.0
    c = ddnm_sample(PRIOR, op, y, 4, 0.5, noises=(x_T, eps2))
    seen = []
    ddnm_sample(PRIOR, op, y, 4, 0.5, noises=(x_T, eps2), callback=lambda d: seen.append(d))
    assert [d["k"] for d in seen] == [4, 3, 2, 1] and torch.equal(seen[0]["x"], x_T)
    assert not torch.allclose(a, c) and torch.equal(seen[-1]["x_next"], c)


class ZeroOperator:
    """A user's own operator: measures nothing, so DDNM reduces to unconditional DDIM."""

    name = "zero"

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :, :1, :1])

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros(y.shape[0], *SHAPE, dtype=y.dtype)


def test_ddim_is_ddnm_without_measurement_and_parallel_agrees(problem) -> None:
    PRIOR, _ = problem
    op = ZeroOperator()
    y = torch.zeros(3, 3, 1, 1, dtype=torch.float64)
    x = ddim_sample(PRIOR, 3, 10, 0.3, gen(7))
    assert x.shape == (3, *SHAPE) and torch.equal(x, ddim_sample(PRIOR, (3, *SHAPE), 10, 0.3, gen(7)))
    torch.testing.assert_close(ddnm_sample(PRIOR, op, y, 10, 0.3, gen(7)), x, rtol=0, atol=1e-12)
    par = deqir_sample(PRIOR, op, y, 10, 0.3, gen(7), solver="picard", max_iter=10, solver_options={"tol": 0.0})
    assert float((par.x0 - x).abs().max()) < 1e-8
    # samples of the exact prior land near a component mean (distance ~ std * sqrt(D) ~ 1.4)
    d = torch.cdist(x.flatten(1), PRIOR.means.flatten(1)).min(1).values
    assert float(d.max()) < 3.0


def test_clipped_model_keeps_proposition1(toy) -> None:
    prior = toy(std=0.3, scale=0.95).prior  # clean estimates leave [-1, 1]: clipping is active
    clipped = ClippedModel(prior)
    assert clipped.image_shape == SHAPE and torch.equal(clipped.alphas_cumprod, prior.alphas_cumprod)
    op = make_operator("sr4", SHAPE)
    y = op.A(prior.sample(2, gen(2)))
    preds = []
    assert ClippedModel(clipped) is clipped  # wrapping twice is wrapping once
    seq = ddnm_sample(clipped, op, y, T, 0.15, gen(), callback=lambda d: preds.append(d["x0_pred"]))
    assert max(float(p.abs().max()) for p in preds) <= 1.0 + 1e-12
    assert float((seq - ddnm_sample(prior, op, y, T, 0.15, gen())).abs().max()) > 1e-3
    par = deqir_sample(clipped, op, y, T, 0.15, gen(), solver="picard", max_iter=T, solver_options={"tol": 0.0})
    assert float((par.x0 - seq).abs().max()) <= 1e-8


def test_chunked_network_calls_and_float32(problem) -> None:
    PRIOR, X = problem
    op = make_operator("colorize", SHAPE)
    y = op.A(X)
    a = deqir_sample(PRIOR, op, y, T, 0.15, gen(), solver="picard", max_iter=T, solver_options={"tol": 0.0})
    b = deqir_sample(
        ChunkedModel(PRIOR, 6), op, y, T, 0.15, gen(), solver="picard", max_iter=T, solver_options={"tol": 0.0}
    )
    torch.testing.assert_close(a.x0, b.x0, rtol=0, atol=1e-12)
    noises32 = tuple(z.float() for z in draw_noises(X.shape, T, gen()))  # same numbers as float64
    seq32 = ddnm_sample(PRIOR, op, y.float(), T, 0.15, noises=noises32)
    par32 = deqir_sample(
        PRIOR, op, y.float(), T, 0.15, noises=noises32, solver="picard", max_iter=T, solver_options={"tol": 0.0}
    )
    assert seq32.dtype == par32.x0.dtype == torch.float32
    assert float((seq32 - par32.x0).abs().max()) < 1e-3
    assert float((seq32.double() - a.x0).abs().max()) < 1e-3


def test_parallel_callback_sees_every_iterate(problem) -> None:
    PRIOR, X = problem
    op = make_operator("inpaint-box", SHAPE)
    seen = []
    res = deqir_sample(
        PRIOR,
        op,
        op.A(X),
        6,
        0.0,
        gen(),
        solver="picard",
        max_iter=4,
        callback=lambda d: seen.append(d),
        solver_options={"tol": 0.0},
    )
    assert [d["iteration"] for d in seen] == [1, 2, 3, 4]
    assert seen[-1]["states"].shape == (6, *X.shape) and torch.equal(seen[-1]["states"][0], res.x0)
    assert [d["residual"] for d in seen] == res.trace.residual


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y=torch.full((2, 3, 2, 2), float("nan"), dtype=torch.float64)), "NaN"),
        (dict(y=torch.zeros(2, 3, 3, 3, dtype=torch.float64)), "spatial size"),  # wrong size for sr4
        (dict(y=torch.zeros(3, 2, 2, dtype=torch.float64)), r"\(B, C, H, W\)"),  # no batch dimension
        (dict(noises=(torch.zeros(2, 3, 8, 4), torch.zeros(T, 2, 3, 8, 4))), "x_T"),
        (dict(noises=(torch.zeros(2, 3, 8, 8), torch.zeros(T - 1, 2, 3, 8, 8))), "noises"),
        (dict(noises=(torch.zeros(3, 3, 8, 8), torch.zeros(T, 3, 3, 8, 8))), "batch"),
        (dict(eta=1.0), "eta"),
        (dict(steps=0), "steps"),
        (dict(solver="broyden"), "unknown solver"),
        (dict(solver="anderson", solver_options={"stop": "maybe"}), "stopping rule"),
        (dict(solver="auto", solver_options={"stop": "global"}), "stopping rule"),
        (dict(solver_options={"max_iter": 3}), "deqir_sample itself"),
        (dict(solver_options=[("tol", 0)]), "mapping"),
        (dict(solver="taa", solver_options={"form": "gauss"}), "no option form.*WindowConfig"),
        (dict(solver="picard", solver_options={"m": 3}), "no option m"),
        (dict(chain=chain_config(T, 0.15)), "not both"),
        (dict(generator=torch.Generator(), noises=draw_noises((2, *SHAPE), T)), "not both"),
        (dict(generator="seed"), "torch.Generator"),
    ],
)
def test_bad_inputs(problem, kwargs: dict, match: str) -> None:
    PRIOR, X = problem
    op = make_operator("sr4", SHAPE)
    args = dict(y=op.A(X), steps=T, eta=0.15)
    args.update(kwargs)
    y = args.pop("y")
    with pytest.raises(ValueError, match=match):
        deqir_sample(PRIOR, op, y, **args)
    if "solver" not in args and "solver_options" not in args:
        with pytest.raises(ValueError, match=match):
            ddnm_sample(PRIOR, op, y, **args)


def test_ddim_shape_mismatch(problem) -> None:
    PRIOR, _ = problem
    with pytest.raises(ValueError, match="image_shape"):
        ddim_sample(PRIOR, (2, 1, 8, 8), 5)
