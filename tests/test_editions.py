"""The generated Colab/Jupyter editions (``book/tools/editions.py``) and what each site serves.

* ``colab/`` is in sync with the chapters, and the chapters' fences are well formed (a solution whose
  fence an inner code block closes shows its end on both sites);
* the student notebooks hold no text that only a solution or an instructor check holds, the instructor
  notebooks hold all of it, the exercise stubs and the setup cell are kept, and no MyST syntax is left;
* the student site, every file under ``_build/html`` (pages, ``_sources``, ``searchindex.js``), holds no
  solution text either; each site's Colab buttons open its edition, its download button serves it, and the
  numbers of the notebooks (sections, exercises, equations) are those of the site.

"Solution text" is found independently of the tool: the body of every ``{solution}`` fence, and the code
and printed output of every instructor-check cell, cut into runs of ``RUN`` words; a run that also occurs
in what a student may see (the rest of the chapter) is not distinctive and is ignored.
"""

from __future__ import annotations

import html as html_module
import importlib
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "tools"))
editions = importlib.import_module("editions")  # book/tools/editions.py
setup_cell = importlib.import_module("setup_cell")
test_book = importlib.import_module("test_book")  # tests/test_book.py, for its cached `_build`

CHAPTERS = setup_cell.notebooks()
RUN = 6  # words per run
STUB = "raise NotImplementedError  # your code here"
SOLUTION_OPEN = re.compile(r"^[ \t]*(`{3,}|:{3,})\{solution\}")
LITERAL_MYST = re.compile(
    r"(?<![A-Za-z\\])\{(?:prf:[a-z]+|exercise|solution[-a-z]*|cite(?::[a-z]+)?|eq|numref|ref|"
    r"doc|math|admonition|note|warning|tip|important|dropdown|figure|glue(?::[a-z]+)?|bibliography)\}"
    r"|^[ \t]*(?:`{3,}|:{3,})\{|^\([^()\s]+\)=\s*$|\$\$[ \t]*\([^()\s]+\)[ \t]*$",
    re.MULTILINE,
)


def _is_check(cell: nbformat.NotebookNode) -> bool:
    tags = set(cell.metadata.get("tags", []))
    return cell.cell_type == "code" and (
        cell.source.lstrip().startswith("# Instructor check") or {"remove-cell", "nbval-check-output"} <= tags
    )


def _outputs(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        for mime in ("text/plain", "text/html", "text/markdown", "text/latex"):
            value = out.get("data", {}).get(mime, "")
            parts.append("".join(value) if isinstance(value, list) else value)
    return "\n".join(parts)


def _split_solutions(markdown: str) -> tuple[str, str]:
    """``(markdown without its solution fences, the solution bodies)``, as MyST closes fences."""
    kept, solutions, lines, i = [], [], markdown.splitlines(), 0
    while i < len(lines):
        m = SOLUTION_OPEN.match(lines[i])
        if m is None:
            kept.append(lines[i])
            i += 1
            continue
        close = re.compile(rf"[ \t]*{re.escape(m[1][0])}{{{len(m[1])},}}[ \t]*")
        j = next((k for k in range(i + 1, len(lines)) if close.fullmatch(lines[k])), len(lines))
        solutions += lines[i + 1 : j]
        i = j + 1
    return "\n".join(kept), "\n".join(solutions)


def _runs(text: str) -> set[tuple[str, ...]]:
    """Runs of ``RUN`` words; numbers are left out, as the site and the notebooks number what the source labels."""
    words = re.findall(r"[a-z]\w*", text.lower())
    return {tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1)}


def _notebook_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source + "\n" + _outputs(c) for c in nb.cells)


