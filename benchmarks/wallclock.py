"""(b) Wall-clock of DeqIR against sequential DDNM at equal quality, and (c) the solver overhead.

DDNM runs T sequential network calls of B images; DeqIR runs passes of up to T * B images.  Each
solver runs once with its own stopping rule (``--tol``); a callback times every pass, so the table
gives both the time at which x_0 first comes within ``--db`` dB PSNR (worst image) of the DDNM result
with the same noises ("equal quality") and the time at the solver's own stop.  (c): the time spent
outside the network (solver step, projections, bookkeeping) as a share of the total.

usage: python benchmarks/wallclock.py [--model exact|gmm-fashion|fashion32|random-adm] [--dtypes fp32 bf16] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import LOADED, Timed, exact_problem, fashion_problem, gmm_fashion_problem, meta, random_adm, table, write

from deqir_edu.metrics import psnr
from deqir_edu.models import ClippedModel
from deqir_edu.operators import make_operator
from deqir_edu.sampling import ddnm_sample, deqir_sample


def problem(name: str, task: str, n: int):
    if name == "exact":
        return exact_problem(task, n)
    if name == "gmm-fashion":
        return gmm_fashion_problem(task, n)
    if name == "fashion32":
        prob = fashion_problem(task, n)
        if prob is None:
            sys.exit("data/models/fashion32.safetensors is missing; use --model random-adm for timings only")
        return prob
    model = random_adm("fashion32")  # random weights: timings only (quality is relative to its own DDNM chain)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, *model.image_shape, generator=g) * 2 - 1
    op = make_operator(task, tuple(model.image_shape))
    return model, op, op.A(x), x


def run_dtype(model, op, y, x, args, dtype: str) -> list[dict]:
    if not hasattr(model, "autocast_dtype"):  # the exact prior computes in the dtype of y
        if dtype == "bf16":
            return []
        dtype = str(y.dtype).replace("torch.", "")
    else:
        model.autocast_dtype = torch.bfloat16 if dtype == "bf16" else None
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    model = ClippedModel(model) if args.clip else model
    ddnm_sample(model, op, y, 2, args.eta, gen())  # warm-up
    timed = Timed(model)
    t0 = time.perf_counter()
    ref = ddnm_sample(timed, op, y, args.steps, args.eta, gen())
    t_ddnm = time.perf_counter() - t0
    ref_db = psnr(ref, x)
    rows = [
        {
            "dtype": dtype,
            "method": "ddnm (sequential)",
            "passes": args.steps,
            "evaluations": timed.images // y.shape[0],
            "seconds": t_ddnm,
            "net_seconds": timed.seconds,
            "overhead_share": 1 - timed.seconds / t_ddnm,
            "psnr": float(ref_db.mean()),
            "t_equal": t_ddnm,
            "passes_equal": args.steps,
        }
    ]
    print(
        f"[{dtype}] DDNM: {t_ddnm:.2f} s, network {timed.seconds:.2f} s, PSNR {float(ref_db.mean()):.2f} dB", flush=True
    )
    for solver in args.solvers:
        timed = Timed(model)
        stamps: list[tuple[float, float, float]] = []  # (elapsed, network seconds, dB gap) per pass
        spent = [0.0]  # time inside this callback, not counted
        t0 = time.perf_counter()

        def cb(d: dict) -> None:
            c0 = time.perf_counter()
            gap = float((psnr(d["states"][0], x) - ref_db).abs().max())
            stamps.append((c0 - t0 - spent[0], timed.seconds, gap))
            spent[0] += time.perf_counter() - c0

        res = deqir_sample(
            timed,
            op,
            y,
            args.steps,
            args.eta,
            gen(),
            solver=solver,
            max_iter=args.steps,
            callback=cb,
            solver_options={"tol": args.tol},
        )
        total = time.perf_counter() - t0 - spent[0]
        k = next((i for i, s in enumerate(stamps) if s[2] < args.db), None)
        row = {
            "dtype": dtype,
            "method": f"deqir {solver}",
            "passes": res.trace.passes,
            "evaluations": res.evaluations,
            "seconds": total,
            "net_seconds": timed.seconds,
            "overhead_share": 1 - timed.seconds / total,
            "psnr": float(psnr(res.x0, x).mean()),
            "db_gap_end": stamps[-1][2],
            "passes_equal": None if k is None else k + 1,
            "t_equal": None if k is None else stamps[k][0],
        }
        row["ratio_equal_vs_ddnm"] = None if k is None else row["t_equal"] / t_ddnm
        rows.append(row)
        print(
            f"[{dtype}] {solver}: {total:.2f} s ({row['passes']} passes, {row['evaluations']} NFE), "
            f"within {args.db} dB "
            f"after {row['passes_equal']} passes = {row['t_equal']} s; overhead {row['overhead_share']:.1%}",
            flush=True,
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fashion32", choices=("exact", "gmm-fashion", "fashion32", "random-adm"))
    p.add_argument("--task", default="sr4")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eta", type=float, default=0.15)
    p.add_argument("--n", type=int, default=4, help="images B")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--solvers", nargs="+", default=["anderson", "picard-freeze", "taa", "gauss-freeze"])
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--db", type=float, default=0.05, help="equal quality: within this many dB of DDNM")
    p.add_argument("--clip", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default=None, help="suffix of the result files")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, op, y, x = problem(args.model, args.task, args.n)
    rows = []
    for dtype in args.dtypes:
        rows += run_dtype(model, op, y, x, args, dtype)
    cmd = "python " + " ".join(sys.argv)
    step = f" (training step {LOADED['fashion32']['step']})" if "fashion32" in LOADED else ""
    md = (
        f"# (b) DeqIR vs DDNM wall-clock at equal quality, (c) solver overhead\n\nmodel {args.model}{step}, task "
        f"{args.task}, T = {args.steps}, eta = {args.eta}, B = {args.n}, {args.threads} CPU thread(s), tol = "
        f"{args.tol}; equal quality = within {args.db} dB of DDNM (same noises, worst image)\n\n`{cmd}`\n\n"
    )
    md += table(
        [
            "dtype",
            "method",
            "passes",
            "NFE/image",
            "total s",
            "network s",
            "overhead share",
            "passes to equal quality",
            "s to equal quality",
            "time / DDNM",
            "PSNR dB",
        ],
        [
            [
                r["dtype"],
                r["method"],
                r["passes"],
                r["evaluations"],
                r["seconds"],
                r["net_seconds"],
                r["overhead_share"],
                r["passes_equal"],
                r["t_equal"],
                r.get("ratio_equal_vs_ddnm", 1.0),
                r["psnr"],
            ]
            for r in rows
        ],
    )
    js, mdp = write(
        f"wallclock_{args.model}" + (f"_{args.tag}" if args.tag else ""), {"meta": meta(cmd), "rows": rows}, md
    )
    print(md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
