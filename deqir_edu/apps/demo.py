"""The README's main job: restore a few frozen test images on several tasks and compare methods.

Notation (code name -> paper symbol)

    x_gt      x           ground-truth test images, (N, C, H, W) in [-1, 1]
    y         y = A x     their degradations, one operator per task
    pinv      A^+ y       the baseline of the paper's tables
    ddnm      -           sequential DDNM, T steps (Eqs. (4)-(5))
    deqir     -           parallel DeqIR, Anderson with K iterations (Algorithm 1)

Every method of one task uses the same noises (``draw_noises`` with one seed), so DDNM and DeqIR
differ only by how far the solver got, never by luck.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.files import atomic_path
from ..datasets import load_testset
from ..diffusion.noises import draw_noises
from ..diffusion.prior import fashion_mixture
from ..experiments.runner import Method, run_method, sampler_method
from ..metrics.quality import psnr, ssim
from ..models.zoo import load_model
from ..operators import make_operator

__all__ = ["DemoRow", "default_model", "run_demo", "format_table"]

DEMO_TASKS = ("sr4", "deblur-gauss", "inpaint-box", "inpaint-random")


@dataclass
class DemoRow:
    task: str
    method: str
    psnr: float
    ssim: float
    seconds: float


def default_model(name: str = "fashion32") -> tuple[Any, torch.Tensor, str]:
    """``(model, test images, description)`` for the embedded model ``name``.

    Falls back to the exact Gaussian-mixture prior fitted to Fashion-MNIST training images when
    the embedded weights are not in ``data/models/`` (a clear note says so).
    """
    testset = {"fashion32": "fashion32", "photo32": "photo32"}.get(name, "fashion32")
    try:
        model = load_model(name)
        return model, load_testset(testset), name
    except FileNotFoundError as err:
        if name != "fashion32":
            raise
        print(f"note: {err}\nnote: using the exact Gaussian-mixture prior fitted to Fashion-MNIST instead")
        prior = fashion_mixture()
        return prior, load_testset("fashion32"), "exact prior (256-component mixture)"


def run_demo(
    model: Any,
    images: torch.Tensor,
    tasks: tuple[str, ...] = DEMO_TASKS,
    steps: int = 20,
    iters: int | None = None,
    eta: float = 0.15,
    seed: int = 0,
    clip: bool = False,
    solver: str = "auto",
) -> tuple[list[DemoRow], dict[str, dict[str, torch.Tensor]]]:
    """Run A^+ y, DDNM and DeqIR (``solver``: any registered name) on ``images`` (N, C, H, W) for each task.

    Returns the table rows and, per task, the images ``{"gt", "y", "pinv", "ddnm", "deqir"}``.
    """
    rows: list[DemoRow] = []
    shown: dict[str, dict[str, torch.Tensor]] = {}
    shape = tuple(images.shape[1:])
    for task in tasks:
        op = make_operator(task, shape)
        y = op.A(images)
        noises = draw_noises(
            tuple(images.shape), steps, torch.Generator().manual_seed(seed), dtype=images.dtype, device=images.device
        )
        outs: dict[str, torch.Tensor] = {"gt": images, "y": op.A_pinv(y)}
        methods = {
            "pinv": Method("pinv", "pinv", 0),
            "ddnm": Method("ddnm", "ddnm", steps),
            "deqir": sampler_method("deqir", steps, iters, solver),
        }
        for method, spec in methods.items():
            start = time.perf_counter()
            x = run_method(model, op, y, spec, eta, noises, clip=clip).x
            seconds = time.perf_counter() - start
            outs[method] = x
            rows.append(DemoRow(task, method, float(psnr(x, images).mean()), float(ssim(x, images).mean()), seconds))
        shown[task] = outs
    return rows, shown


def format_table(rows: list[DemoRow], steps: int, iters: int | None, solver: str = "auto") -> str:
    """Markdown table: one line per task, PSNR / SSIM of each method."""
    names = {"pinv": "A^+ y", "ddnm": f"DDNM T={steps}", "deqir": f"DeqIR T={steps} ({solver}, K <= {iters})"}
    tasks = list(dict.fromkeys(r.task for r in rows))
    head = "| task | " + " | ".join(f"{names[m]} PSNR / SSIM" for m in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for task in tasks:
        cells = [f"{r.psnr:.2f} / {r.ssim:.3f}" for m in names for r in rows if r.task == task and r.method == m]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_figure(shown: dict[str, dict[str, torch.Tensor]], path: str | Path, n: int = 4) -> Path:
    """Grid: per task, rows of ground truth, A^+ y, DDNM, DeqIR for ``n`` images."""
    import matplotlib  # noqa: PLC0415 (matplotlib: heavy, loaded only to draw; the CLI imports this module at start-up)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (matplotlib, as above; after use("Agg"))

    cols = ("gt", "y", "ddnm", "deqir")
    titles = {"gt": "ground truth", "y": "A^+ y", "ddnm": "DDNM", "deqir": "DeqIR"}
    fig, axes = plt.subplots(len(shown) * len(cols), n, figsize=(1.3 * n, 1.3 * len(shown) * len(cols)), squeeze=False)
    for ti, (task, outs) in enumerate(shown.items()):
        for ci, key in enumerate(cols):
            for j in range(n):
                ax = axes[ti * len(cols) + ci, j]
                img = ((outs[key][j].detach().float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy()
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{task}\n{titles[key]}", fontsize=6)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:  # an interrupted save never leaves half a figure
            fig.savefig(tmp, dpi=120, format=(path.suffix[1:] or "png").lower())
    finally:
        plt.close(fig)
    return path