def _secret_runs() -> dict[str, set[tuple[str, ...]]]:
    """Per chapter: the runs of words of its solutions and instructor checks that no chapter shows otherwise."""
    secrets, visible = {}, []
    for path in CHAPTERS:
        secret = []
        for cell in nbformat.read(path, as_version=4).cells:
            if _is_check(cell):
                secret.append(cell.source + "\n" + _outputs(cell))
            elif cell.cell_type == "markdown":
                kept, solutions = _split_solutions(cell.source)
                visible.append(kept)
                secret.append(solutions)
            else:
                visible.append(cell.source + "\n" + _outputs(cell))
        secrets[path.stem] = _runs("\n".join(secret))
    shown = _runs("\n".join(visible))
    return {name: runs - shown for name, runs in secrets.items()}


SECRETS = _secret_runs()
ALL_SECRETS = set().union(*SECRETS.values())


def _leaks(text: str, secrets: set[tuple[str, ...]] = ALL_SECRETS) -> list[str]:
    return sorted(" ".join(run) for run in _runs(text) & secrets)[:5]


def _edition(edition: str, path: Path) -> nbformat.NotebookNode:
    return nbformat.read(editions.OUT / edition / path.relative_to(ROOT), as_version=4)


# ------------------------------------------------------------------------------------------------
# (a) the committed notebooks
# ------------------------------------------------------------------------------------------------
def test_editions_in_sync(capsys: pytest.CaptureFixture[str]) -> None:
    assert editions.main(["--check"]) == 0, capsys.readouterr().out


