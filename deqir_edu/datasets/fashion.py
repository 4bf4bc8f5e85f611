"""Fashion-MNIST (Xiao et al., 2017, MIT licence) read from its idx(.gz) files.

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    images       uint8 ``(N, 28, 28)``: the raw images (``to_tensor_images`` + ``pad_to_32`` give x_0)
    labels       uint8 ``(N,)``: the class of each image (0-9)
    split        'train' (files ``train-*``) or 'test' (files ``t10k-*``)
    root         a folder holding the idx files

Where the files come from
    * the Debian package ``dataset-fashion-mnist`` puts them in ``FASHION_MNIST_DIR``
      (``/usr/share/datasets/fashion-mnist/``);
    * without it, ``fashion_mnist`` downloads them into the cache (``fashion_download``);
    * ``fashion_subset`` reads the first images of each split, shipped in ``data/testsets/``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..core.checks import is_integer
from ..core.paths import data_dir
from .fashion_download import download_fashion_mnist

__all__ = ["FASHION_MNIST_DIR", "read_idx", "fashion_mnist", "fashion_subset"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# first images of each split shipped in data/testsets/ (uint8 + labels): split -> (file, count)
FASHION_SUBSETS = {"train": ("fashion_mnist_train4000.npz", 4000), "test": ("fashion_mnist_test100.npz", 100)}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (plain or ``.gz``): 2 zero bytes, a dtype byte, ndim, then big-endian sizes."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number {raw[:4].hex()}); is it corrupt?")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=_IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values; file truncated?")
    return data.reshape(shape)


def _find_idx(root: Path, prefix: str, kind: str) -> Path:
    for name in (
        f"{prefix}-{kind}-idx{'3' if kind == 'images' else '1'}-ubyte",
        f"{prefix}-{kind}.idx{'3' if kind == 'images' else '1'}-ubyte",
    ):
        for suffix in (".gz", ""):
            if (root / (name + suffix)).is_file():
                return root / (name + suffix)
    raise FileNotFoundError(
        f"Fashion-MNIST file {prefix}-{kind}-idx*-ubyte[.gz] not found in {root}. Get the data with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, files go to "
        f"{FASHION_MNIST_DIR}) or download the four idx .gz files from "
        "https://github.com/zalandoresearch/fashion-mnist and pass their folder as root"
    )


def fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw Fashion-MNIST: uint8 images ``(N, 28, 28)`` and labels ``(N,)``; split 'train' or 'test'."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    if root is None:  # the Debian folder, else our cache, downloading the two files if needed
        root = FASHION_MNIST_DIR
        if not any(root.glob(f"{prefix}-images*")):
            root = download_fashion_mnist(split)
    root = Path(root)
    images = read_idx(_find_idx(root, prefix, "images"))
    labels = read_idx(_find_idx(root, prefix, "labels"))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"unexpected idx shapes {images.shape} / {labels.shape} in {root}")
    return images, labels


def fashion_subset(split: str = "train", n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST images ``(n, 28, 28)`` uint8 and labels of ``split``, from the files
    shipped in ``data/testsets/`` (4,000 training and 100 test images: no system package, no internet).

    More than that is read from the full data (``fashion_mnist``).  The shipped files are the first
    images of the official splits (``data/testsets/make_testsets.py`` writes them; a test checks it).
    """
    if split not in FASHION_SUBSETS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    file, count = FASHION_SUBSETS[split]
    if n is not None and (not is_integer(n) or n < 1):
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    n = None if n is None else int(n)
    if n is not None and n > count:
        images, labels = fashion_mnist(split)
        return images[:n], labels[:n]
    path = data_dir() / "testsets" / file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall deqir-edu or set DEQIR_EDU_DATA to the repo's data/")
    with np.load(path) as z:
        return z["images"][:n], z["labels"][:n]
