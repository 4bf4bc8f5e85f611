"""The book: table of contents, committed notebooks, both site builds, and the rendered page in Chromium.

The notebooks themselves are re-executed by nbval in a separate command (``pytest --nbval-lax book/``);
here we check what is committed and what the site build makes of it:

* every file in ``_toc.yml`` exists, every chapter notebook is in the TOC, was executed top to bottom
  with no error, starts with the generated Colab setup cell and installs nothing elsewhere;
* every chapter has 2-4 exercises, each with a dropdown solution; every citation key is in references.bib;
* ``jupyter-book build . -W --keep-going`` succeeds for the student and the instructor variant
  (``book/build.sh``), solutions are hidden only in the student site, and MathJax is served by the site;
* headless Chromium (Debian package ``chromium``) loads the Proposition 1 chapter from a local HTTP
  server with every other host unreachable, and finds all math typeset and every figure decoded.
  Without Chromium this test skips, unless ``DEQIR_EDU_REQUIRE_BROWSER=1`` (CI) makes it fail.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "tools"))
import setup_cell  # noqa: E402  (book/tools/setup_cell.py)

PROP1_PAGE = "book/04_proposition1"  # the chapter the browser check loads
CHAPTERS = setup_cell.notebooks()
INSTALL = re.compile(r"(^|\s)[!%]\s*pip\b|pip install|git clone|conda install|apt-get", re.M)
EXERCISE = re.compile(r"^(`{3,}|:{3,})\{exercise\}", re.M)
SOLUTION = re.compile(r"^(`{3,}|:{3,})\{solution\}\s*(\S+)\n((?::\w[^\n]*\n)*)", re.M)
CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _markdown(nb: nbformat.NotebookNode) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


# ------------------------------------------------------------------------------------------------
# (a) table of contents and committed notebooks
# ------------------------------------------------------------------------------------------------
def test_every_toc_entry_exists() -> None:
    missing = [str(p.relative_to(ROOT)) for p in setup_cell.toc_files() if not p.exists()]
    assert not missing, f"listed in _toc.yml but missing: {missing}"
    assert (ROOT / PROP1_PAGE).with_suffix(".ipynb") in CHAPTERS, "the Proposition 1 chapter must be in the TOC"


def test_every_notebook_is_in_the_toc() -> None:
    committed = sorted((ROOT / "book").glob("*.ipynb"))
    orphans = [p.name for p in committed if p not in CHAPTERS]
    assert not orphans, f"notebooks in book/ but not in _toc.yml: {orphans}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_notebook_was_executed_with_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name}: cells {[i for i, n in enumerate(counts) if n is None]} never ran"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), f"{path.name}: not run top to bottom"
    assert sum(len(c.outputs) for c in code) >= len(code) // 2, f"{path.name}: outputs were stripped"
    errors = [o.ename for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: committed with errors {errors}"
    images = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert images >= 1, f"{path.name}: a chapter without a single figure"
    for cell in code:  # the checked cells must have the text nbval compares
        if "nbval-check-output" in cell.metadata.get("tags", []):
            text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert text.strip(), f"{path.name}: nbval-check-output cell without printed output:\n{cell.source}"


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_setup_cell_first_and_only_installer(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert setup_cell.is_current(path), (
        f"{path.name}: first cell is not the current setup cell; run `python book/tools/setup_cell.py` and re-execute"
    )
    installers = [i for i, c in enumerate(nb.cells[1:], 1) if c.cell_type == "code" and INSTALL.search(c.source)]
    assert not installers, f"{path.name}: cells {installers} install something; only the setup cell may"
    assert "google.colab" in nb.cells[0].source and setup_cell.repository()[0] in nb.cells[0].source


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_exercises_have_dropdown_solutions(path: Path) -> None:
    text = _markdown(nbformat.read(path, as_version=4))
    labels = re.findall(r"^(?:`{3,}|:{3,})\{exercise\}[^\n]*\n(?::\w[^\n]*\n)*?:label: (\S+)", text, re.M)
    n = len(EXERCISE.findall(text))
    if path.stem.startswith("00_"):
        assert n <= 4, f"{path.name}: at most 4 exercises"
    else:
        assert 2 <= n <= 5, f"{path.name}: {n} exercises, the book asks for 2-5 per chapter"
    assert len(labels) == n, f"{path.name}: every exercise needs a :label:"
    solutions = {label: options for _, label, options in SOLUTION.findall(text)}
    for label in labels:
        assert label in solutions, f"{path.name}: exercise {label} has no solution"
        assert ":class: dropdown" in solutions[label], f"{path.name}: solution of {label} is not a dropdown"


def test_citations_resolve() -> None:
    bib = (ROOT / "references.bib").read_text(encoding="utf8")
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, re.M))
    cited = set()
    for path in setup_cell.toc_files():
        text = _markdown(nbformat.read(path, as_version=4)) if path.suffix == ".ipynb" else path.read_text()
        cited |= {k.strip() for group in CITE.findall(text) for k in group.split(",")}
    assert "cao2024deqir" in cited
    assert not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


# ------------------------------------------------------------------------------------------------
# (b) both site builds, with -W --keep-going
# ------------------------------------------------------------------------------------------------
@functools.cache
def _build(variant: str, out: str) -> tuple[int, str, float]:
    cmd = ["bash", str(ROOT / "book" / "build.sh"), variant, "--out", out, "-W", "--keep-going", "-q"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


@pytest.fixture(scope="session")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("jupyter-book") is None:
        pytest.fail("jupyter-book is not installed: pip install -e '.[book]'")
    if shutil.which("npm") is None and not (ROOT / "node_modules" / "mathjax").is_dir():
        pytest.fail("npm is needed once to install mathjax@3 (apt-get install npm)")
    out = {}
    for variant in ("student", "instructor"):
        folder = tmp_path_factory.mktemp(f"book-{variant}")
        rc, log, seconds = _build(variant, str(folder))
        assert rc == 0, f"{variant} build failed (-W turns warnings into errors):\n{log[-6000:]}"
        print(f"{variant} build: {seconds:.1f} s")
        out[variant] = folder / "_build" / "html"
    return out


def test_both_builds_succeed(sites: dict[str, Path]) -> None:
    for variant, html in sites.items():
        for path in setup_cell.toc_files():
            page = html / path.relative_to(ROOT).with_suffix(".html")
            assert page.is_file(), f"{variant}: {page.name} was not built"


_LITERAL_MYST = re.compile(
    r"(?<![A-Za-z\\])\{(prf:[a-z]+|exercise|solution[-a-z]*|cite:[a-z]+|cite|eq|numref|ref|doc|math|admonition|"
    r"note|warning|tip|figure|glue(?::[a-z]+)?|toggle|dropdown|code-cell|bibliography)\}"
)


def test_no_literal_myst_on_rendered_pages(sites: dict[str, Path]) -> None:
    """A broken directive renders as its own source text without a build warning (a code span in a
    {prf:algorithm} title did, and its closing fence swallowed the next section): no page may show one."""
    import html as html_module

    for variant, site in sites.items():
        for page in sorted(site.rglob("*.html")):
            raw = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page.read_text(encoding="utf8"), flags=re.S)
            text = html_module.unescape(re.sub(r"<[^>]+>", " ", raw))
            hits = sorted(set(_LITERAL_MYST.findall(text)))
            assert not hits, f"{variant}: {page.relative_to(site)} shows literal MyST {hits}"


_LITERAL_MATH = re.compile(r"\$\$?\s*\\?[A-Za-z{]")  # a "$" that MathJax did not take: "$\Delta", "$x"


def test_no_literal_dollar_math_on_rendered_pages(sites: dict[str, Path]) -> None:
    """Inline math broken by the Markdown around it renders as "$...$" text and breaks every formula after it on the
    page, without a build warning (chapter 6: a formula wrapped onto a line starting with "+", a list item)."""
    import html as html_module

    drop = r"<script.*?</script>|<style.*?</style>|<pre.*?</pre>|<code.*?</code>|<div class=\"highlight.*?</div>"
    for variant, site in sites.items():
        for page in sorted(site.rglob("*.html")):
            raw = re.sub(drop, " ", page.read_text(encoding="utf8"), flags=re.S)
            text = html_module.unescape(re.sub(r"<[^>]+>", " ", raw))
            hits = [text[max(0, m.start() - 40) : m.end() + 40] for m in _LITERAL_MATH.finditer(text)]
            assert not hits, f"{variant}: {page.relative_to(site)} shows unrendered math: {hits[:3]}"


def test_solutions_hidden_only_in_student_build(sites: dict[str, Path]) -> None:
    for path in CHAPTERS:
        if path.stem.startswith("00_"):
            continue
        name = path.relative_to(ROOT).with_suffix(".html")
        student = (sites["student"] / name).read_text(encoding="utf8")
        instructor = (sites["instructor"] / name).read_text(encoding="utf8")
        assert 'class="solution dropdown' in instructor, f"{name}: instructor build shows no solution"
        assert 'class="solution' not in student, f"{name}: student build leaks a solution"
        assert student.count('class="exercise') == instructor.count('class="exercise') > 0


def test_mathjax_served_locally(sites: dict[str, Path]) -> None:
    for variant, html in sites.items():
        assert (html / "_static" / "mathjax" / "tex-chtml-full.js").stat().st_size > 500_000
        assert list((html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
        for page in html.rglob("*.html"):
            text = page.read_text(encoding="utf8")
            remote = re.findall(r'<(?:script|link|img)\b[^>]*\b(?:src|href)="(?:https?:)?//[^"]*"', text)
            remote = [r for r in remote if "<link" not in r or 'rel="stylesheet"' in r or "preload" in r]
            assert not remote, f"{variant}/{page.name} loads from the network: {remote}"
            if 'class="math notranslate' in text:  # Sphinx loads MathJax only on pages with math in the body
                assert re.search(r'<script[^>]*src="[./]*_static/mathjax/tex-chtml-full\.js', text), (
                    f"{variant}/{page.name} shows math but loads no MathJax, so raw TeX appears; "
                    "math in a chapter title (navigation) causes this: write titles without $...$"
                )


# ------------------------------------------------------------------------------------------------
# (c) the rendered Proposition 1 chapter in headless Chromium
# ------------------------------------------------------------------------------------------------
# decoded(root): every <img> under root, loaded again by the browser; width 0 = did not decode
_JS_DECODED = """
function decoded(root) {
  const srcs = Array.from(root.querySelectorAll("img")).map(i => i.src);
  return Promise.all(srcs.map(src => new Promise(res => {
    const im = new Image();
    im.onload = () => res({src, width: im.naturalWidth});
    im.onerror = () => res({src, width: 0});
    im.src = src;
  })));
}
"""
CHECK_PAGE = (
    """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" src="%s" style="width:1280px;height:1000px"></iframe>
