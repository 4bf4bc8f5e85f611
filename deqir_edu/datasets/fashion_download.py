"""Fetching the full Fashion-MNIST into the local cache (only ``deqir-edu train`` needs it).

Notation: none (no paper symbols).

    split        'train' (files ``train-*``) or 'test' (files ``t10k-*``)
    base_url     folder URL of the four idx .gz files (default ``FASHION_MNIST_URL``)
    folder       ``cache_dir() / "fashion-mnist"``, where the files go

The four idx .gz files come from the official repository (Zalando Research), over https, and are
checked against the MD5s that the repository's README publishes (``FASHION_MNIST_MD5``).  The book and
the tests never need them: ``fashion_subset`` reads the files shipped in data/.
"""

from __future__ import annotations

from pathlib import Path

from ..core.download import cache_dir, download

__all__ = ["FASHION_MNIST_MD5", "download_fashion_mnist"]

# used only by ``fashion_mnist`` (the full data: ``deqir-edu train``) when the Debian folder is missing
FASHION_MNIST_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def download_fashion_mnist(split: str = "train", base_url: str | None = None) -> Path:
    """Fetch the images and labels of ``split`` into ``cache_dir()/fashion-mnist``; returns that folder.

    Uses :func:`deqir_edu.core.download` (temporary file, renamed when complete; checked against the
    published MD5 of each file, on the download and on every later call; an HTML error page or a
    truncated body is never saved).  Offline, the error says how to get the files by hand.
    """
    base = base_url or FASHION_MNIST_URL
    folder = cache_dir() / "fashion-mnist"
    prefix = "train" if split == "train" else "t10k"
    for kind, nd in (("images", 3), ("labels", 1)):
        name = f"{prefix}-{kind}-idx{nd}-ubyte.gz"
        download(base + name, folder / name, progress=False, md5=FASHION_MNIST_MD5[name])
    return folder
