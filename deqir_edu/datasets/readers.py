"""Training data and frozen test sets for the embedded models.

Notation (code name -> meaning; the paper calls a clean image ``x_0``)

    images       (N, C, H, W) float tensors in [-1, 1]: the training images x_0
    sampler      an object with ``.sample(batch, generator) -> (B, C, H, W)``; the trainer draws
                 every batch from it with its own ``torch.Generator``, so a run is reproducible and
                 can be resumed bit for bit
    testset      a frozen set of images in ``data/testsets/`` (never used for training)

Sources
    * Fashion-MNIST idx(.gz) files (Xiao et al., 2017, MIT licence); Debian package
      ``dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist/``.  The 28 x 28
      images are padded to 32 x 32 with -1 (black background).
    * Colour photographs bundled with scikit-image, only those whose licence is CC0 or public
      domain (see ``PHOTO_LICENCES``); ``PHOTO_TEST`` are held out for testing.
    * Any folder of PNG/JPEG images (random crops), for a prior of your own domain.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.paths import data_dir

__all__ = [
    "FASHION_MNIST_DIR",
    "PHOTO_LICENCES",
    "PHOTO_TRAIN",
    "PHOTO_TEST",
    "read_idx",
    "fashion_mnist",
    "fashion_subset",
    "FASHION_MNIST_MD5",
    "download_fashion_mnist",
    "to_tensor_images",
    "pad_to_32",
    "skimage_photos",
    "image_folder",
    "shrink",
    "TensorSampler",
    "PatchSampler",
    "make_sampler",
    "load_testset",
    "fit_to",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# The four idx .gz files in the official repository (Zalando Research), over https, used only by
# ``fashion_mnist`` (the full data: ``deqir-edu train``) when the Debian folder is missing; the files go
# to ``cache_dir() / "fashion-mnist"`` and are checked against the MD5s that the repository's README
# publishes.  The book and the tests never need them: ``fashion_subset`` reads the files shipped in data/.
FASHION_MNIST_URL = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# first images of each split shipped in data/testsets/ (uint8 + labels): split -> (file, count)
FASHION_SUBSETS = {"train": ("fashion_mnist_train4000.npz", 4000), "test": ("fashion_mnist_test100.npz", 100)}

# scikit-image photograph -> licence, as written in its docstring in skimage.data (v0.26).
# ``colorwheel`` is left out: its docstring states no licence.
PHOTO_LICENCES: dict[str, str] = {
    "astronaut": "public domain (NASA; 'No known copyright restrictions, released into the public domain')",
    "coffee": "CC0 (photographer Rachel Michetti, courtesy of Pikolo Espresso Bar)",
    "chelsea": "CC0 (photographer Stefan van der Walt)",
    "rocket": "public domain (SpaceX launch photo of DSCOVR, released into the public domain)",
    "retina": "CC0 1.0 (Mikael Haggstrom, Wikimedia Commons)",
    "hubble_deep_field": "public domain (NASA / HubbleSite)",
    "immunohistochemistry": "no known copyright restrictions (CMMI)",
}
PHOTO_TEST: tuple[str, ...] = ("coffee", "chelsea")  # held out: test crops only
PHOTO_TRAIN: tuple[str, ...] = tuple(n for n in PHOTO_LICENCES if n not in PHOTO_TEST)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


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


def download_fashion_mnist(split: str = "train", base_url: str | None = None) -> Path:
    """Fetch the images and labels of ``split`` into ``cache_dir()/fashion-mnist``; returns that folder.

    Uses :func:`deqir_edu.core.download` (temporary file, renamed when complete; checked against the
    published MD5 of each file, on the download and on every later call; an HTML error page or a
    truncated body is never saved).  Offline, the error says how to get the files by hand.
    """
    from ..core.download import cache_dir, download

    base = base_url or FASHION_MNIST_URL
    folder = cache_dir() / "fashion-mnist"
    prefix = "train" if split == "train" else "t10k"
    for kind, nd in (("images", 3), ("labels", 1)):
        name = f"{prefix}-{kind}-idx{nd}-ubyte.gz"
        download(base + name, folder / name, progress=False, md5=FASHION_MNIST_MD5[name])
    return folder


def fashion_subset(split: str = "train", n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` Fashion-MNIST images ``(n, 28, 28)`` uint8 and labels of ``split``, from the files
    shipped in ``data/testsets/`` (4,000 training and 100 test images: no system package, no internet).

    More than that is read from the full data (``fashion_mnist``).  The shipped files are the first
    images of the official splits (``data/testsets/make_testsets.py`` writes them; a test checks it).
    """
    if split not in FASHION_SUBSETS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    file, count = FASHION_SUBSETS[split]
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive number of images, got {n!r}")
    if n is not None and n > count:
        images, labels = fashion_mnist(split)
        return images[:n], labels[:n]
    path = data_dir() / "testsets" / file
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall deqir-edu or set DEQIR_EDU_DATA to the repo's data/")
    with np.load(path) as z:
        return z["images"][:n], z["labels"][:n]


