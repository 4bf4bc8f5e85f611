"""(a) Sequential passes and network evaluations each solver needs to reach the sequential chain.

For every solver, T and eta: the DDNM chain x_0 (same noises) is the reference.  Two views:
  * first hit: run with a tight tolerance (``--tol-track``, default 1e-5) and read off the first pass at
    which x_0 is within 1e-3 (max abs) and within 0.05 dB PSNR (against the ground truth, worst image)
    of the chain (what a well-chosen stopping rule could achieve);
  * own stopping: run with ``tol`` and report passes, NFE, final error and dB gap where the solver stops.
Ratios are to Picard (Eq. (9) with the x_T start, Algorithm 1) measured in the same run.

usage: python benchmarks/solver_passes.py [--prior exact|gmm-fashion|fashion32] [--steps 20 100] [--eta 0.15 0.85]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import (
    LOADED,
    SOLVERS,
    exact_problem,
    fashion_problem,
    first,
    gmm_fashion_problem,
    meta,
    table,
    write,
    x0_tracker,
)

from deqir_edu.sampling import ddnm_sample, deqir_sample


def measure(
    model, op, y, x, T: int, eta: float, solver: str, tol: float, tol_track: float, max_iter: int, seed: int = 1
) -> dict:
    ref = ddnm_sample(model, op, y, T, eta, torch.Generator().manual_seed(seed))
    row: dict = {"solver": solver, "T": T, "eta": eta}
    modes = (("oracle", tol_track), ("own", tol)) if tol != tol_track else (("both", tol),)  # one run if equal
    for mode, t in modes:
        cb, errs, gaps = x0_tracker(ref, x)

        t0 = time.perf_counter()
        res = deqir_sample(
            model,
            op,
            y,
            T,
            eta,
            torch.Generator().manual_seed(seed),
            solver=solver,
            max_iter=max_iter,
            callback=cb,
            solver_options={"tol": t, "reference": ref},
        )
        seconds = time.perf_counter() - t0
        nfe = res.trace.evaluations
        if mode in ("oracle", "both"):
            k3, kdb = first(errs, 1e-3), first(gaps, 0.05)
            row.update(
                passes_1e3=k3,
                nfe_1e3=nfe[k3 - 1] if k3 else None,
                passes_db=kdb,
                nfe_db=nfe[kdb - 1] if kdb else None,
                err_oracle_end=errs[-1],
            )
        if mode in ("own", "both"):
            row.update(
                own_passes=res.trace.passes,
                own_nfe=res.evaluations,
                own_err=errs[-1],
                own_db_gap=gaps[-1],
                own_seconds=seconds,
            )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prior", default="exact", choices=("exact", "gmm-fashion", "fashion32"))
    p.add_argument("--task", default="sr4")
    p.add_argument("--steps", type=int, nargs="+", default=[20, 100])
    p.add_argument("--eta", type=float, nargs="+", default=[0.15, 0.85])
    p.add_argument("--n", type=int, default=2, help="images")
    p.add_argument("--tol", type=float, default=1e-3, help="tolerance of the own-stopping runs")
    p.add_argument("--tol-track", type=float, default=1e-5, help="tolerance of the first-hit runs")
    p.add_argument("--solvers", nargs="+", default=SOLVERS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default=None, help="suffix of the result files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.prior == "exact":
        model, op, y, x = exact_problem(args.task, args.n)
        desc = "exact prior: Gaussian mixture, 4 components, 3x8x8, float64"
    elif args.prior == "gmm-fashion":
        model, op, y, x = gmm_fashion_problem(args.task, args.n)
        desc = (
            f"exact prior of chapters 4-6: Gaussian mixture, 32 components fitted to Fashion-MNIST, "
            f"{args.n} test images 1x32x32, float64"
        )
    else:
        prob = fashion_problem(args.task, args.n)
        if prob is None:
            sys.exit("data/models/fashion32.safetensors is missing")
        model, op, y, x = prob
        desc = (
            f"fashion32 (embedded ADM, training step {LOADED['fashion32']['step']}), {args.n} test images "
            f"1x32x32, float32"
        )
    rows, md = (
        [],
        [
            f"# (a) passes and network evaluations to reach the sequential chain\n\n{desc}; task {args.task}; "
            f"first hit: runs with tol = {args.tol_track}; own stopping: tol = {args.tol}\n\n"
            f"`python {' '.join(sys.argv)}`\n"
        ],
    )
    for T in args.steps:
        for eta in args.eta:
            block = []
            for solver in args.solvers:
                max_iter = 2 * T if solver == "anderson" else T  # Picard and the freezing solvers are exact at T
                r = measure(model, op, y, x, T, eta, solver, args.tol, args.tol_track, max_iter)
                block.append(r)
                print(
                    f"T={T} eta={eta} {solver:16s} 1e-3: {r['passes_1e3']} passes {r['nfe_1e3']} NFE | "
                    f"0.05dB: {r['passes_db']} passes {r['nfe_db']} NFE | own: {r['own_passes']} passes "
                    f"{r['own_nfe']} NFE err {r['own_err']:.1e} gap {r['own_db_gap']:.3f} dB",
                    flush=True,
                )
            base = next(r for r in block if r["solver"] == "picard")
            ratio = lambda a, b: None if a is None or b is None else a / b  # noqa: E731
            for r in block:
                r["ratio_passes_1e3"] = ratio(r["passes_1e3"], base["passes_1e3"])
                r["ratio_nfe_1e3"] = ratio(r["nfe_1e3"], base["nfe_1e3"])
            rows += block
            md.append(
                f"\n## T = {T}, eta = {eta}\n\n"
                + table(
                    [
                        "solver",
                        "passes to 1e-3",
                        "NFE to 1e-3",
                        "passes / Picard",
                        "NFE / Picard",
                        "passes to 0.05 dB",
                        "NFE to 0.05 dB",
                        "own stop: passes",
                        "NFE",
                        "x0 err",
                        "dB gap",
                    ],
                    [
                        [
                            r["solver"],
                            r["passes_1e3"],
                            r["nfe_1e3"],
                            r["ratio_passes_1e3"],
                            r["ratio_nfe_1e3"],
                            r["passes_db"],
                            r["nfe_db"],
                            r["own_passes"],
                            r["own_nfe"],
                            r["own_err"],
                            r["own_db_gap"],
                        ]
                        for r in block
                    ],
                )
            )
    md.append(
        "\n'-': not reached within max_iter (T passes; 2T for anderson).  Picard/anderson: Algorithm 1 "
        "(start x_T, stop on x_0's residual); the others: `deqir_edu.solvers` (freezing.py).\n"
    )
    js, mdp = write(
        f"solver_passes_{args.prior}" + (f"_{args.tag}" if args.tag else ""),
        {"meta": meta("python " + " ".join(sys.argv)), "rows": rows},
        "".join(md),
    )
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
