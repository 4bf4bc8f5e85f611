"""Where do DeqIR's reported gains come from?  Paired comparisons with the sequential chain.

At convergence the parallel sampler returns exactly the sequential DDNM chain with the same T, eta
and noises (Proposition 1).  So a DeqIR number that differs from DDNM's must come from one of:

1. **unconverged iterates**: stopping after K < T applications of F returns x_0^(K), not the chain's x_0;
2. **T**: the paper compares DeqIR at T = 20 with DDNM at T = 100 (a different chain);
3. **eta / the coefficient set**: the paper's eta = 0.15 versus DDNM's default 0.85, or the official
   code's README setting (``diffusion.official_chain``: no fresh noise, eps x sqrt(0.99)).

Each function below holds everything else fixed (same x, y, seed, hence the same x_T and eps_k) and
varies one factor.  Images: ``(B, C, H, W)`` in [-1, 1]; returned metrics are per image, ``(B,)`` lists.

Notation (code name -> symbol)

    x, y            x, y = A x          ground truth and measurement
    x0_iter[k-1]    x_0^(k)             the x_0 returned after k applications of F
    x_chain         x_0 (DDNM)          the sequential chain's result, same T, coefficients and noises
    chain           T, c^1, c^2         the ``ChainConfig``
    hf              ||L x||^2 / N       high-frequency energy (L: 3x3 Laplacian); blur lowers it
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..diffusion.chain import ChainConfig, chain_config, official_chain
from ..diffusion.noises import draw_noises
from ..diffusion.schedules import alphas_cumprod_of
from ..metrics.quality import psnr, ssim
from ..sampling import ddnm_sample, deqir_sample

__all__ = ["high_frequency_energy", "coefficient_sets", "iterate_curve", "sweep", "compare_coefficient_sets"]


def high_frequency_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared 3x3 Laplacian per image, ``(B,)``; lower = blurrier (computed on [0, 1], clamped)."""
    u = ((x.clamp(-1, 1) + 1) / 2).reshape(-1, 1, *x.shape[-2:])
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=u.dtype, device=u.device)
    out = F.conv2d(u, lap.view(1, 1, 3, 3))
    return out.pow(2).reshape(x.shape[0], -1).mean(dim=1)


def coefficient_sets(model: Any, steps: int) -> dict[str, ChainConfig]:
    """The settings compared in the book: the paper (eta 0.15), DDNM's default (0.85), DDIM eta 0,
    the official README (etw 0.1, nw 0, SVD path) and the official non-SVD path (x sqrt(1 - abar^2))."""
    ac = alphas_cumprod_of(model)
    return {
        "paper eta=0.15": chain_config(steps, 0.15, ac),
        "DDNM eta=0.85": chain_config(steps, 0.85, ac),
        "DDIM eta=0": chain_config(steps, 0.0, ac),
        "official README (etw=0.1, nw=0)": official_chain(steps, 0.1, 0.0, True, ac),
        "official non-SVD (x sigma_t)": official_chain(steps, 0.1, 0.0, False, ac),
    }