def to_tensor_images(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in [-1, 1]."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)) / 127.5 - 1.0
    return x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()


def pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """Pad ``(N, C, 28, 28)`` to ``(N, C, 32, 32)`` with -1 (black), 2 pixels each side."""
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def skimage_photos(names: tuple[str, ...] | list[str] = PHOTO_TRAIN) -> list[torch.Tensor]:
    """The named scikit-image photographs as float tensors ``(3, H, W)`` in [-1, 1]."""
    try:
        import skimage.data  # lazy: optional dependency
    except ImportError as err:
        raise FileNotFoundError("the photographs come with scikit-image: `pip install scikit-image`") from err
    out = []
    for name in names:
        if name not in PHOTO_LICENCES:
            raise ValueError(f"unknown or non-free photograph {name!r}; choose from {sorted(PHOTO_LICENCES)}")
        out.append(to_tensor_images(getattr(skimage.data, name)()[None, ..., :3])[0])
    return out


def image_folder(root: str | Path, channels: int = 3) -> list[torch.Tensor]:
    """Every PNG/JPEG in ``root`` (recursively) as ``(channels, H, W)`` tensors in [-1, 1]."""
    from PIL import Image

    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"no .png/.jpg/.jpeg images found in {root}; give a folder of images")
    mode = "L" if channels == 1 else "RGB"
    return [to_tensor_images(np.asarray(Image.open(p).convert(mode))[None])[0] for p in files]


