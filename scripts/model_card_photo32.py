"""Quality figures of the embedded `photo32` model for its model card (data/models/README.md).

    python scripts/model_card_photo32.py [--n 64] [--steps 20 100] [--out data/models] [--model NAME_OR_PATH] \
        [--no-tiles]

1. 64 unconditional DDIM samples (T = 50, eta = 0) -> photo32_samples.png, and the mean
   nearest-neighbour distance (per pixel RMS) of samples to the 64 held-out test crops, next to that
   of pure noise and of training patches (a check that needs no network from outside).
2. x4 SR (average pooling) on the n held-out crops (coffee, chelsea): DDNM against bicubic
   interpolation of y and against A^+ y, T in --steps, eta in {0.15, 0.85}, with and without
   clipping; colorization (DDNM against the grey A^+ y) at the same settings. Then x4 SR by the mean
   of k = 1, 2, 4, 8, 16, 32 DDNM runs with different seeds (T = 20, eta = 0.85), an estimate of the
   posterior mean, which is what PSNR rewards.
3. The 256 x 256 held-out photograph (`photo256`, the cat's head of chelsea) restored from its x4
   average-pooled observation by overlapping tiles (`restore_tiled`) -> photo32_tiled256.png, with a
   seam measure: the mean |horizontal/vertical difference| of the error image (restored - truth) on
   the pixel pairs where a tile starts or ends, divided by its mean over all pairs (1 = no seam).
   The control pastes independently restored 32 x 32 tiles side by side without overlap. Also the
   tiled mean of 16 runs (``samples=16``), the estimate of the posterior mean.
Writes photo32_card.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _model_card import ddnm_grid  # scripts/_model_card.py

import deqir_edu as dq
from deqir_edu.apps import TileSampling, restore_tiled, tile_starts
from deqir_edu.datasets import PHOTO_TRAIN, PatchSampler, skimage_photos
from deqir_edu.experiments import bicubic_upsample
from deqir_edu.metrics import nn_distance


def seam_ratio(err: torch.Tensor, edges: list[int]) -> float:
    """Mean |difference| of ``err`` (1, C, H, W) across the given column/row boundaries (a boundary
    b is the pair (b - 1, b)) over its mean across all boundaries, both directions pooled."""
    dx = (err[..., :, 1:] - err[..., :, :-1]).abs().mean(dim=(0, 1, 2))  # (W - 1,), pair (b-1, b) at b-1
    dy = (err[..., 1:, :] - err[..., :-1, :]).abs().mean(dim=(0, 1, 3))  # (H - 1,)
    idx = torch.tensor(sorted(set(edges)), dtype=torch.long) - 1
    return float((dx[idx].mean() + dy[idx].mean()) / (dx.mean() + dy.mean()))


def to_img(x: torch.Tensor):  # (C, H, W) in [-1, 1] -> (H, W, C) numpy in [0, 1]
    return ((x.float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def tiled_figure(model, overlap: int, out: Path) -> dict:
    """Part 3: the 256 x 256 held-out photograph by overlapping tiles (one run and the mean of 16), the
    no-overlap control and bicubic; writes photo32_tiled256.png and returns PSNRs and seam ratios."""
    import matplotlib.pyplot as plt

    big = dq.load_testset("photo256").double()  # (1, 3, 256, 256)
    op = dq.make_operator("sr4", (3, 256, 256))
    y = op.A(big)
    t0 = time.perf_counter()
    tiled = restore_tiled(
        model,
        "sr4",
        y,
        (256, 256),
        overlap=overlap,
        generator=torch.Generator().manual_seed(0),
        sampling=TileSampling(sampler="ddnm", steps=20, eta=0.85),
    )
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiled_mean = restore_tiled(
        model,
        "sr4",
        y,
        (256, 256),
        overlap=overlap,
        generator=torch.Generator().manual_seed(0),
        sampling=TileSampling(sampler="ddnm", steps=20, eta=0.85, samples=16),
    )
    seconds_mean = time.perf_counter() - t0
    starts, _ = tile_starts(256, 32, overlap, 4)  # the tiles restore_tiled used
    edges = [s for s in starts if s > 0] + [s + 32 for s in starts if s + 32 < 256]
    small = dq.make_operator("sr4", (3, 32, 32))
    ys = torch.cat(
        [y[..., i // 4 : (i + 32) // 4, j // 4 : (j + 32) // 4] for i in range(0, 256, 32) for j in range(0, 256, 32)]
    )
    xs = dq.ddnm_sample(model, small, ys, steps=20, eta=0.85, generator=torch.Generator().manual_seed(0))
    pasted = xs.reshape(8, 8, 3, 32, 32).permute(2, 0, 3, 1, 4).reshape(1, 3, 256, 256)
    grid_edges = list(range(32, 256, 32))
    bicubic = bicubic_upsample(y, 4)
    result = {
        "task": "sr4",
        "T": 20,
        "eta": 0.85,
        "overlap": overlap,
        "tiles": len(starts) ** 2,
        "seconds": round(seconds, 1),
        "seconds_mean_of_16": round(seconds_mean, 1),
        "psnr": {
            "bicubic": float(dq.psnr(bicubic, big)),
            "tiled": float(dq.psnr(tiled, big)),
            "tiled_mean_of_16": float(dq.psnr(tiled_mean, big)),
            "pasted_no_overlap": float(dq.psnr(pasted, big)),
        },
        "consistency_tiled": float(dq.consistency(tiled, y, op)),
        "seam_ratio": {
            "tiled_at_tile_edges": seam_ratio(tiled - big, edges),
            "tiled_mean_of_16_at_tile_edges": seam_ratio(tiled_mean - big, edges),
            "pasted_at_tile_edges": seam_ratio(pasted - big, grid_edges),
            "bicubic_at_32px_grid": seam_ratio(bicubic - big, grid_edges),
        },
    }
    print(result, flush=True)
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    panels = [
        (big[0], "held-out original"),
        (bicubic[0], "bicubic from x4 avg-pooled"),
        (pasted[0], "32x32 tiles pasted, no overlap"),
        (tiled[0], f"restore_tiled, overlap {overlap}"),
        (tiled_mean[0], "restore_tiled, mean of 16 runs"),
    ]
    for ax, (img, title) in zip(axes, panels, strict=False):
        ax.imshow(to_img(img), interpolation="nearest")
        ax.set_title(f"{title}\n{float(dq.psnr(img[None], big)):.2f} dB", fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "photo32_tiled256.png", dpi=72)

    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="data/models")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 100], help="values of T in the table")
    ap.add_argument("--n", type=int, default=64, help="held-out test crops (every 64/n-th, both photographs)")
    ap.add_argument("--overlap", type=int, default=8, help="tile overlap of the 256 x 256 figure")
    ap.add_argument(
        "--model", default="photo32", help="zoo name or path of the weights (e.g. an exported training run)"
    )
    ap.add_argument("--no-tiles", action="store_true", help="skip part 3 (the 256 x 256 photograph, 8 min)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    model = dq.load_model(args.model)
    test = dq.load_testset("photo32").double()[:: max(1, 64 // args.n)][: args.n]  # (n, 3, 32, 32)
    card: dict = {"n_test": len(test), "T": args.steps}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # 1. unconditional samples
    t0 = time.perf_counter()
    samples = (
        dq.ddim_sample(model, (64, 3, 32, 32), steps=50, eta=0.0, generator=torch.Generator().manual_seed(0))
        .float()
        .clamp(-1, 1)
    )
    card["sample_seconds"] = round(time.perf_counter() - t0, 1)
    train = PatchSampler(skimage_photos(PHOTO_TRAIN), size=32).sample(64, torch.Generator().manual_seed(1))
    noise = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    card["nn_distance_to_test"] = {
        "samples": nn_distance(samples, test),
        "training_patches": nn_distance(train, test),
        "noise": nn_distance(noise, test),
    }
    grid = samples.reshape(8, 8, 3, 32, 32).permute(0, 3, 1, 4, 2).reshape(256, 256, 3)
    plt.imsave(out / "photo32_samples.png", ((grid + 1) / 2).clamp(0, 1).numpy())
    print(card["nn_distance_to_test"], flush=True)

    # 2. x4 SR against bicubic, colorization against grey
    rows = []
    for task in ("sr4", "colorize"):
        op = dq.make_operator(task, (3, 32, 32))
        y = op.A(test)
        base = {"pinv": float(dq.psnr(op.A_pinv(y), test).mean())}
        if task == "sr4":
            bicubic_each = dq.psnr(bicubic_upsample(y, 4), test)  # (n,), reused by 2b
            base["bicubic"] = float(bicubic_each.mean())
            sr4 = (op, y, bicubic_each)
        for setting, x in ddnm_grid(model, op, y, test.shape, args.steps):
            rows.append(
                {
                    "task": task,
                    "T": setting["T"],
                    "eta": setting["eta"],
                    "clip": setting["clip"],
                    **{f"{k}_psnr": v for k, v in base.items()},
                    "ddnm_psnr": float(dq.psnr(x, test).mean()),
                    "ddnm_ssim": float(dq.ssim(x, test).mean()),
                    "consistency": float(dq.consistency(x, y, op).max()),
                    "seconds": setting["seconds"],
                }
            )
            print(rows[-1], flush=True)
    card["ddnm"] = rows

    # 2b. PSNR rewards the posterior mean, and one DDNM run is one posterior sample: average k runs
    op, y, bicubic_each = sr4
    runs = [
        dq.ddnm_sample(model, op, y, steps=20, eta=0.85, generator=torch.Generator().manual_seed(s)) for s in range(32)
    ]
    ks = (1, 2, 4, 8, 16, 32)
    each = {k: dq.psnr(torch.stack(runs[:k]).mean(0), test) for k in ks}  # k -> (n,)
    card["sr4_mean_of_k_samples"] = {
        "T": 20,
        "eta": 0.85,
        "clip": False,
        "bicubic_psnr": float(bicubic_each.mean()),
        "ddnm_psnr": {k: float(v.mean()) for k, v in each.items()},
        "crops_above_bicubic": {k: int((v > bicubic_each).sum()) for k, v in each.items()},
    }
    print(card["sr4_mean_of_k_samples"], flush=True)

    if not args.no_tiles:  # 3. 256 x 256 by overlapping tiles, and the no-overlap control
        card["tiled256"] = tiled_figure(model, args.overlap, out)

    (out / "photo32_card.json").write_text(json.dumps(card, indent=1) + "\n")
    print("\n| task | baseline PSNR | T | eta | clip | DDNM PSNR | gain (dB) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        b = r.get("bicubic_psnr", r["pinv_psnr"])
        print(
            f"| {r['task']} | {b:.2f} | {r['T']} | {r['eta']} | {'yes' if r['clip'] else 'no'} | "
            f"{r['ddnm_psnr']:.2f} | {r['ddnm_psnr'] - b:+.2f} |"
        )


if __name__ == "__main__":
    main()