def test_check_names_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert editions.main(["--check", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "student/book/01_inverse_problems.ipynb" in out, out


def test_fences_are_well_formed() -> None:
    _, problems = editions.editions()
    assert not problems, "\n".join(problems)


def test_the_detector_sees_every_solution() -> None:
    """Not vacuous: every chapter with exercises has secret runs, and the instructor edition holds them all."""
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        if any(SOLUTION_OPEN.match(line) for c in nb.cells for line in c.source.splitlines()):
            assert len(SECRETS[path.stem]) > 20, f"{path.name}: too little solution text found"
            missing = SECRETS[path.stem] - _runs(_notebook_text(_edition("instructor", path)))
            assert len(missing) < 0.2 * len(SECRETS[path.stem]), f"{path.name}: instructor edition lacks solutions"


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_student_notebook_holds_no_solution(path: Path) -> None:
    nb = _edition("student", path)
    leaks = _leaks(_notebook_text(nb))
    assert not leaks, f"colab/student/{path.relative_to(ROOT)} shows solution text: {leaks}"
    assert not any(_is_check(c) for c in nb.cells)
    assert not re.search(r"^#+ Solution to ", "\n".join(c.source for c in nb.cells), re.MULTILINE)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_editions_keep_stubs_setup_cell_and_outputs(path: Path) -> None:
    source = nbformat.read(path, as_version=4)
    for edition in editions.EDITIONS:
        nb = _edition(edition, path)
        first = nb.cells[0]
        assert first.source == source.cells[0].source and "setup" in first.metadata.get("tags", []), "setup cell"
        code = {c.source: c.outputs for c in nb.cells if c.cell_type == "code"}
        for cell in source.cells:
            if cell.cell_type == "code" and (edition == "instructor" or not _is_check(cell)):
                assert code.get(cell.source) == cell.outputs, f"{edition}: code cell missing or changed:\n{cell.source}"
        stubs = [s for s in code if STUB in s]
        assert len(stubs) == sum(STUB in c.source for c in source.cells)
        assert all(re.search(r"^check_\w+\(", s, re.MULTILINE) for s in stubs), "a stub lost its self-check call"
        n = len(re.findall(r"^#### Exercise ", "\n".join(c.source for c in nb.cells), re.MULTILINE))
        assert n == sum(len(re.findall(r"^(?:`{3,}|:{3,})\{exercise\}", c.source, re.MULTILINE)) for c in source.cells)


@pytest.mark.parametrize("edition", editions.EDITIONS)
def test_no_myst_left(edition: str) -> None:
    for path in CHAPTERS:
        for cell in _edition(edition, path).cells:
            if cell.cell_type == "markdown":
                # code blocks may show anything
                text = re.sub(r"^(`{3,}).*?^\1", "", cell.source, flags=re.MULTILINE | re.DOTALL)
                hits = LITERAL_MYST.findall(text)
                assert not hits, f"colab/{edition}/{path.relative_to(ROOT)}: MyST left {hits}:\n{cell.source[:500]}"
                assert not re.search(r"^: ", text, re.MULTILINE), f"{path.name}: a definition list left"
                for target in re.findall(r"\]\(([^()\s#]+)", text):  # links to other pages must still work
                    folder = editions.OUT / edition / "book"
                    assert "://" in target or (folder / target).is_file(), f"{path.name}: broken link {target}"


CONSTRUCTS = r"""## Start
(sec-a)=
## A section
:::{note}
See {cite:t}`walker2011anderson`, {cite:p}`sohl2015deep,ho2020ddpm`, {ref}`sec-a`, {numref}`thm-a`, {eq}`eq-a`.
:::
```{prf:theorem} Big
:label: thm-a
$$ a = b $$ (eq-a)
```
````{exercise} Ex
:label: ex-a
Do it.
````
```{solution} ex-a
:class: dropdown
Secret.
```
term
: definition
"""


def test_converter_renders_each_construct() -> None:
    refs = editions.Refs(bib=editions.read_bib(ROOT / "references.bib"))
    editions.Converter(refs, 3, student=False, collect=True).cell(CONSTRUCTS)
    instructor = editions.Converter(refs, 3, student=False).cell(CONSTRUCTS)
    for part in [
        "## 3.2. A section",
        "**Note**",
        "See Walker and Ni (2011), (Ho et al., 2020; Sohl-Dickstein et al.,",
        "A section, Theorem 3.1, (3.1).",
        "**Theorem 3.1 (Big)**",
        "$$ a = b \\tag{3.1}\n$$",
        "#### Exercise 3.1 (Ex)",
        "#### Solution to Exercise 3.1 (Ex)\n\nSecret.",
        "- **term**: definition",
    ]:
        assert part in instructor, f"{part!r} not in\n{instructor}"
    student = editions.Converter(refs, 3, student=True).cell(CONSTRUCTS)
    assert "Secret" not in student and "Solution" not in student and "#### Exercise 3.1 (Ex)" in student


# ------------------------------------------------------------------------------------------------
# (b) the two sites
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both sites, built by test_book's cached ``_build`` into the folders its own fixture takes first,
    so a session running both files builds each site once."""
    out = {}
    for variant in ("student", "instructor"):
        folder = tmp_path_factory.getbasetemp() / f"book-{variant}0"
        folder.mkdir(exist_ok=True)
        rc, log, _ = test_book._build(variant, str(folder))
        assert rc == 0, f"{variant} build failed:\n{log[-6000:]}"
        out[variant] = folder / "_build" / "html"
    return out


def _page_text(page: Path) -> str:
    raw = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page.read_text(encoding="utf8"), flags=re.DOTALL)
    return html_module.unescape(re.sub(r"<[^>]+>", " ", raw))


def test_student_site_holds_no_solution(sites: dict[str, Path]) -> None:
    """Every page, source and download; what the pages not made from chapters show (API docstrings) is public."""
    site = sites["student"]
    chapters = {site / p.relative_to(ROOT).with_suffix(".html") for p in CHAPTERS}
    public = _runs("\n".join(_page_text(page) for page in site.rglob("*.html") if page not in chapters))
    files = sorted(site.rglob("*.html")) + sorted((site / "_sources").rglob("*"))
    for file in (f for f in files if f.is_file()):
        if file.suffix == ".html":
            text = _page_text(file)
        elif file.suffix == ".ipynb":
            text = _notebook_text(nbformat.read(file, as_version=4))
        else:
            text = file.read_text(encoding="utf8", errors="replace")
        leaks = _leaks(text, ALL_SECRETS - public)
        assert not leaks, f"student site: {file.relative_to(site)} shows solution text: {leaks}"
    assert _leaks(_page_text(sites["instructor"] / "book" / "01_inverse_problems.html")), "detector is blind"


def test_student_search_index_holds_no_solution_word(sites: dict[str, Path]) -> None:
    """Words only solutions use (stemmed as Sphinx indexes them) are in the instructor index, not the student's."""
    import snowballstemmer

    stem = snowballstemmer.stemmer("porter").stemWord
    chapters = {sites["student"] / p.relative_to(ROOT).with_suffix(".html") for p in CHAPTERS}
    texts = [_notebook_text(_edition("student", p)) for p in CHAPTERS]  # what students see, and other pages
    texts += [_page_text(page) for page in sites["student"].rglob("*.html") if page not in chapters]
    visible = {w for text in texts for w in re.findall(r"\w+", text.lower())}
    words = {w for run in ALL_SECRETS for w in run if w.isalpha() and len(w) > 3} - visible

    def terms(variant: str) -> set[str]:
        text = (sites[variant] / "searchindex.js").read_text(encoding="utf8")
        return set(json.loads(text[text.index("(") + 1 : text.rindex(")")])["terms"])

    secret = {stem(w) for w in words} - {stem(w) for w in visible}
    assert secret & terms("instructor"), "no solution-only word in the instructor index: the check is blind"
    assert not secret & terms("student"), f"student search index has solution words {sorted(secret & terms('student'))}"


@pytest.mark.parametrize("variant", ["student", "instructor"])
def test_colab_and_download_serve_the_edition(sites: dict[str, Path], variant: str) -> None:
    wanted, _ = editions.editions(editions.OUT)
    for path in CHAPTERS:
        rel = path.relative_to(ROOT)
        page = (sites[variant] / rel.with_suffix(".html")).read_text(encoding="utf8")
        colab = re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', page)
        url, branch = setup_cell.repository()
        expected = f"https://colab.research.google.com/github/{url.split('github.com/')[1]}/blob/{branch}/colab/{variant}/{rel}"
        assert colab == [expected], f"{variant}/{rel}: Colab links {colab}"
        assert (ROOT / "colab" / variant / rel).is_file(), f"the Colab link of {rel} opens a missing file"
        assert f'href="../_sources/{rel}"' in page, f"{variant}/{rel}: no download button"
        served = (sites[variant] / "_sources" / rel).read_text(encoding="utf8")
        assert served == wanted[ROOT / "colab" / variant / rel], f"{variant}: the download of {rel} is not its edition"


def test_numbers_are_the_sites(sites: dict[str, Path]) -> None:
    for path in CHAPTERS:
        page = (sites["instructor"] / path.relative_to(ROOT).with_suffix(".html")).read_text(encoding="utf8")
        text = "\n".join(c.source for c in _edition("instructor", path).cells if c.cell_type == "markdown")
        site_eqs = re.findall(r'<span class="eqno">\(([^)]+)\)', page)
        assert re.findall(r"\\tag\{([^}]+)\}", text) == site_eqs, f"{path.name}: equation numbers"
        for label, number in re.findall(r'href="#equation-([^"]+)">\(([^)]+)\)</a>', page):
            assert f"({number})" in text, f"{path.name}: reference to {label} is not ({number})"
        kinds = r"(?:Exercise|Proposition|Algorithm|Theorem|Lemma|Definition|Corollary|Remark|Example)"
        site_heads = re.findall(rf'<span class="caption-number">({kinds} [\d.]+) </span>', page)
        heads = re.findall(rf"^(?:#### |\*\*)({kinds} [\d.]+) ", text, re.MULTILINE)
        assert heads == site_heads, f"{path.name}: exercise/proposition/algorithm numbers"
        site_sections = re.findall(r'<h\d[^>]*><span class="section-number">([\d.]+) </span>', page)
        assert re.findall(r"^#+ ([\d.]+) ", text, re.MULTILINE) == site_sections, f"{path.name}: section numbers"
