"""The official DeqIR code's settings, measured with this package's own samplers (chapter 8, issue #18).

We read github.com/caojiezhang/DeqIR (runners/diffusion.py, functions/ddim_anderson.py, main.py) and
express each of its choices through the package's parameters; none of its code runs here.

  (a) One noise image.  ``all_noise = repeat_interleave(randn_like(xT), T)`` (runners/diffusion.py): the
      same noise at every step.  The paper's eta = 0.15 through its flags is ``--etw 0.15 --nw 0.15``,
      the coefficients of ``chain_config(T, 0.15)`` (checked below).  We run ``ddnm_sample`` with fresh
      noises (``draw_noises``) and with the first of them repeated (``official_noises``, same x_T).
  (b) The README setting ``--use_svd --etw 0.1`` (``--nw`` left at 0): c1 = 0 and
      c2 = sqrt(1 - abar_{k-1}) sqrt(1 - 0.1^2) (``official_chain(T)``).  It is the eta form at eta = 0.1
      with ALL noises set to zero (checked below to be the same chain); no eta with fresh noise gives it.
  (c) Anderson per state.  The official X, F, H have the T states as their batch dimension, so every
      state gets its own mixing weights; the package mixes once per image.  x_0's distance to the
      sequential chain after 15 iterations on the README setting, ``solvers.anderson(mix="image"|"state")``
      (the paper's m = 4, i.e. the official code's m = 5 columns, lam = 1e-3, beta = 1; the official stop,
      a global relative residual
      below 1e-3, is recorded but not applied).

PSNR is that of the image clamped to [-1, 1], as the official code saves it; distances are unclamped.

usage: python benchmarks/official_settings.py [--n 4] [--steps 20] [--tasks sr4 inpaint-text] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from common import RESULTS, fashion_problem, meta, table

from deqir_edu.core.files import write_json, write_text
from deqir_edu.diffusion import chain_config, draw_noises, official_chain, official_noises
from deqir_edu.metrics import psnr
from deqir_edu.sampling import ddnm_sample, deqir_sample

PAPER_ETA = 0.15  # the paper's eta (Sec. 5.4); the official flags --etw 0.15 --nw 0.15
README_ETW = 0.1  # the README command: --etw 0.1, --nw 0
ITERS = 15  # the paper's K and the official --max_anderson_iters


def dist(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Max-abs and RMS distance of two image batches."""
    d = (a - b).double()
    return {"max": float(d.abs().max()), "rms": float(d.pow(2).mean().sqrt())}


def per_image(db: torch.Tensor) -> list[float]:
    return [round(float(v), 4) for v in db]


def one_noise(model: Any, op: Any, y: torch.Tensor, x: torch.Tensor, T: int, seed: int) -> dict[str, Any]:
    """(a) eta = 0.15: fresh noise at every step against one noise image reused at every step."""
    shape = tuple(x.shape)
    fresh = draw_noises(shape, T, torch.Generator().manual_seed(seed), dtype=x.dtype)
    reused = official_noises(shape, T, torch.Generator().manual_seed(seed), dtype=x.dtype)  # same x_T, eps_T
    assert torch.equal(fresh[0], reused[0]) and torch.equal(fresh[1][0], reused[1][-1])
    flags = official_chain(T, etw=PAPER_ETA, nw=PAPER_ETA)  # the flags that give the paper's eta ...
    paper = chain_config(T, PAPER_ETA)
    assert torch.allclose(flags.c1, paper.c1) and torch.allclose(flags.c2, paper.c2)  # ... are the eta form
    a = ddnm_sample(model, op, y, chain=paper, noises=fresh)
    b = ddnm_sample(model, op, y, chain=flags, noises=reused)
    pa, pb = psnr(a, x), psnr(b, x)
    return {
        "seed": seed,
        "psnr_fresh": per_image(pa),
        "psnr_one_noise": per_image(pb),
        "db_loss": per_image(pa - pb),
        "mean_db_loss": float((pa - pb).mean()),
        "chains": dist(a, b),
        "one_noise_range": [float(b.min()), float(b.max())],
    }


