"""The notebooks that Colab, Jupyter and the sites' download buttons serve, generated from the chapters.

    python book/tools/editions.py           # (re)write colab/instructor/book/*.ipynb and colab/student/book/*.ipynb
    python book/tools/editions.py --check   # exit 1, naming the stale files, if they are out of sync
    python book/tools/editions.py --out DIR # write DIR/instructor/book/... and DIR/student/book/... instead

Both editions are the chapters of ``_toc.yml`` with their MyST Markdown turned into plain Markdown
(``myst_markdown.py``: numbered exercises, proofs, algorithms and admonitions as headed blocks, citations as
text, equation references as the site's numbers), the stored outputs and the Colab setup cell kept.
The **instructor** edition keeps everything; the **student** edition drops every ``solution`` directive
and every instructor-check code cell (``# Instructor check``, tagged ``remove-cell`` +
``nbval-check-output``), with its outputs; the exercise stubs stay. ``book/build.sh`` points each site's
Colab buttons at its edition and copies it over the site's ``_sources`` (the download button).
Run this after editing a chapter and commit the result; ``tests/test_editions.py`` checks it is in sync.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat
import setup_cell  # book/tools/setup_cell.py (the TOC and the setup cell); book/tools must be on sys.path
import yaml
from myst_markdown import HEADING, Converter, Refs, read_bib  # book/tools/myst_markdown.py

from deqir_edu.core.files import write_text

ROOT = setup_cell.ROOT
EDITIONS = ("instructor", "student")
OUT = ROOT / "colab"  # colab/<edition>/book/<chapter>.ipynb, the repository paths the Colab buttons open


def is_instructor_check(cell: nbformat.NotebookNode) -> bool:
    """A code cell that runs reference solutions: removed from the site, and from the student edition."""
    tags = cell.metadata.get("tags", [])
    return cell.cell_type == "code" and (
        cell.source.lstrip().startswith("# Instructor check") or {"remove-cell", "nbval-check-output"} <= set(tags)
    )


def chapter_numbers() -> dict[Path, int | None]:
    """Every TOC file and its chapter number on the site (numbered parts count on across parts)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    files = iter(setup_cell.toc_files())
    out: dict[Path, int | None] = {next(files): None}  # the root page is not numbered
    number = 0
    for part in toc.get("parts", [{"chapters": toc.get("chapters", []), "numbered": toc.get("numbered")}]):
        for _ in part.get("chapters", []):
            if part.get("numbered"):
                number += 1
            out[next(files)] = number if part.get("numbered") else None
    return out


def title(path: Path) -> str:
    """The first ``#`` heading of a notebook or markdown page."""
    if path.suffix == ".ipynb":
        text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    else:
        text = path.read_text(encoding="utf8")
    found = [h["title"] for line in text.splitlines() if (h := HEADING.match(line)) and len(h["hashes"]) == 1]
    return found[0] if found else path.stem


def render(
    path: Path, chapter: int | None, refs: Refs, student: bool, collect: bool = False, problems: list[str] | None = None
) -> str:
    """One chapter as one edition's notebook, serialised (nbformat's stable JSON); fence problems go to ``problems``."""
    nb = nbformat.read(path, as_version=4)
    conv = Converter(refs, chapter, student, collect)
    cells = []
    for cell in nb.cells:
        if student and is_instructor_check(cell):
            continue
        if cell.cell_type == "markdown":
            try:
                text = conv.cell(cell.source)
            except KeyError as err:
                raise SystemExit(f"{path.relative_to(ROOT)}: {err.args[0]}") from None
            if not text.strip():
                continue  # a cell that held only a solution
            cell = copy.deepcopy(cell)
            cell.source = text
        cells.append(cell)
    if problems is not None:
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in dict.fromkeys(conv.problems)]
    if refs_cell := conv.references():
        cells.append(nbformat.v4.new_markdown_cell(refs_cell, id="references"))
    nb.cells = cells
    nb.metadata["deqir_edu"] = {
        "edition": "student" if student else "instructor",
        "generated_from": str(path.relative_to(ROOT)),
        "by": "book/tools/editions.py",
    }
    return nbformat.writes(nb) + "\n"


def editions(out: Path = OUT) -> tuple[dict[Path, str], list[str]]:
    """``{target path: notebook text}`` for both editions of every chapter notebook in the TOC, and the
    chapters' malformed fences (a solution whose fence an inner code block closes leaks its end)."""
    numbers = chapter_numbers()
    refs = Refs(bib=read_bib(ROOT / "references.bib"))
    url, branch = setup_cell.repository()
    for path in numbers:  # a chapter links to its sibling notebook, a markdown page to the repository
        name = str(path.relative_to(ROOT).with_suffix(""))
        refs.docs[name] = refs.docs[path.stem] = title(path)
        for ext in (".md", ".ipynb"):
            local = path.suffix == ".ipynb" and path.parent == ROOT / "book"
            refs.links[path.stem + ext] = path.name if local else f"{url}/blob/{branch}/{path.relative_to(ROOT)}"
    chapters = [p for p in numbers if p.suffix == ".ipynb"]
    problems: list[str] = []
    for path in chapters:  # first pass: numbers and labels of every chapter
        render(path, numbers[path], refs, student=False, collect=True, problems=problems)
    texts = {
        out / edition / path.relative_to(ROOT): render(path, numbers[path], refs, edition == "student")
        for edition in EDITIONS
        for path in chapters
    }
    return texts, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report generated notebooks that are out of sync")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the editions (default: colab/)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    wanted, problems = editions(out)
    for problem in problems:
        print(f"editions.py: warning: {problem}", file=sys.stderr)
    existing = {p for edition in EDITIONS for p in (out / edition).rglob("*.ipynb")}
    stale = sorted(p for p, text in wanted.items() if not p.is_file() or p.read_text(encoding="utf8") != text)
    orphans = sorted(existing - set(wanted))
    shown = [str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in stale + orphans]
    if args.check:
        if shown:
            print(f"out of sync with the chapters: {', '.join(shown)} (run `python book/tools/editions.py`)")
            return 1
        return 0
    for path in stale:
        write_text(path, wanted[path])  # atomic: temporary file, then rename
    for path in orphans:
        path.unlink()
    print(f"editions.py: {len(stale)} written, {len(orphans)} removed, {len(wanted) - len(stale)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
