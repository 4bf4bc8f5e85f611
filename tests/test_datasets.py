"""Data readers, patch samplers and the frozen test sets (deqir_edu.datasets)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from deqir_edu import datasets as ds
from deqir_edu.core import data_dir
from deqir_edu.datasets import fashion, fashion_download


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:  # closed: Python 3.12+ gzip buffers until close
        f.write(data)


@pytest.fixture()
def tiny_fashion(tmp_path):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    for prefix, im in images.items():
        gz = prefix == "train"  # one split gzipped, one plain
        suffix = ".gz" if gz else ""
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", im, gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(len(im)) % 10, gz)
    return tmp_path, images


def test_read_idx_and_fashion_mnist_from_any_folder(tiny_fashion):
    root, images = tiny_fashion
    raw = ds.read_idx(root / "train-images-idx3-ubyte.gz")
    assert raw.shape == (5, 28, 28) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, images["train"])
    test_images, labels = ds.fashion_mnist("test", root)
    np.testing.assert_array_equal(test_images, images["t10k"])
    np.testing.assert_array_equal(labels, [0, 1, 2])
    sampler = ds.make_sampler({"kind": "fashion_mnist", "root": str(root)})
    x = sampler.sample(7, torch.Generator().manual_seed(0))
    assert x.shape == (7, 1, 32, 32) and sampler.image_shape == (1, 32, 32)
    assert x.min() >= -1 and x.max() <= 1
    assert bool((x[:, :, :2] == -1).all()) and bool((x[:, :, :, -2:] == -1).all())  # black padding


def test_idx_corrupt_and_truncated_files_raise(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an idx file"):
        ds.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="truncated"):
        ds.read_idx(tmp_path / "short")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        ds.fashion_mnist("train", tmp_path)
    with pytest.raises(ValueError, match="split"):
        ds.fashion_mnist("valid", tmp_path)


def test_tensor_conversion_and_padding():
    u8 = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)
    x = ds.to_tensor_images(u8)
    assert x.shape == (1, 1, 2, 2) and x.dtype == torch.float32
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    rgb = ds.to_tensor_images(np.zeros((2, 4, 5, 3), np.uint8))
    assert rgb.shape == (2, 3, 4, 5)
    padded = ds.pad_to_32(torch.zeros(2, 1, 28, 28))
    assert padded.shape == (2, 1, 32, 32) and float(padded.sum()) == -(32 * 32 - 28 * 28) * 2


def test_patch_sampler_shapes_range_and_reproducibility():
    g = torch.Generator().manual_seed(1)
    photos = [torch.rand(3, 50, 70, generator=g) * 2 - 1, torch.rand(3, 64, 41, generator=g) * 2 - 1]
    sampler = ds.PatchSampler(photos, size=32, scale=(0.8, 1.25))
    a = sampler.sample(16, torch.Generator().manual_seed(3))
    b = sampler.sample(16, torch.Generator().manual_seed(3))
    c = sampler.sample(16, torch.Generator().manual_seed(4))
    assert a.shape == (16, 3, 32, 32) and sampler.image_shape == (3, 32, 32)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="at least 40 x 40"):
        ds.PatchSampler([torch.zeros(3, 30, 100)], size=32, scale=(0.8, 1.25))


def test_patch_without_rescaling_is_an_exact_crop():
    photo = torch.arange(3 * 40 * 40, dtype=torch.float32).reshape(3, 40, 40)
    sampler = ds.PatchSampler([photo], size=8, scale=(1.0, 1.0), flips=False, rotations=False)
    patch = sampler.sample(1, torch.Generator().manual_seed(0))[0]
    top, left = int(patch[0, 0, 0]) // 40, int(patch[0, 0, 0]) % 40
    assert torch.equal(patch, photo[:, top : top + 8, left : left + 8])


def test_shrink_limits_the_longer_side():
    photo = torch.rand(3, 100, 300) * 2 - 1
    small = ds.shrink(photo, 150)
    assert small.shape == (3, 50, 150) and small.min() >= -1 and small.max() <= 1
    assert ds.shrink(photo, 300) is photo


def test_image_folder_crops(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i, ext in enumerate(["png", "jpg"]):
        Image.fromarray(rng.integers(0, 256, (48, 60, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.{ext}")
    (tmp_path / "notes.txt").write_text("not an image")
    photos = ds.image_folder(tmp_path)
    assert len(photos) == 2 and photos[0].shape == (3, 48, 60)
    grey = ds.image_folder(tmp_path, channels=1)
    assert grey[1].shape == (1, 48, 60)
    sampler = ds.make_sampler({"kind": "folder", "root": str(tmp_path), "size": 16, "max_side": 40})
    assert [tuple(p.shape) for p in sampler.photos] == [(3, 32, 40), (3, 32, 40)]
    assert sampler.sample(4, torch.Generator().manual_seed(0)).shape == (4, 3, 16, 16)
    with pytest.raises(FileNotFoundError, match="no .png"):
        ds.image_folder(tmp_path / "empty")


def test_skimage_photos_are_free_and_held_out_ones_not_trained_on():
    pytest.importorskip("skimage")
    assert set(ds.PHOTO_TEST).isdisjoint(ds.PHOTO_TRAIN) and len(ds.PHOTO_TEST) >= 2
    assert all(
        ("CC0" in lic) or ("public domain" in lic) or ("no known copyright" in lic)
        for lic in ds.PHOTO_LICENCES.values()
    )
    photos = ds.skimage_photos(["chelsea"])
    assert photos[0].shape == (3, 300, 451) and photos[0].min() >= -1 and photos[0].max() <= 1
    with pytest.raises(ValueError, match="non-free"):
        ds.skimage_photos(["colorwheel"])
    import json

    from deqir_edu.training import load_config

    cfg = load_config("photo32")
    assert set(cfg["data"]["photos"]).isdisjoint(ds.PHOTO_TEST)
    patches = ds.make_sampler(cfg["data"]).sample(8, torch.Generator().manual_seed(0))
    assert patches.shape == (8, 3, 32, 32)
    assert json.dumps(cfg)  # the config stays JSON-serialisable


def test_make_sampler_unknown_kind():
    with pytest.raises(ValueError, match="unknown data kind"):
        ds.make_sampler({"kind": "imagenet"})


@pytest.mark.parametrize(
    "name, shape", [("fashion32", (100, 1, 32, 32)), ("photo32", (64, 3, 32, 32)), ("photo256", (1, 3, 256, 256))]
)
def test_load_testset_shapes_and_range(name, shape):
    x = ds.load_testset(name)
    assert x.shape == shape and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert ds.load_testset(name, n=1).shape == (1,) + shape[1:]


def test_load_testset_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown test set"):
        ds.load_testset("mnist")
    with pytest.raises(ValueError, match="n must be"):
        ds.load_testset("fashion32", n=101)
    monkeypatch.setenv("DEQIR_EDU_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="DEQIR_EDU_DATA"):
        ds.load_testset("fashion32")


@pytest.mark.skipif(
    not (ds.FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="system Fashion-MNIST (dataset-fashion-mnist) not installed",
)
def test_frozen_fashion_testset_is_the_official_test_split():
    images, labels = ds.fashion_mnist("test")
    with np.load(data_dir() / "testsets" / "fashion_mnist_test100.npz") as z:
        np.testing.assert_array_equal(z["images"], images[:100])
        np.testing.assert_array_equal(z["labels"], labels[:100])
    x = ds.load_testset("fashion32", n=3)
    assert torch.equal(x[:, :, 2:30, 2:30], ds.to_tensor_images(images[:3]))


def test_fashion_mnist_downloads_into_the_cache_when_the_debian_folder_is_missing(
    tiny_fashion, tmp_path, monkeypatch, server
):
    """Without the Debian package the files come from the official URL (here a local server), once, and
    are checked against the published MD5s (here those of the served test files)."""
    import hashlib

    root, images = tiny_fashion
    md5 = dict(fashion_download.FASHION_MNIST_MD5)
    for kind, nd in (("images", 3), ("labels", 1)):
        name = f"t10k-{kind}-idx{nd}-ubyte.gz"
        server.files["/" + name] = gzip.compress((root / name[:-3]).read_bytes())
        md5[name] = hashlib.md5(server.files["/" + name]).hexdigest()
    monkeypatch.setattr(fashion_download, "FASHION_MNIST_MD5", md5)
    monkeypatch.setattr(fashion, "FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    monkeypatch.setattr(fashion_download, "FASHION_MNIST_URL", server.url("/"))
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))
    test_images, labels = ds.fashion_mnist("test")
    np.testing.assert_array_equal(test_images, images["t10k"])
    np.testing.assert_array_equal(labels, [0, 1, 2])
    assert sum(server.hits.values()) == 2
    ds.fashion_mnist("test")
    assert sum(server.hits.values()) == 2  # cache hit: no new request
    with pytest.raises(RuntimeError, match="train-images-idx3-ubyte.gz"):
        ds.fashion_mnist("train")  # not served (404): a clear error naming the file
    md5["t10k-labels-idx1-ubyte.gz"] = "0" * 32  # the published checksum of another file
    (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="md5 mismatch"):
        ds.fashion_mnist("test")
    assert not (tmp_path / "cache" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").exists()  # nothing saved