def _noises(x: torch.Tensor, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x_T, noises = draw_noises(tuple(x.shape), steps, torch.Generator().manual_seed(seed), x.dtype)
    return x_T.to(x.device), noises.to(x.device)


def _scores(x0: torch.Tensor, x: torch.Tensor) -> dict[str, list[float]]:
    return {
        "psnr": psnr(x0, x).tolist(),
        "ssim": ssim(x0, x).tolist() if min(x.shape[-2:]) >= 11 else [],
        "hf": high_frequency_energy(x0).tolist(),
    }


def iterate_curve(
    model: Any,
    op: Any,
    x: torch.Tensor,
    steps: int = 20,
    eta: float = 0.15,
    seed: int = 0,
    max_iter: int | None = None,
    solver: str = "anderson",
    chain: ChainConfig | None = None,
    keep_images: bool = False,
) -> dict[str, Any]:
    """Score every DeqIR iterate x_0^(k), k = 1..K (no early stop), against x and against the chain.

    Returns a dict: ``k`` (1..K), per iterate lists ``psnr``, ``ssim``, ``hf`` (each ``[K][B]``),
    ``to_chain`` (``max |x_0^(k) - x_0|``), ``residual`` (solver's global residual), and ``chain`` (the
    sequential chain's ``psnr``, ``ssim``, ``hf``), ``gt_hf``; with ``keep_images`` also ``images``
    (``(K, B, C, H, W)``) and ``chain_image``.  K defaults to T (Picard is then exact).
    """
    y = op.A(x)
    chain = chain or chain_config(steps, eta, alphas_cumprod_of(model))
    noises = _noises(x, chain.steps, seed)
    x_chain = ddnm_sample(model, op, y, noises=noises, chain=chain)
    iterates: list[torch.Tensor] = []
    trace = deqir_sample(
        model,
        op,
        y,
        noises=noises,
        chain=chain,
        solver=solver,
        max_iter=max_iter or chain.steps,
        callback=lambda info: iterates.append(info["states"][0].clone()),
        solver_options={"tol": 0.0},
    ).trace
    out: dict[str, Any] = {
        "k": list(range(1, len(iterates) + 1)),
        "psnr": [],
        "ssim": [],
        "hf": [],
        "to_chain": [],
        "residual": trace.residual,
        "chain": _scores(x_chain, x),
        "gt_hf": high_frequency_energy(x).tolist(),
    }
    for x0 in iterates:
        s = _scores(x0, x)
        for key in ("psnr", "ssim", "hf"):
            out[key].append(s[key])
        out["to_chain"].append(float((x0 - x_chain).abs().max()))
    if keep_images:
        out["images"], out["chain_image"] = torch.stack(iterates), x_chain
    return out


def sweep(
    model: Any,
    op: Any,
    x: torch.Tensor,
    factor: str,
    values: Sequence[float],
    steps: int = 20,
    eta: float = 0.15,
    iters: int = 15,
    seed: int = 0,
    solver: str = "anderson",
) -> list[dict[str, Any]]:
    """Vary one factor (``"steps"``, ``"eta"`` or ``"iters"``), keep the rest; DDNM vs DeqIR-K per value.

    For each value: the sequential chain and DeqIR (``solver``, at most ``iters`` applications of F,
    tol = 0, so exactly ``iters``) with the same coefficients and the same noises (drawn from ``seed``
    for that T).  Rows: ``value, steps, eta, iters, ddnm_psnr, deqir_psnr, gap (= deqir - ddnm, mean dB),
    ddnm_hf, deqir_hf, to_chain``; per-image lists for psnr and hf.
    """
    if factor not in ("steps", "eta", "iters"):
        raise ValueError(f"factor must be 'steps', 'eta' or 'iters', got {factor!r}")
    y = op.A(x)
    rows = []
    for v in values:
        T = int(v) if factor == "steps" else steps
        e = float(v) if factor == "eta" else eta
        K = int(v) if factor == "iters" else iters
        chain = chain_config(T, e, alphas_cumprod_of(model))
        noises = _noises(x, T, seed)
        x_chain = ddnm_sample(model, op, y, noises=noises, chain=chain)
        res = deqir_sample(
            model, op, y, noises=noises, chain=chain, solver=solver, max_iter=K, solver_options={"tol": 0.0}
        )
        x0 = res.x0
        a, b = _scores(x_chain, x), _scores(x0, x)
        rows.append(
            dict(
                value=v,
                steps=T,
                eta=e,
                iters=K,
                evaluations=res.evaluations,
                ddnm_psnr=a["psnr"],
                deqir_psnr=b["psnr"],
                ddnm_hf=a["hf"],
                deqir_hf=b["hf"],
                gap=float(torch.tensor(b["psnr"]).mean() - torch.tensor(a["psnr"]).mean()),
                to_chain=float((x0 - x_chain).abs().max()),
            )
        )
    return rows


def compare_coefficient_sets(
    model: Any,
    op: Any,
    x: torch.Tensor,
    steps: int = 20,
    iters: int = 15,
    seed: int = 0,
    sets: dict[str, ChainConfig] | None = None,
) -> list[dict[str, Any]]:
    """Sequential chain and DeqIR-K (Anderson) for each coefficient set (default ``coefficient_sets``).

    Rows: ``name, ddnm_psnr, deqir_psnr, ddnm_hf, deqir_hf`` (per image) and ``to_chain``.
    """
    y = op.A(x)
    sets = sets or coefficient_sets(model, steps)
    rows = []
    for name, chain in sets.items():
        noises = _noises(x, chain.steps, seed)
        x_chain = ddnm_sample(model, op, y, noises=noises, chain=chain)
        x0 = deqir_sample(
            model, op, y, noises=noises, chain=chain, solver="anderson", max_iter=iters, solver_options={"tol": 0.0}
        ).x0
        a, b = _scores(x_chain, x), _scores(x0, x)
        rows.append(
            dict(
                name=name,
                ddnm_psnr=a["psnr"],
                deqir_psnr=b["psnr"],
                ddnm_hf=a["hf"],
                deqir_hf=b["hf"],
                to_chain=float((x0 - x_chain).abs().max()),
            )
        )
    return rows
