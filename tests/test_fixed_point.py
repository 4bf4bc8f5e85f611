"""The fixed-point map F of Eq. (9): lower triangular (Eq. (10)), exact after T Picard steps."""

from __future__ import annotations

import pytest
import torch

from deqir_edu import load_model, load_testset
from deqir_edu.diffusion import chain_config
from deqir_edu.models import ChunkedModel
from deqir_edu.operators import make_operator
from deqir_edu.sampling import FixedPointMap, ddnm_sample, deqir_sample
from deqir_edu.solvers import picard

SHAPE = (3, 8, 8)
T = 20


def setup_chain(toy, task: str, eta: float, steps: int = T):
    """The shared toy problem (conftest), its sequential states x_0..x_{T-1} and its map F."""
    prior, _, op, y, x_T, noises = toy(task, steps=steps)
    seen: dict[int, torch.Tensor] = {}
    ddnm_sample(
        prior, op, y, steps, eta, noises=(x_T, noises), callback=lambda d: seen.update({d["k"] - 1: d["x_next"]})
    )
    ref = torch.stack([seen[k] for k in range(steps)])  # sequential x_0..x_{T-1}
    f = FixedPointMap(prior, op, y, x_T, noises, chain_config(steps, eta))
    return f, ref, op, y


@pytest.mark.parametrize("task, eta", [("inpaint-random", 0.15), ("sr4", 0.0), ("colorize", 0.15)])
def test_sequential_chain_is_the_fixed_point_of_both_forms(toy, task: str, eta: float) -> None:
    f, ref, _, _ = setup_chain(toy, task, eta)
    torch.testing.assert_close(f(ref), ref, rtol=0, atol=1e-10)  # cumulative-sum form, Eq. (9)
    torch.testing.assert_close(f.one_step(ref), ref, rtol=0, atol=1e-12)  # naive one-step form
    assert f.evaluations == 2 * T and f.passes == 2


def test_lower_triangular_structure(toy) -> None:
    """F_i depends only on x_{i+1..T} (Eq. (10)); x_0 never enters the network."""
    f, ref, _, _ = setup_chain(toy, "sr4", 0.15)
    base = f(ref)
    for j in (0, 5, 13, T - 1):
        bumped = ref.clone()
        bumped[j] += torch.randn(bumped[j].shape, generator=torch.Generator().manual_seed(j), dtype=torch.float64)
        diff = (f(bumped) - base).flatten(1).abs().amax(1)  # (T,)
        assert float(diff[j:].max()) == 0.0  # states at or after j are untouched
        if j > 0:
            assert float(diff[:j].min()) > 1e-6  # every earlier state moves


def test_picard_leading_states_exact_then_residual_zero(toy) -> None:
    f, ref, _, _ = setup_chain(toy, "inpaint-box", 0.15)
    init = f.x_T.expand(T, *f.x_T.shape).clone()  # Algorithm 1, line 1

    def err(s):
        return (s - ref).flatten(1).abs().amax(1)  # (T,) per state

    for n in (1, 7, 15):
        sol, _ = picard(f, init, max_iter=n, tol=0.0)
        e = err(sol)
        assert float(e[T - n :].max()) < 1e-9, f"after {n} iterations x_{{T-1}}..x_{{T-{n}}} are exact"
        assert float(e[: T - n].min()) > 1e-4, "the states below are not yet"
    sol, trace = picard(f, init, max_iter=T + 1, tol=0.0)
    assert float(err(sol).max()) < 1e-9
    # trace entry n is the residual at x^(n-1): zero (to rounding) from x^(T) on, not before;
    # at x^(T-1) only x_0 is still off, and by little: Picard converges fast near the end
    assert trace.residual[T] < 1e-14 and min(trace.residual[: T - 1]) > 1e-5
    # per-state residuals at x^(n-1) vanish on the n-1 leading states
    for n in (3, 10):
        r = trace.state_residual[n - 1]
        assert float(r[T - n + 1 :].max()) < 1e-12 and float(r[T - n]) > 1e-8
    assert torch.equal(torch.tensor(trace.evaluations).diff(), torch.full((T,), T))  # T evaluations per F


def test_measurement_consistency_whatever_the_states(toy) -> None:
    """x_0 = A^+ y + (I - A^+ A) x_{0|1}: A F(x)_0 = y for any input states (surjective A)."""
    for task in ("inpaint-box", "sr4", "colorize"):
        f, ref, op, y = setup_chain(toy, task, 0.15)
        junk = torch.randn(ref.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        torch.testing.assert_close(op.A(f(junk)[0]), y, rtol=0, atol=1e-12)


def test_chunks_give_the_same_map_and_gradients_flow_to_x_T(toy) -> None:
    f, ref, _, _ = setup_chain(toy, "colorize", 0.0, steps=8)
    chunked = ChunkedModel(f.model, max_batch=3)  # bounds the images per network call
    calls = []

    def counted(x, t):
        return calls.append(x.shape[0]) or chunked(x, t)

    counted.image_shape, counted.alphas_cumprod = chunked.image_shape, chunked.alphas_cumprod
    g = FixedPointMap(counted, f.op, f.y, f.x_T, f.step_noise.flip(0), f.chain)
    junk = ref + 0.1
    torch.testing.assert_close(g(junk), f(junk), rtol=0, atol=1e-12)
    assert g.evaluations == 8 and g.passes == 1 and calls == [8 * f.x_T.shape[0]]
    x_T = f.x_T.clone().requires_grad_(True)
    h = FixedPointMap(f.model, f.op, f.y, x_T, f.step_noise.flip(0), f.chain)
    (grad,) = torch.autograd.grad((h(junk)[0] * junk[0]).sum(), x_T)
    assert grad.shape == x_T.shape and float(grad.abs().max()) > 0


def test_bad_shapes(toy) -> None:
    f, ref, _, _ = setup_chain(toy, "sr4", 0.0, steps=4)
    with pytest.raises(ValueError, match="states must have shape"):
        f(ref[:3])
    with pytest.raises(ValueError, match="noises must have shape"):
        FixedPointMap(f.model, f.op, f.y, f.x_T, f.step_noise[:2], f.chain)
    with pytest.raises(ValueError, match="max_batch"):
        ChunkedModel(f.model, 0)
    with pytest.raises(ValueError, match="ChainConfig"):
        FixedPointMap(f.model, f.op, f.y, f.x_T, f.step_noise, 0.15)


@pytest.mark.parametrize("task", ["deblur-aniso", "deblur-gauss"])
def test_float32_fixed_point_stays_on_the_sequential_chain(task: str) -> None:
    """In float32 the cumulative sum of Eq. (9) cancels terms of size ~1/sqrt(abar_T); F accumulates
    it in float64, so Picard with K = T lands on DDNM's chain and keeps its consistency (the float32
    sum was 1e-3 off on deblurring with the embedded network, 0.02 dB PSNR)."""
    model = load_model("fashion32")
    x = load_testset("fashion32", n=2)
    op = make_operator(task, x.shape[1:])
    y = op.A(x)
    seq = ddnm_sample(model, op, y, steps=10, eta=0.15, generator=torch.Generator().manual_seed(0))
    par = deqir_sample(
        model,
        op,
        y,
        steps=10,
        eta=0.15,
        generator=torch.Generator().manual_seed(0),
        solver="picard",
        max_iter=10,
        solver_options={"tol": 0.0},
    )
    assert seq.dtype == par.x0.dtype == torch.float32
    assert (seq - par.x0).abs().max().item() < 2e-4
    assert (op.A(par.x0) - y).flatten(1).norm(dim=1).max().item() < 5e-5
