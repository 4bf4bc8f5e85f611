"""Shared pieces of the parallel-sampling benchmarks: problems, models, timing.

Notation: T steps, B images, eta as in ``deqir_edu.diffusion``; "pass" = one batched network call
(a sequential step of the parallel machine), "NFE" = network evaluations of single states.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("DEQIR_BENCH_RESULTS", ROOT / "benchmarks" / "results"))  # tests point it elsewhere
FASHION32 = ROOT / "data" / "models" / "fashion32.safetensors"
LOADED: dict[str, Any] = {}  # what was loaded (e.g. the training step of fashion32), for the result files
SOLVERS = [
    "picard",
    "anderson",
    "picard-freeze",
    "picard-window",
    "anderson-freeze",
    "taa",
    "gauss-freeze",
    "gauss-window",
]


def exact_problem(task: str = "sr4", batch: int = 2, shape: tuple[int, int, int] = (3, 8, 8)):
    """The exact prior of the tests: 4-component Gaussian mixture, float64.  Returns (model, op, y, x)."""
    from deqir_edu.diffusion import GaussianMixturePrior
    from deqir_edu.operators import make_operator

    g = torch.Generator().manual_seed(0)
    means = (torch.rand(4, *shape, generator=g, dtype=torch.float64) * 2 - 1) * 0.8
    prior = GaussianMixturePrior(means, 0.1)
    op = make_operator(task, shape)
    x = prior.sample(batch, g)
    return prior, op, op.A(x), x


def gmm_fashion_problem(task: str = "sr4", batch: int = 2):
    """A small exact prior: a 32-component mixture fitted to 1500 Fashion-MNIST images, 1x32x32.

    The results in benchmarks/results/solver_grid_* were measured with this fit (the book's earlier
    prior); the book itself now uses ``fashion_mixture()`` (256 components, shipped).
    """
    from deqir_edu.datasets import fashion_mnist, pad_to_32, to_tensor_images
    from deqir_edu.diffusion import fashion_mixture
    from deqir_edu.operators import make_operator

    prior = fashion_mixture(32, 1500, 8)
    x = pad_to_32(to_tensor_images(fashion_mnist("test")[0][:batch])).double()
    op = make_operator(task, (1, 32, 32))
    return prior, op, op.A(x), x


def adm_config(name: str = "fashion32") -> dict[str, Any]:
    return json.loads((ROOT / "deqir_edu" / "training" / "configs" / f"{name}.json").read_text())


def random_adm(name: str = "fashion32", device: str = "cpu", seed: int = 0):
    """The ADM of a config with random weights (timing and memory only), as an eps-model."""
    from deqir_edu.models import build_network, parse_spec, wrap_network

    spec = parse_spec(adm_config(name), name)
    torch.manual_seed(seed)
    net = build_network(spec).to(device).eval().requires_grad_(False)
    return wrap_network(net, spec)


def fashion_problem(task: str = "sr4", n: int = 4, device: str = "cpu"):
    """The embedded fashion32 model and the first n frozen test images (float32); None if absent."""
    if not FASHION32.is_file():
        return None
    from deqir_edu.datasets import load_testset
    from deqir_edu.models import load_model
    from deqir_edu.operators import make_operator

    info = FASHION32.with_suffix(".json")
    run = json.loads(info.read_text()).get("run", {}) if info.is_file() else {}
    model = load_model("fashion32", device=device)
    LOADED["fashion32"] = {k: run.get(k) for k in ("step", "finished", "planned_steps", "final_loss")}
    x = load_testset("fashion32", n).to(device)
    op = make_operator(task, tuple(model.image_shape))
    return model, op, op.A(x), x


class Timed:
    """Wrap an eps-model: total seconds spent inside it (``seconds``) and images evaluated (``images``)."""

    def __init__(self, model: Any) -> None:
        self.model, self.seconds, self.images, self.passes = model, 0.0, 0, 0
        self.image_shape = tuple(model.image_shape)
        if getattr(model, "alphas_cumprod", None) is not None:
            self.alphas_cumprod = model.alphas_cumprod

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sync(x)
        t0 = time.perf_counter()
        out = self.model(x, t)
        sync(out)
        self.seconds += time.perf_counter() - t0
        self.images += x.shape[0]
        self.passes += 1
        return out


def sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def x0_tracker(ref: torch.Tensor, x: torch.Tensor):
    """``(callback, errs, gaps)``: a solver callback that appends, per pass, max |x_0 - ref| and the worst
    per-image |PSNR(x_0, x) - PSNR(ref, x)| (dB) of the current x_0."""
    from deqir_edu.metrics import psnr

    ref_db = psnr(ref, x)
    errs: list[float] = []
    gaps: list[float] = []

    def cb(d: dict) -> None:
        x0 = d["states"][0]
        errs.append(float((x0 - ref).abs().max()))
        gaps.append(float((psnr(x0, x) - ref_db).abs().max()))

    return cb, errs, gaps


def first(values: list[float], threshold: float) -> int | None:
    """1-based index of the first value below ``threshold``, or None."""
    return next((i + 1 for i, v in enumerate(values) if v < threshold), None)


def meta(command: str) -> dict[str, Any]:
    return {
        "command": command,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "loaded": dict(LOADED),
    }


def write(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """benchmarks/results/NAME.json and NAME.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    js, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    js.write_text(json.dumps(data, indent=1, default=float))
    md.write_text(markdown)
    return js, md


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    fmt = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
