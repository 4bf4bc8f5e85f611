"""DEQ inversion (Algorithm 2): phantom vs exact gradients, the zero measurement loss, and a restoration gain."""

from __future__ import annotations

import pytest
import torch

from deqir_edu.diffusion import draw_noises
from deqir_edu.inversion import (
    PhantomConfig,
    deq_invert,
    exact_chain_gradient,
    measurement_loss,
    phantom_gradient,
    reference_loss,
)
from deqir_edu.sampling import ddnm_sample


def problem(toy, task: str, n: int = 4, steps: int = 10):
    """The shared toy problem (conftest) with ``n`` images and the noises of seed 3."""
    prior, x, op, y, x_T, noises = toy(task, batch=n, steps=steps, noise_seed=3)
    return prior, op, x, y, x_T, noises


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


@pytest.mark.parametrize("task", ["inpaint-box", "sr4", "colorize"])
def test_measurement_loss_is_identically_zero(toy, task: str) -> None:
    """A x_0 = y by construction (last DDNM step), so ||A(x_0) - y||^2 carries no gradient."""
    prior, op, _, y, x_T, noises = problem(toy, task)
    ex = exact_chain_gradient(prior, op, y, x_T, noises, 10, 0.15, loss=measurement_loss)
    ph = phantom_gradient(prior, op, y, x_T, noises, 10, 0.15, phantom=PhantomConfig(loss=measurement_loss))
    assert float(ex.loss.max()) < 1e-25 and float(ph.loss.max()) < 1e-25
    assert float(ex.grad.abs().max()) < 1e-12 and float(ph.grad.abs().max()) < 1e-12
    # the default loss is not degenerate
    assert float(exact_chain_gradient(prior, op, y, x_T, noises, 10, 0.15).grad.abs().max()) > 1e-6


@pytest.mark.parametrize("task", ["inpaint-box", "colorize"])
def test_phantom_gradient_matches_exact_chain_gradient(toy, task: str) -> None:
    """T = 10, exact prior.  Loss of x_0 (Sec. 4.2's supervised loss): cosine >= 0.9.

    Default chain loss: the null-space parts agree (cosine >= 0.9), the one-step phantom gradient
    drops the range-space part (inversion.py docstring); T undamped phantom steps are exact.
    """
    prior, op, x, y, x_T, noises = problem(toy, task)
    sup = reference_loss(x)
    ex = exact_chain_gradient(prior, op, y, x_T, noises, 10, 0.15, loss=sup)
    ph = phantom_gradient(prior, op, y, x_T, noises, 10, 0.15, phantom=PhantomConfig(loss=sup))  # k = 1, tau = 0.1
    assert cos(ex.grad, ph.grad) >= 0.9  # measured 0.998 / 0.970
    torch.testing.assert_close(ph.loss, ex.loss, rtol=1e-10, atol=1e-12)  # same chain, same loss

    ex = exact_chain_gradient(prior, op, y, x_T, noises, 10, 0.15)
    ph = phantom_gradient(prior, op, y, x_T, noises, 10, 0.15)

    def q(v):
        return v - op.A_pinv(op.A(v))

    assert cos(q(ex.grad), q(ph.grad)) >= 0.9  # measured 0.989 / 0.986
    assert cos(ex.grad, ph.grad) > 0.3  # still a descent direction; measured 0.52 / 0.80
    full = phantom_gradient(prior, op, y, x_T, noises, 10, 0.15, phantom=PhantomConfig(phantom_steps=10, tau=1.0))
    torch.testing.assert_close(full.grad, ex.grad, rtol=1e-8, atol=1e-10)  # J_F is nilpotent


def test_inversion_lowers_loss_and_raises_psnr_on_inpainting(toy) -> None:
    """Random-pixel inpainting, 8 images.  With this noise, DDNM commits image 0 to the wrong
    mixture component (PSNR ~11 dB); no-ground-truth inversion repairs it."""
    prior, op, x, y, _, _ = problem(toy, "inpaint-random", n=8)

    def psnr(z):
        return 10 * torch.log10(4.0 / (z - x).flatten(1).pow(2).mean(1))  # range [-1, 1]

    res = deq_invert(prior, op, y, steps=10, eta=0.15, generator=torch.Generator().manual_seed(3), n_steps=20, lr=0.1)
    before, after = psnr(res.x0_initial), psnr(res.x0)
    assert float(before.min()) < 15.0  # the failure the example is about
    assert float(after.min()) > 20.0 and float(after.mean()) > float(before.mean()) + 1.0
    losses = res.loss_history  # (S + 1, B)
    assert losses.shape == (21, 8)
    assert bool((losses[-1] < losses[0]).all()) and float(losses[-1].mean()) < 0.5 * float(losses[0].mean())
    # the returned x0 is the restoration of the returned x_T, and it is measurement-consistent
    torch.testing.assert_close(op.A(res.x0), y, rtol=0, atol=1e-12)
    again = phantom_gradient(
        prior, op, y, res.x_T, draw_noises(x.shape, 10, torch.Generator().manual_seed(3))[1], 10, 0.15
    )
    torch.testing.assert_close(again.states[0], res.x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(again.loss, res.loss_history[-1], rtol=1e-10, atol=0)


def test_anderson_warm_started_inversion_runs(toy) -> None:
    prior, op, x, y, x_T, noises = problem(toy, "colorize", n=2)
    seen = []
    res = deq_invert(
        prior,
        op,
        y,
        steps=10,
        eta=0.0,
        noises=(x_T, noises),
        n_steps=3,
        phantom=PhantomConfig(solver="anderson", max_iter=15, solver_options={"tol": 1e-4}),
        callback=seen.append,
    )
    assert [d["step"] for d in seen] == [1, 2, 3] and res.loss_history.shape == (4, 2)
    seq = ddnm_sample(prior, op, y, 10, 0.0, noises=(x_T, noises))  # restoration of the initial x_T
    assert float((res.x0_initial - seq).abs().max()) < 1e-2
    assert float((res.x_T - x_T).abs().max()) > 1e-3


def test_bad_arguments(toy) -> None:
    prior, op, _, y, x_T, noises = problem(toy, "sr4", n=2)
    with pytest.raises(ValueError, match="tau"):
        phantom_gradient(prior, op, y, x_T, noises, 10, phantom=PhantomConfig(tau=0.0))
    with pytest.raises(ValueError, match="no option bogus"):  # the registry checks the solve's options too
        phantom_gradient(prior, op, y, x_T, noises, 10, phantom=PhantomConfig(solver_options={"bogus": 1}))
    with pytest.raises(ValueError, match="phantom_steps"):
        phantom_gradient(prior, op, y, x_T, noises, 10, phantom=PhantomConfig(phantom_steps=0))
    with pytest.raises(ValueError, match="noises"):
        exact_chain_gradient(prior, op, y, x_T, noises[:5], 10)
    with pytest.raises(ValueError, match="n_steps"):
        deq_invert(prior, op, y, 10, n_steps=-1)
    with pytest.raises(ValueError, match="NaN"):
        deq_invert(prior, op, y * float("nan"), 10, n_steps=1)