<script>"""
    + _JS_DECODED
    + """
const frame = document.getElementById("f");
frame.addEventListener("load", async () => {
  const w = frame.contentWindow, d = frame.contentDocument, out = {};
  try {
    if (!w.MathJax || !w.MathJax.startup) { out.mathjax = "not loaded"; }
    else { await w.MathJax.startup.promise; out.mathjax = "ok"; }
    await d.fonts.ready;
    out.math = d.querySelectorAll(".math").length;
    out.typeset = d.querySelectorAll(".math mjx-container, mjx-container").length;
    out.merror = d.querySelectorAll("mjx-merror").length;
    out.fonts = Array.from(d.fonts).filter(f => f.family.includes("MJX")).map(f => f.status);
    out.images = await decoded(d);
  } catch (e) { out.error = String(e); }
  document.getElementById("result").textContent = "RESULT" + JSON.stringify(out) + "END";
});
</script></body></html>
"""
)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _dump_dom(browser: str, url: str, profile: Path, budget_ms: int = 10000) -> str:
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing but the local server
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120 + budget_ms // 1000)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_rendered_proposition_page_in_chromium(sites: dict[str, Path], tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        if os.environ.get("DEQIR_EDU_REQUIRE_BROWSER") == "1":
            pytest.fail("DEQIR_EDU_REQUIRE_BROWSER=1 but no chromium: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    html = sites["student"]
    page = f"{PROP1_PAGE}.html"
    assert (html / page).is_file()
    (html / "__render_check.html").write_text(CHECK_PAGE % page, encoding="utf8")
    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        # 1. the chapter page itself: MathJax must have replaced the math with mjx-container elements
        dom = _dump_dom(browser, f"{base}/{page}", tmp_path / "profile1")
        n_math = len(re.findall(r'class="math notranslate nohighlight"', (html / page).read_text(encoding="utf8")))
        n_typeset = dom.count("<mjx-container")
        assert n_math >= 10, f"the Proposition 1 chapter should be full of math, found {n_math} formulas"
        assert n_typeset >= n_math, f"MathJax typeset {n_typeset} of {n_math} formulas"
        assert "<mjx-merror" not in dom, "a formula failed to compile (mjx-merror in the DOM)"
        srcs = re.findall(r'<img[^>]*\ssrc="([^"]+)"', dom)
        figures = [s for s in srcs if "_images/" in s]
        assert figures, "no figures on the Proposition 1 page"
        for src in figures:
            file = (html / Path(page).parent / src.split("?")[0]).resolve()
            assert file.is_file() and file.stat().st_size > 1000, f"figure {src} missing from the site"
        # 2. a same-origin frame around it, to ask the browser what it decoded and typeset
        dom = _dump_dom(browser, f"{base}/__render_check.html", tmp_path / "profile2")
        match = re.search(r"RESULT(.*?)END", dom, re.S)
        assert match, f"the in-browser check did not finish:\n{dom[:2000]}"
        result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        print("in-browser check:", json.dumps(result)[:1500])
        assert "error" not in result, result
        assert result["mathjax"] == "ok", result
        assert result["typeset"] >= result["math"] > 0 and result["merror"] == 0, result
        assert result["fonts"] and "error" not in result["fonts"], f"MathJax fonts: {result['fonts']}"
        broken = [im["src"] for im in result["images"] if im["width"] == 0]
        assert not broken, f"images that did not decode: {broken}"
        assert sum("_images/" in im["src"] for im in result["images"]) == len(figures)
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------
# (d) the exercise self-checks accept a right answer, reject a wrong one and survive a stub
# ------------------------------------------------------------------------------------------------
def _stub(*args: object) -> None:
    raise NotImplementedError


def _ddim(x_t, eps, a_t, a_prev, eta, noise):  # type: ignore[no-untyped-def]
    x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)


def _ddnm(x_t, eps, a_t, a_prev, eta, noise, op, y):  # type: ignore[no-untyped-def]
    x0 = (x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5
    x0 = op.A_pinv(y) + x0 - op.A_pinv(op.A(x0))
    return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * ((1 - eta**2) ** 0.5 * eps + eta * noise)


def _posterior(x_t, x0, a_t, a_prev):  # type: ignore[no-untyped-def]
    beta = 1 - a_t / a_prev
    mean = a_prev**0.5 * beta / (1 - a_t) * x0 + (1 - beta) ** 0.5 * (1 - a_prev) / (1 - a_t) * x_t
    return mean, ((1 - a_prev) / (1 - a_t) * beta) ** 0.5


def _F(z, x_T, abar, Q):  # type: ignore[no-untyped-def]
    import torch

    T, sq = z.shape[0], abar.sqrt().view(-1, 1, 1, 1, 1)
    tail = torch.cat([z[1:] / sq[1:T], x_T[None] / sq[T:]]).flip(0).cumsum(0).flip(0)
    return sq[:T] * Q(tail) + z


def _bordered(G, lam):  # type: ignore[no-untyped-def]
    """[nu, alpha] of the bordered system of Algorithm 1 (the reference of the Anderson exercise)."""
    import torch

    B, n, _ = G.shape
    H = torch.zeros(B, n + 1, n + 1, dtype=G.dtype)
    H[:, 0, 1:], H[:, 1:, 0] = 1.0, 1.0
    H[:, 1:, 1:] = G @ G.transpose(1, 2) + lam * torch.eye(n, dtype=G.dtype)
    rhs = torch.zeros(B, n + 1, 1, dtype=G.dtype)
    rhs[:, 0] = 1.0
    return torch.linalg.solve(H, rhs)[:, :, 0]


def _weights(G, lam):  # type: ignore[no-untyped-def]
    return _bordered(G, lam)[:, 1:]


def _phantom(make_map, star, x_T, loss, tau, k):  # type: ignore[no-untyped-def]
    import torch

    x_T = x_T.detach().requires_grad_(True)
    F, x = make_map(x_T), star.detach()
    for _ in range(k):
        x = (1 - tau) * x + tau * F(x)
    return torch.autograd.grad(loss(x[0]).sum(), x_T)[0]


CHECKS = {  # check name -> (reference answer, a typical wrong answer)
    "check_null_space_projection": (
        lambda op, x0, y: op.A_pinv(y) + x0 - op.A_pinv(op.A(x0)),
        lambda op, x0, y: x0 - op.A_pinv(op.A(x0)),
    ),
    "check_ddim_step": (_ddim, lambda x_t, eps, a_t, a_prev, eta, noise: _ddim(x_t, eps, a_t, a_prev, 0.0, noise)),
    "check_ddpm_posterior": (_posterior, lambda x_t, x0, a_t, a_prev: (_posterior(x_t, x0, a_t, a_prev)[0], 0.0)),
    "check_ddnm_step": (
        _ddnm,
        lambda x_t, eps, a_t, a_prev, eta, noise, op, y: _ddim(x_t, eps, a_t, a_prev, eta, noise),
    ),
    "check_F": (_F, lambda z, x_T, abar, Q: _F(z, x_T, abar, Q) + Q(z)),
    "check_anderson_weights": (_weights, lambda G, lam: _weights(G, lam).flip(1)),
    "check_phantom_gradient": (
        _phantom,
        lambda make_map, star, x_T, loss, tau, k: _phantom(make_map, star, x_T, loss, 1.0, 1),
    ),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_exercise_checks(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    import deqir_edu.exercises as ex

    check = getattr(ex, name)
    right, wrong = CHECKS[name]
    assert check(right) is True, capsys.readouterr().out
    assert check(wrong) is False
    assert "[x]" in capsys.readouterr().out  # says what is wrong
    assert check(_stub) is False
    assert "not implemented yet" in capsys.readouterr().out
    assert sorted(ex.__all__) == sorted(CHECKS)


# ------------------------------------------------------------------------------------------------
# (e) what a reader sees in the committed outputs: short code lines, no stray reprs, figures that
#     fit the page (so that the book style's >= 9 px text is not shrunk)
# ------------------------------------------------------------------------------------------------
def _shown_code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code" and "remove-cell" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_visible_code_lines_fit_the_page(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    long = [(i, line) for i, c in enumerate(_shown_code_cells(nb)) for line in c.source.splitlines() if len(line) > 88]
    assert not long, f"{path.name}: code lines over 88 characters (ruff format, then wrap): {long[:3]}"


_STRAY = re.compile(
    r"^(True|False|None|<[\w.]+ (object )?at 0x[0-9a-f]+>|<matplotlib\.\S+ at 0x[0-9a-f]+>|"
    r"(Text|Line2D|\[<matplotlib)\(.*)$",
    re.S,
)


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_no_stray_outputs(path: Path) -> None:
    """A stub's `False`, a Colorbar's repr or a Text(...) under a figure are noise on the page."""
    nb = nbformat.read(path, as_version=4)
    for i, c in enumerate(_shown_code_cells(nb)):
        for out in c.get("outputs", []):
            if out.get("output_type") == "execute_result" and set(out["data"]) == {"text/plain"}:
                text = out["data"]["text/plain"].strip()
                assert not _STRAY.match(text), f"{path.name}, cell {i}: stray output {text[:60]!r}"
            assert out.get("output_type") != "error", f"{path.name}, cell {i}: an error is stored"


@pytest.mark.parametrize("path", CHAPTERS, ids=_ids(CHAPTERS))
def test_figures_fit_the_page_width(path: Path) -> None:
    import base64
    import io

    from PIL import Image

    from deqir_edu.apps.figures import PAGE_WIDTH_PX

    nb = nbformat.read(path, as_version=4)
    for i, c in enumerate(_shown_code_cells(nb)):
        for out in c.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                width = Image.open(io.BytesIO(base64.b64decode(png))).size[0]
                assert width <= PAGE_WIDTH_PX + 10, (
                    f"{path.name}, cell {i}: a figure {width} px wide is shrunk on the page (at most "
                    f"{PAGE_WIDTH_PX} px: draw it with deqir_edu.apps.figures at PAGE_WIDTH_IN)"
                )


# ------------------------------------------------------------------------------------------------
# (f) every page of both editions in headless Chromium: math typeset without errors, no literal MyST,
#     no traceback or object repr in the text, every image decodes
# ------------------------------------------------------------------------------------------------
ALL_PAGES_CHECK = (
    """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="f" style="width:1280px;height:1000px"></iframe>
