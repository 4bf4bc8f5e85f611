"""Cosine and peak memory of the exact chain gradient vs the phantom gradient (T=20, tiny conv net).

usage: python measure_grad.py [exact|phantom] [default|x0]   (one measurement per process, for peak RSS)
       python measure_grad.py                                  (runs all four in subprocesses + cosines)
"""

import math
import subprocess
import sys

import torch
from torch import nn

torch.set_num_threads(1)
from deqir_edu.diffusion import draw_noises
from deqir_edu.inversion import PhantomConfig, exact_chain_gradient, phantom_gradient, reference_loss
from deqir_edu.models import ChunkedModel, ClippedModel
from deqir_edu.operators import make_operator

SHAPE, T, B, ETA = (3, 32, 32), 20, 4, 0.15


class TinyEps(nn.Module):
    """Random 3-layer conv eps-net.  residual=True: eps = sqrt(1-abar_t) x_t + 0.1 net(x_t, t), i.e. the exact
    eps of N(0, I) data plus a random conv perturbation, so the chain behaves like a denoiser's."""

    def __init__(self, width=32, residual=False):
        super().__init__()
        self.residual = residual
        from deqir_edu.diffusion import alphas_cumprod, linear_betas

        self.alphas_cumprod = alphas_cumprod(linear_betas())
        self.image_shape = SHAPE
        self.c1, self.c2, self.c3 = (
            nn.Conv2d(3, width, 3, padding=1),
            nn.Conv2d(width, width, 3, padding=1),
            nn.Conv2d(width, 3, 3, padding=1),
        )
        self.emb = nn.Linear(32, width)

    def forward(self, x, t):
        f = torch.exp(-math.log(1000) * torch.arange(16, dtype=x.dtype) / 16)
        e = torch.cat([torch.sin(t[:, None].to(x.dtype) * f), torch.cos(t[:, None].to(x.dtype) * f)], 1)
        h = torch.nn.functional.silu(self.c1(x) + self.emb(e)[:, :, None, None])
        h = torch.nn.functional.silu(self.c2(h))
        if not self.residual:
            return self.c3(h)
        a = self.alphas_cumprod[t].to(x.dtype).view(-1, 1, 1, 1)
        return (1 - a).sqrt() * x + 0.1 * self.c3(h)


MODE = "random"


def setup():
    torch.manual_seed(0)
    net = TinyEps(residual=MODE == "residual").requires_grad_(False)  # frozen, as in the paper
    op = make_operator("inpaint-box", SHAPE)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(B, *SHAPE, generator=g) * 2 - 1
    x_T, noises = draw_noises((B, *SHAPE), T, g, torch.float32)
    return net, op, x, op.A(x), x_T, noises


def grad(kind, lossname, net, op, x, y, x_T, noises):
    loss = None if lossname == "default" else reference_loss(x)
    net = ClippedModel(net)
    if kind == "exact":
        return exact_chain_gradient(net, op, y, x_T, noises, T, ETA, loss=loss)
    if kind == "phantom-chunk1":  # the solve runs one state (B images) per network call
        net = ChunkedModel(net, B)
    return phantom_gradient(net, op, y, x_T, noises, T, ETA, phantom=PhantomConfig(loss=loss))


def saved_bytes(fn):
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("random", "residual"):
        MODE = sys.argv.pop(1)
    if len(sys.argv) == 3:
        args = setup()
        grad(sys.argv[1], sys.argv[2], *args)  # warm-up (allocator, lazy init)
        hwm = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
        rss = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])
        base = rss()
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS counter (Linux)
        _, nbytes = saved_bytes(lambda: grad(sys.argv[1], sys.argv[2], *args))
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            grad(sys.argv[1], sys.argv[2], *args)
        # allocations are booked on the op that made them (self memory), frees on "[memory]" events
        ev = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
        live = torch.tensor([m for _, m in ev], dtype=torch.float64).cumsum(0)
        peak = float(live.max()) if live.numel() else 0.0
        print(
            f"{MODE:8s} {sys.argv[1]:14s} {sys.argv[2]:8s} saved-for-backward {nbytes / 2**20:7.1f} MiB   "
            f"peak tensor memory (profiler) {peak / 2**20:7.1f} MiB"
        )
        sys.exit()
    print(f"network: {MODE}, T={T}, B={B}, {SHAPE}, inpaint-box, eta={ETA}, clip=True, float32")
    args = setup()
    op = args[1]
    q = lambda v: v - op.A_pinv(op.A(v))
    cos = lambda a, b: float((a * b).sum() / (a.norm() * b.norm()))
    for lossname in ("default", "x0"):
        ex, ph = grad("exact", lossname, *args), grad("phantom", lossname, *args)
        print(
            f"loss={lossname}: cos(exact, phantom k=1 tau=0.1) = {cos(ex.grad, ph.grad):.4f}   "
            f"null-space cos = {cos(q(ex.grad), q(ph.grad)):.4f}   "
            f"range fraction of exact = {float((ex.grad - q(ex.grad)).norm() / ex.grad.norm()):.3f}"
        )
        full = phantom_gradient(
            ClippedModel(args[0]),
            op,
            args[3],
            args[4],
            args[5],
            T,
            ETA,
            phantom=PhantomConfig(
                loss=None if lossname == "default" else reference_loss(args[2]), phantom_steps=T, tau=1.0
            ),
        )
        print(f"   phantom k=T tau=1 vs exact: cos = {cos(ex.grad, full.grad):.6f}")
    for kind in ("exact", "phantom", "phantom-chunk1"):
        for lossname in ("default", "x0"):
            r = subprocess.run([sys.executable, __file__, MODE, kind, lossname], capture_output=True, text=True)
            print(r.stdout.strip() or r.stderr[-500:])
