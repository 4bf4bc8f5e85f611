"""One solver registry for every entry point, one chain configuration, one method runner.

Exact prior, float64, tiny images: the sequential chain is the reference every path must reach.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from deqir_edu.apps.cli import main
from deqir_edu.diffusion import chain_config, official_chain
from deqir_edu.experiments import Method, evaluate, parse_method, restore, run_method
from deqir_edu.inversion import PhantomConfig, phantom_gradient
from deqir_edu.models import ChunkedModel, ClippedModel
from deqir_edu.sampling import FixedPointMap, ddnm_sample, deqir_sample
from deqir_edu.solvers import SOLVERS, get_solver, picard, register, solver_names, solver_spec

SHAPE = (1, 16, 16)
T = 8


@pytest.fixture(scope="module")
def problem(toy):
    """The shared toy problem (conftest) on grey 16 x 16 images: prior, A, x, y and the noises (x_T, eps)."""
    prior, x, op, y, x_T, noises = toy("sr2", batch=3, steps=T, shape=SHAPE, components=5, std=0.15)
    return prior, op, x, y, (x_T, noises)


def test_registry_lists_the_paper_solvers_and_the_new_ones():
    assert {"picard", "anderson", "picard-freeze", "taa", "gauss-freeze"} <= set(solver_names())
    assert get_solver("picard") is picard
    with pytest.raises(ValueError, match="unknown solver 'nope'; use one of anderson"):
        get_solver("nope")
    with pytest.raises(ValueError, match="already registered"):
        register("picard", picard)


@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_deqir_sample_takes_every_registered_solver(problem, solver):
    prior, op, x, y, noises = problem
    ref = ddnm_sample(prior, op, y, T, 0.15, noises=noises)
    res = deqir_sample(prior, op, y, T, 0.15, noises=noises, solver=solver, max_iter=3 * T, solver_options={"tol": 0.0})
    assert res.passes <= 3 * T and res.evaluations >= res.passes
    if solver != "anderson":  # Algorithm 1 need not terminate at T; every other solver is exact by T passes
        assert float((res.x0 - ref).abs().max()) < 1e-8, solver


@pytest.mark.parametrize("solver", ["picard-freeze", "taa", "anderson"])
def test_inversion_takes_every_registered_solver(problem, solver):
    """The phantom gradient at the exact fixed point does not depend on which solver found it."""
    prior, op, x, y, (x_T, eps) = problem
    want = phantom_gradient(prior, op, y, x_T, eps, T, 0.15, phantom=PhantomConfig(solver="picard"))
    got = phantom_gradient(
        prior,
        op,
        y,
        x_T,
        eps,
        T,
        0.15,
        phantom=PhantomConfig(solver=solver, max_iter=4 * T, solver_options={"tol": 1e-12}),
    )
    assert float((got.grad - want.grad).abs().max()) < 1e-6 * float(want.grad.abs().max())


def test_a_registered_solver_is_found_by_every_entry_point(problem):
    prior, op, x, y, noises = problem
    calls = []

    def counting_picard(f, init, **kw):
        calls.append(kw.get("max_iter"))
        return picard(f, init, **kw)

    register("counting-picard", counting_picard)
    try:
        deqir_sample(prior, op, y, T, 0.15, noises=noises, solver="counting-picard", max_iter=T)
        assert parse_method("deqir-counting-picard-k8") == Method(
            "deqir-counting-picard-k8", "deqir", 20, 8, "counting-picard"
        )
        rows = evaluate(prior, x, tasks=["sr2"], methods=["deqir-counting-picard-k8"], steps=T, lpips_fn=None)
        assert rows[0]["passes"] <= 8 and calls == [T, 8]
    finally:
        del SOLVERS["counting-picard"]


def test_method_names_cover_every_solver():
    assert parse_method("deqir-picard") == Method("deqir-picard", "deqir", 20, 20, "picard", tol=0.0)
    assert parse_method("deqir-k15") == Method("deqir-k15", "deqir", 20, 15, "anderson")
    assert parse_method("deqir-t35-taa-k8").solver == "taa"
    assert parse_method("deqir-gauss-freeze-k20", steps=40) == Method(
        "deqir-gauss-freeze-k20", "deqir", 40, 20, "gauss-freeze"
    )
    with pytest.raises(ValueError, match="deqir-SOLVER-kK"):
        parse_method("deqir-newton-k5")


def test_the_runner_is_the_samplers(problem):
    """pinv / ddnm / deqir through the runner give what the samplers give, clipping wraps once."""
    prior, op, x, y, noises = problem
    assert torch.equal(run_method(prior, op, y, "pinv").x, op.A_pinv(y))
    run = run_method(prior, op, y, Method("ddnm", "ddnm", T), 0.15, noises)
    assert torch.equal(run.x, ddnm_sample(prior, op, y, T, 0.15, noises=noises))
    assert (run.evaluations, run.passes, run.converged) == (T, T, True)
    run = run_method(prior, op, y, Method("deqir", "deqir", T, 5, "taa"), 0.15, noises)
    assert torch.equal(run.x, deqir_sample(prior, op, y, T, 0.15, noises=noises, solver="taa", max_iter=5).x0)
    clipped = run_method(prior, op, y, Method("ddnm", "ddnm", T), 0.15, noises, clip=True).x
    assert torch.equal(clipped, ddnm_sample(ClippedModel(prior), op, y, T, 0.15, noises=noises))
    mean = run_method(
        prior, op, y, Method("ddnm", "ddnm", T), 0.15, generator=torch.Generator().manual_seed(4), samples=3
    ).x
    runs = ddnm_sample(prior, op, y.repeat(3, 1, 1, 1), T, 0.15, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(mean, runs.reshape(3, *y.shape[:1], *runs.shape[1:]).mean(0), atol=1e-12)
    with pytest.raises(ValueError, match="generator, not noises"):
        run_method(prior, op, y, Method("ddnm", "ddnm", T), noises=noises, samples=2)
    with pytest.raises(ValueError, match="unknown solver"):
        restore(prior, op, y, solver="nope")


def test_one_chain_configuration_for_every_sampler(problem):
    """The official setting is a ChainConfig, not copies of the samplers: sequential, parallel and
    inversion all take it and Proposition 1 holds for it."""
    prior, op, x, y, noises = problem
    chain = official_chain(T, etw=0.1, nw=0.2, svd=False, alphas_cumprod_full=prior.alphas_cumprod)
    seq = ddnm_sample(prior, op, y, noises=noises, chain=chain)
    par = deqir_sample(
        prior, op, y, noises=noises, chain=chain, solver="picard", max_iter=T, solver_options={"tol": 0.0}
    )
    assert float((seq - par.x0).abs().max()) < 1e-10
    assert float((seq - ddnm_sample(prior, op, y, T, 0.15, noises=noises)).abs().max()) > 1e-3  # another chain
    grad = phantom_gradient(prior, op, y, *noises, chain=chain).grad
    assert grad.shape == x.shape and bool(torch.isfinite(grad).all())
    eta = chain_config(T, 0.15)
    assert eta.eta == 0.15 and eta.setting == "eta" and chain.eta is None
    assert torch.allclose(eta.c2[1:], (1 - eta.abar[:-1]).sqrt() * eta.g2[1:])


def test_the_map_owns_batching_and_counters(problem):
    prior, op, x, y, (x_T, eps) = problem
    seen = []
    chunked = ChunkedModel(prior, 4)

    def model(xt, t):
        seen.append(xt.shape[0])
        return chunked(xt, t)

    model.image_shape, model.alphas_cumprod = prior.image_shape, prior.alphas_cumprod
    f = FixedPointMap(model, op, y, x_T, eps, chain_config(T, 0.15))
    states = x_T.expand(T, *x_T.shape).clone()
    f(states)
    assert (f.evaluations, f.passes) == (T, 1)
    full = torch.cat([states, x_T[None]])
    f.evaluate(full, 3, 5)  # states 3..5: one pass, three evaluations
    assert (f.evaluations, f.passes) == (T + 3, 2)
    assert seen == [T * 3, 3 * 3]  # one network call per pass (the model chunks it further)


def test_cli_restore_takes_a_solver(tmp_path):
    from PIL import Image

    Image.new("L", (8, 8), 128).save(tmp_path / "small.png")  # fashion32 is 32 x 32: x4 SR of 8 x 8
    out = tmp_path / "out.png"
    assert (
        main(
            [
                "restore",
                str(tmp_path / "small.png"),
                "--task",
                "sr4",
                "--out",
                str(out),
                "--steps",
                "4",
                "--iters",
                "4",
                "--solver",
                "taa",
            ]
        )
        == 0
    )
    assert Image.open(out).size == (32, 32)
    assert main(["restore", str(tmp_path / "small.png"), "--task", "sr4", "--out", str(out), "--solver", "nope"]) == 2


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_takes_its_parameters_keyword_only_in_one_order(name):
    """``solve(f, init, *, max_iter, tol, stop, reference, callback, <its own>)``, typed (``contract.Solver``)."""
    params = list(inspect.signature(solver_spec(name).solve).parameters.values())
    assert [p.name for p in params[:2]] == ["f", "init"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:]), params
    assert [p.name for p in params[2:7]] == ["max_iter", "tol", "stop", "reference", "callback"]
    assert solver_spec(name).stop_rules[0] == inspect.signature(solver_spec(name).solve).parameters["stop"].default


def test_solver_facts_come_from_the_registry():
    assert solver_spec("anderson").default_passes(20) == 15 and solver_spec("auto").default_passes(20) == 20
    assert solver_spec("picard").exact_after_T and not solver_spec("anderson").exact_after_T
    assert "global" in solver_spec("anderson").stop_rules and "global" not in solver_spec("taa").stop_rules
    assert parse_method("deqir-picard").tol == 0.0 and parse_method("deqir-taa").tol is None
    register("plain-chain", solver_spec("picard").solve, exact_after_T=True, passes=7)
    try:
        assert parse_method("deqir-plain-chain").iters == 7
    finally:
        del SOLVERS["plain-chain"]