<script>"""
    + _JS_DECODED
    + """
const pages = %s, frame = document.getElementById("f"), results = [];
function load(src) { return new Promise(res => { frame.onload = res; frame.src = src; }); }
(async () => {
  for (const page of pages) {
    const out = {page};
    try {
      await load(page);
      const w = frame.contentWindow, d = frame.contentDocument;
      if (w.MathJax && w.MathJax.startup) { await w.MathJax.startup.promise; out.mathjax = "ok"; }
      out.math = d.querySelectorAll(".math").length;
      out.typeset = d.querySelectorAll("mjx-container").length;
      out.merror = d.querySelectorAll("mjx-merror").length;
      const main = d.querySelector("main") || d.body;
      out.text = main.innerText;
      out.images = await decoded(main);
    } catch (e) { out.error = String(e); }
    results.push(out);
  }
  document.getElementById("result").textContent = "RESULT" + JSON.stringify(results) + "END";
})();
</script></body></html>
"""
)
_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>|<matplotlib\.[\w.]+ at 0x|Traceback \(most recent call last\)")


@pytest.mark.parametrize("variant", ["student", "instructor"])
def test_every_page_in_chromium(sites: dict[str, Path], tmp_path: Path, variant: str) -> None:
    import html as html_module

    browser = _chromium()
    if browser is None:
        if os.environ.get("DEQIR_EDU_REQUIRE_BROWSER") == "1":
            pytest.fail("DEQIR_EDU_REQUIRE_BROWSER=1 but no chromium: apt-get install -y chromium")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    site = sites[variant]
    pages = [
        p.relative_to(site).as_posix()
        for p in sorted(site.rglob("*.html"))
        if not p.name.startswith(("genindex", "search", "__")) and "_sources" not in p.parts
    ]
    assert len(pages) >= 14, pages
    (site / "__all_pages.html").write_text(ALL_PAGES_CHECK % json.dumps(pages), encoding="utf8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        dom = _dump_dom(
            browser,
            f"http://127.0.0.1:{server.server_address[1]}/__all_pages.html",
            tmp_path / "profile",
            budget_ms=8000 * len(pages),
        )
    finally:
        server.shutdown()
        server.server_close()
    match = re.search(r"RESULT(.*?)END", dom, re.S)
    assert match, f"the in-browser check did not finish:\n{dom[-2000:]}"
    results = json.loads(html_module.unescape(match.group(1)))
    assert [r["page"] for r in results] == pages
    for r in results:
        name = f"{variant}/{r['page']}"
        assert "error" not in r, (name, r.get("error"))
        if r["math"]:
            assert r.get("mathjax") == "ok", f"{name}: math but MathJax did not start"
            assert r["typeset"] >= r["math"], f"{name}: MathJax typeset {r['typeset']} of {r['math']} formulas"
        assert r["merror"] == 0, f"{name}: {r['merror']} formulas failed to compile (mjx-merror)"
        hits = sorted(set(_LITERAL_MYST.findall(r["text"])))
        assert not hits, f"{name}: literal MyST on the rendered page: {hits}"
        reprs = _REPR.findall(r["text"])
        assert not reprs, f"{name}: a traceback or object repr is shown: {reprs[:3]}"
        broken = [im["src"] for im in r["images"] if im["width"] == 0]
        assert not broken, f"{name}: images that did not decode: {broken}"
