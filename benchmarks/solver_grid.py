"""The solver grid: passes each parallel solver needs on the embedded models, and where it stops by itself.

For every model, task, T, eta and solver, with the same noises as the sequential DDNM chain (the reference):
  * passes to 1e-3: first pass at which x_0 is within 1e-3 (max abs) of the chain's x_0, every image;
  * passes to 0.05 dB: first pass at which every image's PSNR is within 0.05 dB of the chain's;
  * own stop: passes, network evaluations and the worst per-image dB gap where the solver stops with its
    default tolerance (``anderson``: the paper's K = 15, tol 1e-3).

usage: python benchmarks/solver_grid.py [--models fashion32 photo32] [--steps 20] [--eta 0 0.15 0.85] [--n 8]
       python benchmarks/solver_grid.py --summarize benchmarks/results/solver_grid_*.json   (-> solver_grid_summary.md)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from common import RESULTS, first, meta, table, write, x0_tracker

from deqir_edu.datasets import load_testset
from deqir_edu.diffusion import draw_noises
from deqir_edu.metrics import psnr
from deqir_edu.models import load_model
from deqir_edu.operators import make_operator
from deqir_edu.sampling import ddnm_sample, deqir_sample
from deqir_edu.solvers import ConvergenceWarning

TASKS = {"fashion32": ["sr4", "deblur-gauss", "inpaint-box"], "photo32": ["sr4", "colorize", "inpaint-box"]}
SOLVERS = ["auto", "anderson", "picard-freeze", "gauss-freeze", "taa"]


def measure(model, op, y, x, T: int, eta: float, solver: str, seed: int = 1) -> dict:
    """One cell: the solver's trajectory against the chain with the same noises."""
    noises = draw_noises(tuple(x.shape), T, torch.Generator().manual_seed(seed), dtype=x.dtype)
    ref = ddnm_sample(model, op, y, T, eta, noises=noises)
    cb, errs, gaps = x0_tracker(ref, x)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = deqir_sample(model, op, y, T, eta, noises=noises, solver=solver, callback=cb)
    seconds = time.perf_counter() - t0
    k3, kdb = first(errs, 1e-3), first(gaps, 0.05)
    return dict(
        solver=solver,
        T=T,
        eta=eta,
        passes_1e3=k3,
        passes_db=kdb,
        own_passes=res.passes,
        own_nfe=res.evaluations,
        own_db_gap=gaps[-1],
        own_err=errs[-1],
        converged=res.converged,
        seconds=seconds,
        chain_db=float(psnr(ref, x).mean()),
    )


def summarize(paths: list[str]) -> str:
    """One line per cell of the result files: auto against the paper's Anderson and the best named solver."""
    import json

    files = [(path, json.loads(open(path).read())) for path in paths]
    rows = [r for _, data in files for r in data["rows"]]
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["task"], r["T"], r["eta"]), {})[r["solver"]] = r
    lines, fractions = [], []
    for (name, task, T, eta), by in cells.items():
        named = [r for s, r in by.items() if s not in ("auto", "anderson") and r["own_db_gap"] < 0.05]
        best = min(named, key=lambda r: r["own_passes"]) if named else None
        a, k = by.get("auto"), by.get("anderson")
        if a:
            fractions.append((T, a["own_passes"] / T))
        lines.append(
            [
                name,
                task,
                T,
                eta,
                a and a["own_passes"],
                a and a["own_db_gap"],
                a and a["passes_db"],
                best and f"{best['solver']} {best['own_passes']}",
                k and k["own_db_gap"],
            ]
        )
    head = [
        "model",
        "task",
        "T",
        "eta",
        "auto: passes (own stop)",
        "auto: worst dB gap",
        "auto: first pass within 0.05 dB",
        "best named solver: passes (own stop, within 0.05 dB)",
        "anderson K = 15: worst dB gap",
    ]
    means = {T: [v for t, v in fractions if t == T] for T in sorted({t for t, _ in fractions})}
    text = ", ".join(f"T = {T}: {sum(v) / len(v):.3f} ({len(v)} cells)" for T, v in means.items())
    sources = "".join(f"- `{path}`: `{data['meta']['command']}` ({data['meta']['date_utc']})\n" for path, data in files)
    return (
        f"# Solver grid: summary\n\n`python benchmarks/solver_grid.py --summarize {' '.join(paths)}`\n\n"
        "A later file's row of a solver replaces an earlier one's (same model, task, T, eta). Sources, in order "
        "(`--n`: images per cell):\n\n" + sources + "\n" + table(head, lines) + f"\nMean passes / T of auto: {text}\n"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--summarize":
        md = summarize(sys.argv[2:])
        (RESULTS / "solver_grid_summary.md").write_text(md)
        print(md)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(TASKS))
    p.add_argument("--steps", type=int, nargs="+", default=[20])
    p.add_argument("--eta", type=float, nargs="+", default=[0.0, 0.15, 0.85])
    p.add_argument("--n", type=int, default=8, help="test images per cell")
    p.add_argument("--tasks", nargs="+", default=None, help="default: three per model")
    p.add_argument("--solvers", nargs="+", default=SOLVERS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", default=None, help="suffix of the result files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    md = [
        f"# Solver grid: passes to the sequential chain, and where each solver stops by itself\n\n"
        f"{args.n} frozen test images per cell, float32, same noises as the DDNM chain (seed 1); passes are "
        f"sequential network passes (the depth of the computation)\n\n`python {' '.join(sys.argv)}`\n"
    ]
    for name in args.models:
        model = load_model(name)
        x = load_testset(name, args.n)
        for task in args.tasks or TASKS[name]:
            op = make_operator(task, tuple(model.image_shape))
            y = op.A(x)
            for T in args.steps:
                for eta in args.eta:
                    block = []
                    for solver in args.solvers:
                        r = measure(model, op, y, x, T, eta, solver)
                        r.update(model=name, task=task)
                        block.append(r)
                        print(
                            f"{name} {task} T={T} eta={eta} {solver:14s} 1e-3: {r['passes_1e3']} | 0.05 dB: "
                            f"{r['passes_db']} | own: {r['own_passes']} passes, gap {r['own_db_gap']:.3f} dB "
                            f"({r['seconds']:.1f} s)",
                            flush=True,
                        )
                    rows += block
                    md.append(
                        f"\n## {name}, {task}, T = {T}, eta = {eta} (chain {block[0]['chain_db']:.2f} dB)\n\n"
                        + table(
                            [
                                "solver",
                                "passes to 1e-3",
                                "passes to 0.05 dB",
                                "own stop: passes",
                                "NFE",
                                "worst dB gap",
                                "stopped by tol",
                            ],
                            [
                                [
                                    r["solver"],
                                    r["passes_1e3"],
                                    r["passes_db"],
                                    r["own_passes"],
                                    r["own_nfe"],
                                    r["own_db_gap"],
                                    r["converged"],
                                ]
                                for r in block
                            ],
                        )
                    )
    md.append(
        "\n'-': not reached.  Own stop: each solver's default tolerance and pass budget (`auto`: 3e-3 on "
        "x_0, at most T passes; `anderson`: Algorithm 1, K = 15, tol 1e-3; the freezing solvers: every state "
        "within 1e-3, at most T passes).\n"
    )
    js, mdp = write(
        "solver_grid" + (f"_{args.tag}" if args.tag else ""),
        {"meta": meta("python " + " ".join(sys.argv)), "rows": rows},
        "".join(md),
    )
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
