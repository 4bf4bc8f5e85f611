"""Quality figures of the embedded `fashion32` model for its model card (data/models/README.md).

    python scripts/model_card_fashion32.py [--n 32] [--out data/models]

1. 64 unconditional DDIM samples (T = 50, eta = 0) -> fashion32_samples.png, and the mean
   nearest-neighbour L2 distance (per pixel RMS) of samples to the frozen test set, next to that of
   pure noise and of training images (a check that needs no network from outside).
2. DDNM (sequential) against the A^+ y baseline on the first N frozen test images for the issue's
   four tasks, T in {20, 100}, eta in {0.15, 0.85}, with and without clipping; same noises per row.
Writes fashion32_card.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _model_card import ddnm_grid  # scripts/_model_card.py

import deqir_edu as dq
from deqir_edu.datasets import fashion_mnist, pad_to_32, to_tensor_images
from deqir_edu.metrics import nn_distance

TASKS = {  # name in the card -> (task, options)
    "x4 SR (avg pool)": ("sr4", {}),
    "16x16 box": ("inpaint-box", {"size": 16}),
    "80% pixels missing": ("inpaint-random", {"missing": 0.8}),
    "Gaussian deblur": ("deblur-gauss", {}),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--out", default="data/models")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 100], help="values of T in the table")
    args = ap.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    model = dq.load_model("fashion32")
    test = dq.load_testset("fashion32")
    card: dict = {"n_test": args.n, "T": args.steps}

    # 1. unconditional samples
    print("sampling 64 images", flush=True)
    t0 = time.perf_counter()
    samples = (
        dq.ddim_sample(model, (64, 1, 32, 32), steps=50, eta=0.0, generator=torch.Generator().manual_seed(0))
        .float()
        .clamp(-1, 1)
    )
    card["sample_seconds"] = round(time.perf_counter() - t0, 1)
    train, _ = fashion_mnist("train")
    train_imgs = pad_to_32(to_tensor_images(train[:64])).float()
    noise = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    card["nn_distance_to_test"] = {
        "samples": nn_distance(samples, test),
        "training_images": nn_distance(train_imgs, test),
        "noise": nn_distance(noise, test),
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = ((samples + 1) / 2).reshape(8, 8, 32, 32).permute(0, 2, 1, 3).reshape(256, 256).numpy()
    plt.imsave(out / "fashion32_samples.png", grid, cmap="gray", vmin=0, vmax=1)

    # 2. DDNM vs A^+ y
    x = test[: args.n].double()
    rows = []
    for label, (task, opts) in TASKS.items():
        op = dq.make_operator(task, (1, 32, 32), **opts)
        y = op.A(x)
        base = float(dq.psnr(op.A_pinv(y), x).mean())
        for setting, out_x in ddnm_grid(model, op, y, x.shape, args.steps):
            p = float(dq.psnr(out_x, x).mean())
            rows.append(
                {
                    "task": label,
                    "T": setting["T"],
                    "eta": setting["eta"],
                    "clip": setting["clip"],
                    "pinv_psnr": base,
                    "ddnm_psnr": p,
                    "gain_db": p - base,
                    "seconds": setting["seconds"],
                }
            )
            print(rows[-1], flush=True)
    card["ddnm_vs_pinv"] = rows
    (out / "fashion32_card.json").write_text(json.dumps(card, indent=1) + "\n")
    print("\n| task | A+y PSNR | T | eta | clip | DDNM PSNR | gain (dB) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['task']} | {r['pinv_psnr']:.2f} | {r['T']} | {r['eta']} | {'yes' if r['clip'] else 'no'} | "
            f"{r['ddnm_psnr']:.2f} | {r['gain_db']:+.2f} |"
        )
    print(card["nn_distance_to_test"])


if __name__ == "__main__":
    main()
