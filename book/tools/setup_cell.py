"""The first cell of every chapter, generated from ``_config.yml`` (the one place the repository is named)
and ``pyproject.toml`` (the one place the version is set).

    python book/tools/setup_cell.py          # rewrite the setup cell (and Colab metadata) of every chapter
    python book/tools/setup_cell.py --check  # exit 1 if a chapter's setup cell is out of date

The cell does nothing special outside Colab except disabling progress bars and choosing the device.
On Colab (``"google.colab" in sys.modules``) it installs the package at the book's own version, the
release tag ``v<version>`` of the repository: not editable (an editable install is not visible to the
running kernel) and without touching Colab's torch, numpy or ipywidgets (they satisfy the requirements).
It then enables the widget manager for the ipywidgets explorers and selects the GPU if the runtime has
one.  Chapters in ``GPU_CHAPTERS`` declare a GPU runtime in their notebook metadata (Colab reads it).
No other cell of the book installs anything.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
TAG = "setup"
TAGS = [TAG, "remove-cell"]  # the rendered site explains running in the introduction instead

GPU_CHAPTERS = {"10_full_scale"}  # notebooks whose Colab metadata asks for a GPU runtime

TEMPLATE = """\
# Setup: run this cell first. On Google Colab it installs deqir-edu {version}, the
# release of this book (tag v{version} of {url})
# and uses the GPU if the runtime has one; elsewhere install the package first with
# `pip install -e ".[book]"` from a clone of the repository.
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars in the book
if "google.colab" in sys.modules:
    import subprocess

    # a pinned release, not editable (visible to this kernel at once); Colab's torch,
    # numpy and ipywidgets already satisfy the requirements and stay as they are
    release = "deqir-edu @ git+{url}@v{version}"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", release], check=True)
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets explorers

import torch

import deqir_edu

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(f"deqir_edu {{deqir_edu.__version__}} | torch {{torch.__version__}} | {{DEVICE}}")"""


def repository() -> tuple[str, str]:
    """``(url, branch)`` from ``_config.yml``."""
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf8"))
    repo = cfg["repository"]
    return str(repo["url"]), str(repo.get("branch", "main"))


def version() -> str:
    """``version`` of ``pyproject.toml``: the release the setup cell installs."""
    found = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf8"), re.MULTILINE)
    if found is None:
        raise SystemExit('pyproject.toml has no version = "..." line')
    return found.group(1)


def setup_source() -> str:
    """Source of the setup cell for the repository named in ``_config.yml`` at the version of ``pyproject.toml``."""
    url, _ = repository()
    return TEMPLATE.format(url=url, version=version())


def colab_metadata(path: Path) -> dict:
    """The notebook metadata Colab reads: a GPU runtime for the chapters in ``GPU_CHAPTERS``."""
    if path.stem in GPU_CHAPTERS:
        return {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}
    return {}


def toc_files() -> list[Path]:
    """Every file listed in ``_toc.yml`` (root first), resolved to an existing path if there is one."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    names = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    out = []
    for name in names:
        matches = [ROOT / f"{name}{ext}" for ext in (".ipynb", ".md") if (ROOT / f"{name}{ext}").exists()]
        out.append(matches[0] if matches else ROOT / name)
    return out


def notebooks() -> list[Path]:
    return [p for p in toc_files() if p.suffix == ".ipynb"]


def is_current(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0] if nb.cells else None
    wanted = colab_metadata(path)
    return bool(
        first is not None
        and first.cell_type == "code"
        and first.source == setup_source()
        and first.metadata.get("tags", []) == TAGS
        and all(nb.metadata.get(k) == v for k, v in wanted.items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date setup cells")
    args = parser.parse_args(argv)
    stale = []
    for path in notebooks():
        if is_current(path):
            continue
        stale.append(path)
        if args.check:
            continue
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0] if nb.cells else None
        if first is not None and first.cell_type == "code" and TAG in first.metadata.get("tags", []):
            first.source = setup_source()
            first.metadata["tags"] = list(TAGS)
        else:
            cell = nbformat.v4.new_code_cell(setup_source())
            cell.metadata["tags"] = list(TAGS)
            nb.cells.insert(0, cell)
        nb.metadata.update(colab_metadata(path))
        nbformat.write(nb, path)
        print(f"updated {path.relative_to(ROOT)} (re-execute it)")
    if args.check and stale:
        print("out of date:", ", ".join(str(p.relative_to(ROOT)) for p in stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