def readme(
    model: Any, op: Any, y: torch.Tensor, x: torch.Tensor, T: int, seed: int
) -> tuple[dict[str, Any], tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(b) the README chain, its eta form (eta = 0.1, zero noises), and eta = 0 / 0.15 beside it."""
    noises = draw_noises(tuple(x.shape), T, torch.Generator().manual_seed(seed), dtype=x.dtype)
    zero = (noises[0], torch.zeros_like(noises[1]))
    ref = ddnm_sample(model, op, y, chain=official_chain(T, etw=README_ETW, nw=0.0), noises=noises)
    as_eta = ddnm_sample(model, op, y, T, README_ETW, noises=zero)
    ddim = ddnm_sample(model, op, y, T, 0.0, noises=noises)
    paper = ddnm_sample(model, op, y, T, PAPER_ETA, noises=noises)
    row = {
        "seed": seed,
        "readme_vs_eta01_zero_noise": dist(ref, as_eta)["max"],
        "psnr_readme": float(psnr(ref, x).mean()),
        "psnr_eta0": float(psnr(ddim, x).mean()),
        "psnr_eta015": float(psnr(paper, x).mean()),
        "readme_vs_eta0": dist(ref, ddim),
    }
    return row, noises, ref


def mixing(
    model: Any, op: Any, y: torch.Tensor, x: torch.Tensor, T: int, noises: tuple, ref: torch.Tensor, mix: str
) -> dict[str, Any]:
    """(c) ITERS Anderson iterations on the README chain, mixing per image or per state."""
    errs: list[float] = []
    t0 = time.perf_counter()
    res = deqir_sample(
        model,
        op,
        y,
        chain=official_chain(T, etw=README_ETW, nw=0.0),
        noises=noises,
        solver="anderson",
        max_iter=ITERS,
        callback=lambda d: errs.append(float((d["states"][0] - ref).abs().max())),
        solver_options={"tol": 0.0, "mix": mix},
    )
    seconds = time.perf_counter() - t0
    stop = next((i + 1 for i, r in enumerate(res.trace.residual) if r < 1e-3), None)  # official rule, tol 1e-3
    return {
        "mix": mix,
        "to_chain": dist(res.x0, ref),
        "x0_max_per_pass": [round(e, 5) for e in errs],
        "db_gap": per_image(psnr(res.x0, x) - psnr(ref, x)),
        "official_stop_pass": stop,
        "seconds": seconds,
        "passes": res.passes,
    }


def markdown(args: argparse.Namespace, rows: dict[str, list[dict]], wall: float) -> str:
    noise = [
        [
            r["task"],
            r["seed"],
            sum(r["psnr_fresh"]) / len(r["psnr_fresh"]),
            sum(r["psnr_one_noise"]) / len(r["psnr_one_noise"]),
            r["mean_db_loss"],
            min(r["db_loss"]),
            max(r["db_loss"]),
            r["chains"]["max"],
            r["chains"]["rms"],
        ]
        for r in rows["one_noise"]
    ]
    rd = [
        [
            r["task"],
            r["seed"],
            r["psnr_eta015"],
            r["psnr_eta0"],
            r["psnr_readme"],
            r["readme_vs_eta0"]["max"],
            r["readme_vs_eta01_zero_noise"],
        ]
        for r in rows["readme"]
    ]
    an = rows["anderson"]
    pairs = [(a, b) for a in an for b in an if a["task"] == b["task"] and a["mix"] == "image" and b["mix"] == "state"]
    mx = [
        [
            a["task"],
            a["to_chain"]["max"],
            b["to_chain"]["max"],
            b["to_chain"]["max"] / a["to_chain"]["max"],
            a["to_chain"]["rms"],
            b["to_chain"]["rms"],
            b["to_chain"]["rms"] / a["to_chain"]["rms"],
            max(map(abs, a["db_gap"])),
            max(map(abs, b["db_gap"])),
        ]
        for a, b in pairs
    ]
    return (
        f"# The official code's settings, with the package's samplers\n\n`python {' '.join(sys.argv)}` "
        f"({wall:.0f} s, {args.threads} thread(s)); fashion32, {args.n} frozen test images, T = {args.steps}, "
        f"float32\n\n## (a) eta = 0.15: fresh noise at every step vs ONE noise image reused (official)\n\n"
        + table(
            [
                "task",
                "seed",
                "PSNR fresh",
                "PSNR one noise",
                "dB lost (mean)",
                "min",
                "max",
                "chains max abs",
                "chains RMS",
            ],
            noise,
        )
        + "\n## (b) README setting (etw 0.1, nw 0 = eta 0.1 with zero noises)\n\n"
        + table(
            [
                "task",
                "seed",
                "PSNR eta 0.15",
                "PSNR eta 0",
                "PSNR README",
                "README vs eta 0 (max abs)",
                "README vs eta-0.1-zero-noise (max abs)",
            ],
            rd,
        )
        + f"\n## (c) Anderson after {ITERS} iterations on the README setting: x_0 to the sequential chain\n\n"
        + table(
            [
                "task",
                "per image: max abs",
                "per state: max abs",
                "ratio",
                "per image: RMS",
                "per state: RMS",
                "ratio",
                "worst dB gap (image)",
                "worst dB gap (state)",
            ],
            mx,
        )
        + "\nm = 4 (the paper's; the official code's m = 5 counts columns), lam = 1e-3, beta = 1 as the official code; "
        "the result is F of the last iterate.\n"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=4, help="test images (one batch)")
    p.add_argument("--steps", type=int, default=20, help="T (the README command uses 25)")
    p.add_argument("--tasks", nargs="+", default=["sr4", "inpaint-text"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="noise seeds of (a) and (b)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows: dict[str, list[dict]] = {"one_noise": [], "readme": [], "anderson": []}
    for task in args.tasks:
        problem = fashion_problem(task, args.n)
        if problem is None:
            sys.exit("data/models/fashion32.safetensors is missing: this benchmark needs the embedded model")
        model, op, y, x = problem
        for seed in args.seeds:
            rows["one_noise"].append({"task": task, **one_noise(model, op, y, x, args.steps, seed)})
            r = rows["one_noise"][-1]
            print(
                f"(a) {task} seed {seed}: fresh {sum(r['psnr_fresh']) / args.n:.2f} dB, one noise "
                f"{sum(r['psnr_one_noise']) / args.n:.2f} dB, lost {r['mean_db_loss']:.2f} dB",
                flush=True,
            )
            row, noises, ref = readme(model, op, y, x, args.steps, seed)
            rows["readme"].append({"task": task, **row})
            print(
                f"(b) {task} seed {seed}: README {row['psnr_readme']:.2f} dB (eta 0: {row['psnr_eta0']:.2f}, "
                f"eta 0.15: {row['psnr_eta015']:.2f}); README = eta 0.1 with zero noise to "
                f"{row['readme_vs_eta01_zero_noise']:.1e}",
                flush=True,
            )
            if seed != args.seeds[0]:
                continue
            for mix in ("image", "state"):
                rows["anderson"].append({"task": task, **mixing(model, op, y, x, args.steps, noises, ref, mix)})
                r = rows["anderson"][-1]
                print(
                    f"(c) {task} mix={mix}: x_0 to chain {r['to_chain']['max']:.3g} max abs, "
                    f"{r['to_chain']['rms']:.3g} RMS ({r['seconds']:.1f} s)",
                    flush=True,
                )
    wall = time.perf_counter() - start
    data = {
        "meta": {**meta("python " + " ".join(sys.argv)), "wall_s": wall},
        "settings": {
            "model": "fashion32",
            "n": args.n,
            "steps": args.steps,
            "tasks": args.tasks,
            "seeds": args.seeds,
            "paper_eta": PAPER_ETA,
            "readme_etw": README_ETW,
            "iters": ITERS,
            "anderson": {"m": 4, "lam": 1e-3, "beta": 1.0},  # the paper's m (the official code's m = 5)
        },
        **rows,
    }
    js, md = RESULTS / "official_settings.json", RESULTS / "official_settings.md"
    write_json(js, data, indent=1)  # atomic: a temporary file renamed into place
    write_text(md, markdown(args, rows, wall))
    print(f"wrote {js} and {md} in {wall:.0f} s")


if __name__ == "__main__":
    main()