def shrink(photo: torch.Tensor, max_side: int) -> torch.Tensor:
    """Downscale ``(C, H, W)`` (antialiased bilinear) so that its longer side is at most ``max_side``."""
    h, w = photo.shape[1:]
    if max(h, w) <= max_side:
        return photo
    size = (round(h * max_side / max(h, w)), round(w * max_side / max(h, w)))
    return F.interpolate(photo[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(-1, 1)


class TensorSampler:
    """Draws random images (with replacement) from a fixed stack ``images`` of shape ``(N, C, H, W)``."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        self.image_shape = tuple(images.shape[1:])

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.images.shape[0], (batch,), generator=generator)
        return self.images[idx]


class PatchSampler:
    """Random ``size`` x ``size`` patches of a list of ``(C, H, W)`` images.

    Each patch: a photograph chosen uniformly, a square of side ``size * s`` with ``s`` log-uniform
    in ``scale`` (mild rescaling), resized to ``size``, random horizontal flip and 90-degree rotation.
    """

    def __init__(
        self,
        photos: list[torch.Tensor],
        size: int = 32,
        scale: tuple[float, float] = (0.8, 1.25),
        flips: bool = True,
        rotations: bool = True,
    ) -> None:
        side = int(round(size * max(scale)))
        small = [tuple(p.shape[1:]) for p in photos if min(p.shape[1:]) < side]
        if not photos or small:
            raise ValueError(f"need photographs of at least {side} x {side} pixels, got sizes {small or 'none'}")
        self.photos, self.size, self.scale = photos, size, scale
        self.flips, self.rotations = flips, rotations
        self.image_shape = (int(photos[0].shape[0]), size, size)

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        lo, hi = np.log(self.scale[0]), np.log(self.scale[1])
        u = torch.rand(batch, 2, generator=generator, dtype=torch.float64)
        which = torch.randint(0, len(self.photos), (batch,), generator=generator)
        flip = torch.randint(0, 2, (batch,), generator=generator)
        rot = torch.randint(0, 4, (batch,), generator=generator)
        out = []
        for i in range(batch):
            photo = self.photos[int(which[i])]
            side = int(round(self.size * float(np.exp(lo + (hi - lo) * float(u[i, 0])))))
            top = int(torch.randint(0, photo.shape[1] - side + 1, (1,), generator=generator))
            left = int(float(u[i, 1]) * (photo.shape[2] - side + 1))
            patch = photo[:, top : top + side, left : left + side]
            if side != self.size:
                patch = F.interpolate(
                    patch[None], size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
                )[0].clamp(-1, 1)
            if self.flips and flip[i]:
                patch = patch.flip(-1)
            if self.rotations:
                patch = torch.rot90(patch, int(rot[i]), dims=(1, 2))
            out.append(patch)
        return torch.stack(out)


def make_sampler(data: dict) -> TensorSampler | PatchSampler:
    """Build the batch sampler described by the ``"data"`` entry of a training config.

    kinds: ``fashion_mnist`` (optional ``root``), ``skimage_photos`` (optional ``photos``),
    ``folder`` (``root``, optional ``channels``), ``synthetic`` (``n``, ``image_shape``, ``seed``:
    smooth random images, for tests).  The two patch kinds take ``size``, ``scale`` and
    ``max_side`` (shrink larger photographs first).
    """
    kind = data.get("kind")
    if kind == "fashion_mnist":
        images, _ = fashion_mnist("train", data.get("root"))
        return TensorSampler(pad_to_32(to_tensor_images(images)))
    if kind in ("skimage_photos", "folder"):
        if kind == "skimage_photos":
            photos = skimage_photos(tuple(data.get("photos", PHOTO_TRAIN)))
        else:
            photos = image_folder(data["root"], data.get("channels", 3))
        if data.get("max_side"):  # shrink large photographs so that a patch holds some structure
            photos = [shrink(p, int(data["max_side"])) for p in photos]
        return PatchSampler(photos, data.get("size", 32), tuple(data.get("scale", (0.8, 1.25))))
    if kind == "synthetic":
        c, h, w = data.get("image_shape", (1, 16, 16))
        g = torch.Generator().manual_seed(int(data.get("seed", 0)))
        coarse = torch.rand(int(data.get("n", 256)), c, max(h // 4, 1), max(w // 4, 1), generator=g)
        return TensorSampler(F.interpolate(coarse * 2 - 1, size=(h, w), mode="bilinear", align_corners=False))
    raise ValueError(f"unknown data kind {kind!r}; use fashion_mnist, skimage_photos, folder or synthetic")


# frozen test sets: name -> (file in data/testsets/, pad 28 -> 32)
_TESTSETS = {
    "fashion32": ("fashion_mnist_test100.npz", True),
    "photo32": ("photo_test_crops.npz", False),
    "photo256": ("photo_test_256.npz", False),
}


def load_testset(name: str, n: int | None = None) -> torch.Tensor:
    """A frozen test set ``(N, C, H, W)`` in [-1, 1]: 'fashion32' (first 100 Fashion-MNIST test
    images, padded to 32 x 32), 'photo32' (32 x 32 crops of held-out photographs) or 'photo256'."""
    if name not in _TESTSETS:
        raise ValueError(f"unknown test set {name!r}; choose from {sorted(_TESTSETS)}")
    file, pad = _TESTSETS[name]
    path = data_dir() / "testsets" / file
    if not path.is_file():
        raise FileNotFoundError(f"test set file {path} is missing; set DEQIR_EDU_DATA to the repo's data/ folder")
    with np.load(path) as z:
        images = z["images"]
    if n is not None:
        if not 1 <= n <= len(images):
            raise ValueError(f"n must be between 1 and {len(images)} for test set {name!r}, got {n}")
        images = images[:n]
    x = to_tensor_images(images)
    return pad_to_32(x) if pad else x


def fit_to(p: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Centre-crop ``(C, H', W')`` to the aspect ratio of ``(h, w)``, then resize (area) to ``(h, w)``."""
    s = min(p.shape[1] / h, p.shape[2] / w)
    ch, cw = int(h * s), int(w * s)
    top, left = (p.shape[1] - ch) // 2, (p.shape[2] - cw) // 2
    crop = p[:, top : top + ch, left : left + cw]
    return F.interpolate(crop[None], size=(h, w), mode="area")[0] if (ch, cw) != (h, w) else crop
