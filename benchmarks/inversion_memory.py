"""(d) Peak memory of DEQ inversion: phantom gradient (Algorithm 2) against backprop through the chain.

One measurement per subprocess (a fresh allocator): ``deqir_edu.inversion.phantom_gradient`` (fixed
point without a graph, then k = 1 damped step with one, tau = 0.1) and ``exact_chain_gradient``
(the T sequential steps with a graph).  Network: the fashion32 ADM (random weights unless the
embedded checkpoint exists; memory does not depend on the weights), frozen, float32.  Reported:
the peak of live tensor memory seen by the PyTorch profiler (second call), and the growth of the peak
RSS over the RSS after setup during the first call.
Losses: the default chain-consistency loss (uses x_{0|k} of every state) and a loss of x_0 only.

usage: python benchmarks/inversion_memory.py [--steps 20] [--n 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch
from common import FASHION32, meta, random_adm, table, write


def peak_tensor_bytes(fn) -> float:
    """Peak of live CPU tensor memory during ``fn()`` (profiler allocation/free events, cumulated)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = torch.tensor([m for _, m in events], dtype=torch.float64).cumsum(0)
    return float(live.max()) if live.numel() else 0.0


def one(kind: str, loss_name: str, steps: int, n: int) -> dict:
    from deqir_edu.diffusion import draw_noises
    from deqir_edu.inversion import PhantomConfig, exact_chain_gradient, phantom_gradient, reference_loss
    from deqir_edu.models import load_model
    from deqir_edu.operators import make_operator

    torch.set_num_threads(1)
    model = load_model("fashion32") if FASHION32.is_file() else random_adm("fashion32")
    op = make_operator("inpaint-box", tuple(model.image_shape))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, *model.image_shape, generator=g) * 2 - 1
    y = op.A(x)
    x_T, noises = draw_noises((n, *model.image_shape), steps, g, torch.float32)
    loss = None if loss_name == "chain" else reference_loss(x)
    if kind == "exact":
        fn = lambda: exact_chain_gradient(model, op, y, x_T, noises, steps, 0.15, loss=loss)  # noqa: E731
    else:  # the fixed point is solved without a graph: 2 Picard passes suffice to measure memory
        cfg = PhantomConfig(loss=loss, max_iter=2)
        fn = lambda: phantom_gradient(model, op, y, x_T, noises, steps, 0.15, phantom=cfg)  # noqa: E731
    status = lambda key: int(next(ln for ln in open("/proc/self/status") if ln.startswith(key)).split()[1])  # noqa: E731
    rss0 = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS counter (Linux)
    fn()  # first call: the allocator has to grow to the peak
    hwm = status("VmHWM")
    return {
        "kind": kind,
        "loss": loss_name,
        "peak_tensor_mib": peak_tensor_bytes(fn) / 2**20,
        "peak_rss_growth_mib": (hwm - rss0) / 1024,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--n", type=int, default=2)
    p.add_argument("--one", nargs=2, metavar=("KIND", "LOSS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.steps, args.n)))
        return
    rows = []
    for loss_name in ("chain", "x0"):
        for kind in ("exact", "phantom"):
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--n", str(args.n), "--one", kind, loss_name]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    for r in rows:
        ex = next(e for e in rows if e["kind"] == "exact" and e["loss"] == r["loss"])
        r["tensor_ratio_to_exact"] = r["peak_tensor_mib"] / ex["peak_tensor_mib"]
    net = "fashion32 (embedded weights)" if FASHION32.is_file() else "fashion32 ADM config, random weights"
    cmd = "python " + " ".join(sys.argv)
    md = (
        f"# (d) Peak memory: phantom gradient vs backprop through the chain\n\n{net}, 1x32x32, float32, "
        f"inpaint-box, T = {args.steps}, B = {args.n}, eta = 0.15, k = 1 phantom step, tau = 0.1\n\n`{cmd}`\n\n"
    )
    md += table(
        ["loss", "gradient", "peak tensor MiB", "/ exact", "peak RSS growth MiB"],
        [
            [r["loss"], r["kind"], r["peak_tensor_mib"], r["tensor_ratio_to_exact"], r["peak_rss_growth_mib"]]
            for r in rows
        ],
    )
    md += (
        "\nchain: the default chain-consistency loss of `deqir_edu.inversion` (x_{0|k} of every state, so the "
        "phantom step keeps a graph through all T network evaluations); x0: a loss of x_0 only (the graph "
        "holds one network evaluation).\n"
    )
    js, mdp = write("inversion_memory", {"meta": meta(cmd), "rows": rows}, md)
    print(md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
