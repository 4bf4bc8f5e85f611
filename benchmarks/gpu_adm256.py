"""(a)-(c) on one GPU at 256 x 256 with the ADM architecture (random weights: timings are what counts).

Measures, side by side in one run (default: about 5 minutes on an H100/H200 in bf16):
  0. the GPU's batching: seconds of one network call on n = 1, 2, 4, ..., T B images (per image), and
     what ``sampler="auto"`` predicts from it (``experiments.predict_sampler``);
  (a) passes and network evaluations each solver needs to bring x_0 within 1e-3 and 0.05 dB of the
      sequential chain (random weights: the chain is a deterministic function all the same);
  (b) wall-clock of DeqIR (each solver, until it first reaches 0.05 dB of DDNM, and at its own stop)
      against sequential DDNM;
  (c) the share of time outside the network, and the peak GPU memory of every run;
for T = 20 and 100 and B = 1 and 4 images, with the default solver ``auto``.
Noises are drawn on the CPU (``draw_noises``) and moved to the GPU, so every run sees the same chain.

usage: python benchmarks/gpu_adm256.py [--steps 20 100] [--n 1 4] [--dtype bf16|fp16|fp32] [--chunk 50]
       python benchmarks/gpu_adm256.py --smoke        (CPU, fashion32 config, T = 4: checks the script runs)
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from common import SOLVERS, Timed, first, meta, random_adm, sync, table, write

from deqir_edu.diffusion import draw_noises
from deqir_edu.experiments import predict_sampler
from deqir_edu.metrics import psnr
from deqir_edu.models import ChunkedModel
from deqir_edu.operators import make_operator
from deqir_edu.sampling import ddnm_sample, deqir_sample


def batching(model, device, T: int) -> list[dict]:
    rows, n = [], 1
    while n <= T:
        x = torch.randn(n, *model.image_shape, device=device)
        t = torch.full((n,), 500, device=device, dtype=torch.long)
        model(x, t)  # warm-up (kernels, allocator)
        sync(x)
        t0 = time.perf_counter()
        for _ in range(3):
            model(x, t)
        sync(x)
        sec = (time.perf_counter() - t0) / 3
        rows.append({"batch": n, "seconds": sec, "seconds_per_image": sec / n})
        print(f"batch {n:4d}: {sec * 1e3:8.1f} ms per call, {sec / n * 1e3:7.2f} ms per image", flush=True)
        n = n * 2 if n * 2 <= T or n == T else T
    return rows


def peak_reset(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if torch.device(device).type == "cuda" else None


def run(model, op, y, x, T: int, eta: float, solvers: list[str], tol: float | None, chunk: int | None) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    x_T, eps = draw_noises(tuple(y.shape[:1]) + tuple(model.image_shape), T, g, torch.float32)
    noises = (x_T.to(y.device), eps.to(y.device))
    timed = Timed(model)
    sync(y)
    peak_reset(y.device)
    t0 = time.perf_counter()
    ref = ddnm_sample(timed, op, y, T, eta, noises=noises)
    sync(ref)
    t_ddnm = time.perf_counter() - t0
    ref_db = psnr(ref, x)
    B = y.shape[0]
    rows = [
        {
            "T": T,
            "B": B,
            "method": "ddnm",
            "passes": T,
            "evaluations": T,
            "seconds": t_ddnm,
            "net_seconds": timed.seconds,
            "overhead_share": 1 - timed.seconds / t_ddnm,
            "peak_gib": peak_gib(y.device),
        }
    ]
    choice = predict_sampler(model, T, batch=B, max_batch=None if chunk is None else chunk * B, like=y)
    print(choice.describe(), flush=True)
    print(f"T={T} DDNM {t_ddnm:.2f} s", flush=True)
    for solver in solvers:
        timed = Timed(model)
        log: list[tuple[float, float, float]] = []  # (elapsed, x0 max-abs error, dB gap)
        spent = [0.0]
        t0 = time.perf_counter()

        def cb(d: dict) -> None:
            c0 = time.perf_counter()
            x0 = d["states"][0]
            log.append((c0 - t0 - spent[0], float((x0 - ref).abs().max()), float((psnr(x0, x) - ref_db).abs().max())))
            spent[0] += time.perf_counter() - c0

        max_iter = 2 * T if solver == "anderson" else T
        model_calls = timed if chunk is None else ChunkedModel(timed, chunk * y.shape[0])  # chunk states per call
        peak_reset(y.device)
        res = deqir_sample(
            model_calls,
            op,
            y,
            T,
            eta,
            noises=noises,
            solver=solver,
            max_iter=max_iter,
            callback=cb,
            **({} if tol is None else {"tol": tol}),
        )
        sync(res.x0)
        total = time.perf_counter() - t0 - spent[0]
        k3, kdb = first([e for _, e, _ in log], 1e-3), first([d for _, _, d in log], 0.05)
        nfe = res.trace.evaluations
        rows.append(
            {
                "T": T,
                "B": B,
                "method": solver,
                "passes": res.trace.passes,
                "peak_gib": peak_gib(y.device),
                "predicted": choice.sampler,
                "predicted_parallel_s": choice.parallel,
                "predicted_sequential_s": choice.sequential,
                "dB_gap_end": log[-1][2] if log else None,
                "evaluations": res.evaluations,
                "seconds": total,
                "net_seconds": timed.seconds,
                "overhead_share": 1 - timed.seconds / total,
                "passes_1e3": k3,
                "nfe_1e3": nfe[k3 - 1] if k3 else None,
                "passes_db": kdb,
                "nfe_db": nfe[kdb - 1] if kdb else None,
                "t_db": log[kdb - 1][0] if kdb else None,
                "t_db_over_ddnm": log[kdb - 1][0] / t_ddnm if kdb else None,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, nargs="+", default=[20, 100])
    p.add_argument("--eta", type=float, default=0.15)
    p.add_argument("--n", type=int, nargs="+", default=[1, 4], help="images B")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    p.add_argument("--chunk", type=int, default=50, help="states per network call (bounds memory; 0: no bound)")
    p.add_argument("--tol", type=float, default=None, help="solver tolerance (default: each solver's own)")
    p.add_argument("--solvers", nargs="+", default=["auto"], help=f"any of {' '.join(SOLVERS)} auto")
    p.add_argument("--smoke", action="store_true", help="CPU, fashion32 config, T = 4")
    args = p.parse_args()
    if args.smoke:
        device, config, args.steps, args.n = "cpu", "fashion32", [4], [1, 2]
        torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or use --smoke to check the script on the CPU")
    else:
        device, config = "cuda", "adm_celebahq256"
    model = random_adm(config, device)
    if args.dtype != "fp32":
        model.autocast_dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float16
    op = make_operator("sr4", tuple(model.image_shape))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(
        f"{name}: ADM {model.image_shape}, {sum(p.numel() for p in model.network.parameters()) / 1e6:.0f} M params, "
        f"{args.dtype}",
        flush=True,
    )
    with torch.no_grad():
        batch_rows = batching(model, device, max(args.steps) * max(args.n))
        rows = []
        for B in args.n:
            g = torch.Generator().manual_seed(0)
            x = (torch.rand(B, *model.image_shape, generator=g) * 2 - 1).to(device)
            y = op.A(x)
            rows += [
                r
                for T in args.steps
                for r in run(model, op, y, x, T, args.eta, args.solvers, args.tol, args.chunk or None)
            ]
    cmd = "python " + " ".join(sys.argv)
    md = (
        f"# (a)-(c) on {name}: ADM {model.image_shape} random weights, {args.dtype}, sr4, eta = {args.eta}, "
        f"B = {args.n}, tol = {args.tol or 'default'}\n\n`{cmd}`\n\n## batching\n\n"
    )
    md += table(
        ["batch", "s per call", "s per image"], [[r["batch"], r["seconds"], r["seconds_per_image"]] for r in batch_rows]
    )
    md += "\n## solvers\n\n" + table(
        [
            "T",
            "B",
            "method",
            "passes",
            "NFE",
            "total s",
            "network s",
            "overhead share",
            "peak GiB",
            "passes to 1e-3",
            "passes to 0.05 dB",
            "s to 0.05 dB",
            "/ DDNM",
            "auto predicted",
        ],
        [
            [
                r["T"],
                r["B"],
                r["method"],
                r["passes"],
                r["evaluations"],
                r["seconds"],
                r["net_seconds"],
                r["overhead_share"],
                r["peak_gib"],
                r.get("passes_1e3"),
                r.get("passes_db"),
                r.get("t_db"),
                r.get("t_db_over_ddnm"),
                r.get("predicted"),
            ]
            for r in rows
        ],
    )
    js, mdp = write(
        "gpu_adm256" + ("_smoke" if args.smoke else ""),
        {"meta": {**meta(cmd), "device": name}, "batching": batch_rows, "rows": rows},
        md,
    )
    print(md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
