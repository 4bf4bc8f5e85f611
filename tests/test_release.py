"""The package as readers install it: one version, release files, data inside the wheel, a bare machine.

* ``version`` in ``pyproject.toml`` is the one place: ``deqir_edu.__version__``, ``deqir-edu --version``,
  CHANGELOG.md, CITATION.cff and the Colab setup cell of every chapter agree with it;
* the book and the tests need no system data set and no internet (the Debian folder is hidden and any
  download fails here);
* a wheel built from the repository and installed into a fresh virtual environment outside it loads
  both embedded models and every test set, and ``deqir-edu demo --n 1`` runs there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import deqir_edu
import deqir_edu.core.download as download_module
from deqir_edu.apps.cli import main
from deqir_edu.core.download import DownloadError, file_md5, verify
from deqir_edu.datasets import fashion, fashion_download

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
sys.path.insert(0, str(ROOT / "book" / "tools"))
import setup_cell  # noqa: E402  (book/tools/setup_cell.py)


def test_one_version_everywhere(capsys):
    assert deqir_edu.__version__ == VERSION
    assert main(["--version"]) == 0  # main returns argparse's exit code instead of raising SystemExit
    assert capsys.readouterr().out.strip() == f"deqir-edu {VERSION}"
    assert f"## {VERSION} " in (ROOT / "CHANGELOG.md").read_text()
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"version: {VERSION}" in citation and "cff-version: 1.2.0" in citation
    assert 'title: "Deep Equilibrium Diffusion Restoration with Parallel Sampling"' in citation  # preferred
    assert (ROOT / "deqir_edu" / "py.typed").is_file()


@pytest.mark.parametrize("path", setup_cell.notebooks(), ids=lambda p: p.stem)
def test_colab_installs_the_pinned_release(path):
    """Not editable, no sys.path edit, the book's own version, and a GPU runtime where a chapter needs one."""
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    code = "\n".join(line for line in first.splitlines() if not line.lstrip().startswith("#"))
    assert f"git+{setup_cell.repository()[0]}@v{VERSION}" in code
    assert '"-e"' not in code and "sys.path" not in code and "--upgrade" not in code
    assert " -e" not in code and "sys.path" not in first and "--upgrade" not in first
    for pkg in ("torch", "numpy", "ipywidgets"):  # Colab's own installs are left alone
        assert not re.search(rf"install[^\n]*\b{pkg}\b", first)
    if path.stem == "10_full_scale":
        assert nb["metadata"]["accelerator"] == "GPU" and nb["metadata"]["colab"]["gpuType"]


@pytest.fixture
def bare_machine(monkeypatch, tmp_path):
    """No Debian Fashion-MNIST, an empty cache, and every download fails."""
    monkeypatch.setattr(fashion, "FASHION_MNIST_DIR", tmp_path / "no-debian-folder")
    monkeypatch.setenv("DEQIR_EDU_CACHE", str(tmp_path / "cache"))

    def offline(*args, **kwargs):
        raise DownloadError("offline (test)")

    monkeypatch.setattr(download_module, "_stream", offline)


def test_the_book_data_needs_no_system_data_set(bare_machine):
    from deqir_edu.diffusion import fashion_mixture
    from deqir_edu.experiments import load_for_eval

    prior = fashion_mixture()  # the book's one exact prior, read from data/models
    assert prior.n_components == 256
    model, x, source = load_for_eval("gmm-fashion32", 16)  # the evaluation grid's: the same prior
    assert torch.equal(model.means, prior.means)
    assert model.n_components == 256 and x.shape == (16, 1, 32, 32) and source == "testset fashion32"
    with pytest.raises(DownloadError):  # only the full data set (deqir-edu train) would download
        fashion.fashion_subset("train", 4001)


def test_shipped_subsets_are_the_first_images_of_the_official_splits():
    for _split, (file, count) in fashion.FASHION_SUBSETS.items():
        with np.load(ROOT / "data" / "testsets" / file) as z:
            assert z["images"].shape == (count, 28, 28) and z["images"].dtype == np.uint8
            assert z["labels"].shape == (count,)
        size = (ROOT / "data" / "testsets" / file).stat().st_size
        assert size < 3 * 2**20, f"{file}: {size} bytes; keep data/ files small"
    if not (fashion.FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the Debian folder is absent: the comparison with the official files needs it")
    for split, (_file, count) in fashion.FASHION_SUBSETS.items():
        full, labels = fashion.fashion_mnist(split)
        mine, my_labels = fashion.fashion_subset(split)
        assert np.array_equal(mine, full[:count]) and np.array_equal(my_labels, labels[:count])


def test_published_md5_refuses_another_file(tmp_path):
    good = tmp_path / "t10k-labels-idx1-ubyte.gz"
    good.write_bytes(b"<html>login</html>")
    with pytest.raises(ValueError, match="md5 mismatch"):
        verify(good, md5=fashion_download.FASHION_MNIST_MD5[good.name])
    assert file_md5(good) != fashion_download.FASHION_MNIST_MD5[good.name]
    assert fashion_download.FASHION_MNIST_URL.startswith("https://")


def _wheel(tmp_path: Path) -> Path:
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)]
    try:
        import setuptools  # noqa: F401  (build with the environment's setuptools: no download)

        build.insert(5, "--no-build-isolation")
    except ImportError:
        pass
    subprocess.run(build, check=True, timeout=600, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("deqir_edu-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_outside_the_repository(tmp_path):
    """Build the wheel, install it into a fresh venv outside the repository (the dependencies come
    from this environment), then load the embedded models and the test sets and run the demo there."""
    wheel = _wheel(tmp_path)
    assert wheel.name == f"deqir_edu-{VERSION}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in (
        "deqir_edu/_data/models/fashion32.safetensors",
        "deqir_edu/_data/models/photo32.safetensors",
        "deqir_edu/_data/testsets/fashion_mnist_train4000.npz",
        "deqir_edu/py.typed",
        "deqir_edu/models/configs/adm_imagenet256.json",
        "deqir_edu/training/configs/fashion32.json",
    ):
        assert f in names, f
    size_mb = wheel.stat().st_size / 2**20
    assert size_mb < 40, f"wheel is {size_mb:.1f} MB"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # torch, numpy, ... from this environment (a .pth adds its site-packages, not its editable install)
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, timeout=300
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEQIR_EDU_")}
    env.update(HOME=str(home), DEQIR_EDU_CACHE=str(home / "cache"), TQDM_DISABLE="1", MPLBACKEND="Agg")
    check = (
        "import deqir_edu as dq, pathlib;"
        "from deqir_edu.core import data_dir;"
        "assert 'site-packages' in dq.__file__, dq.__file__;"
        "assert pathlib.Path(data_dir()).parts[-2:] == ('deqir_edu', '_data'), data_dir();"
        "[dq.load_model(m) for m in ('fashion32', 'photo32')];"
        "print([tuple(dq.load_testset(s).shape) for s in ('fashion32', 'photo32', 'photo256')]);"
        "print(dq.fashion_mixture().n_components)"
    )
    out = subprocess.run([str(python), "-c", check], cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "(100, 1, 32, 32)" in out.stdout and out.stdout.strip().endswith("256")
    demo = subprocess.run(
        [str(bindir / "deqir-edu"), "demo", "--n", "1", "--out", str(home / "demo.png")],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert demo.returncode == 0, demo.stderr
    assert "model: fashion32" in demo.stdout and (home / "demo.png").is_file()
    assert torch.__version__  # the venv used this environment's torch
