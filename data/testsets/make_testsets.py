"""Rebuild the frozen test sets of this folder (run once; the outputs are committed).

    python data/testsets/make_testsets.py [FASHION_MNIST_DIR]

fashion_mnist_test100.npz  images uint8 (100, 28, 28), labels uint8 (100,): the first 100 images of
                           the official Fashion-MNIST test split (t10k), MIT licence (see FASHION_MNIST_LICENSE)
photo_test_crops.npz       images uint8 (64, 32, 32, 3): 32 random crops each of the held-out
                           scikit-image photographs 'coffee' and 'chelsea' (CC0), positions in
                           photo/top/left, drawn with numpy seed 0
photo_test_256.npz         images uint8 (1, 256, 256, 3): rows 22:278, cols 97:353 of 'chelsea'
                           (the cat's head), for restoration by overlapping tiles
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data

from deqir_edu.datasets import FASHION_MNIST_DIR, PHOTO_TEST, fashion_mnist

HERE = Path(__file__).resolve().parent


def main(root: str | Path = FASHION_MNIST_DIR) -> None:
    images, labels = fashion_mnist("test", root)
    np.savez_compressed(HERE / "fashion_mnist_test100.npz", images=images[:100], labels=labels[:100])

    rng = np.random.default_rng(0)
    crops, which, tops, lefts = [], [], [], []
    for k, name in enumerate(PHOTO_TEST):
        photo = getattr(skimage.data, name)()[..., :3]
        for _ in range(32):
            top = int(rng.integers(0, photo.shape[0] - 32 + 1))
            left = int(rng.integers(0, photo.shape[1] - 32 + 1))
            crops.append(photo[top : top + 32, left : left + 32])
            which.append(k), tops.append(top), lefts.append(left)
    np.savez_compressed(
        HERE / "photo_test_crops.npz",
        images=np.stack(crops),
        photo=np.array(which, np.uint8),
        top=np.array(tops, np.int16),
        left=np.array(lefts, np.int16),
        names=np.array(PHOTO_TEST),
    )
    big = skimage.data.chelsea()[22:278, 97:353, :3]
    np.savez_compressed(HERE / "photo_test_256.npz", images=big[None], names=np.array(["chelsea[22:278, 97:353]"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
