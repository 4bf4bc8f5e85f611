"""The book's figure helpers (deqir_edu.apps.figures): readable on the site (deqir_edu.apps.figure_checks),
integer index axes, no overlapping labels, HTML tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from deqir_edu.apps import figure_checks, figures  # noqa: E402


@pytest.fixture(autouse=True)
def _style():
    figures.use_book_style()
    yield
    plt.close("all")


def _grid() -> object:
    g = torch.Generator().manual_seed(0)
    rows = [[torch.rand(1, 32, 32, generator=g) * 2 - 1 for _ in range(6)] for _ in range(5)]
    cols = ["x", "y", "A+ y", "DDNM (sequential)", "Picard, K = 20", "Anderson, K = 15"]
    return figures.image_grid(rows, [f"task {i}" for i in range(5)], cols)


def _wide_grid() -> object:
    tasks = [
        "sr2",
        "sr4",
        "sr4-bicubic",
        "deblur-gauss",
        "deblur-aniso",
        "inpaint-box",
        "inpaint-random",
        "inpaint-stripes",
        "inpaint-text",
    ]
    img = torch.zeros(1, 32, 32)
    return figures.image_grid([[img] * 9] * 3, ["x", "A+ y", "DDNM"], tasks, max_cell=0.8)


def _flat() -> object:
    imgs = [torch.zeros(3, 32, 32)] * 9
    titles = ["x (clean)"] + [
        f"y: {t}"
        for t in (
            "sr4",
            "sr4-bicubic",
            "deblur-gauss",
            "deblur-aniso",
            "inpaint-box",
            "inpaint-text",
            "colorize",
            "old-photo",
        )
    ]
    return figures.show_images(imgs, titles, ncols=9)


@pytest.mark.parametrize(
    "make",
    [
        _grid,
        _wide_grid,
        _flat,
        figures.chain_diagram,
        figures.dependency_diagram,
        lambda: figures.curves({"Picard": [1, 0.1, 0.01], "Anderson": [1, 1e-2, 1e-5]}),
    ],
)
def test_figures_are_readable_on_the_page(make) -> None:
    fig = make()
    assert fig.get_figwidth() * fig.dpi <= figures.PAGE_WIDTH_PX + 1  # shown 1:1, never shrunk
    assert figure_checks.min_font_px(fig) >= figure_checks.MIN_FONT_PX
    assert figure_checks.overlapping_texts(fig) == []


def test_min_font_px_sees_a_shrunk_figure() -> None:
    fig, ax = plt.subplots(figsize=(14.6, 3))  # twice the page: every text is shown at half size
    ax.set_title("title", fontsize=9)
    assert figure_checks.min_font_px(fig) == pytest.approx(9 * 100 / 72 / 2)


def test_overlapping_texts_are_found() -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    assert ("first label", "second label") in figure_checks.overlapping_texts(fig)


def test_curves_use_integer_ticks() -> None:
    fig = figures.curves({"a": [1.0, 0.5, 0.25, 0.125]})
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_table_html_and_text() -> None:
    t = figures.Table([["sr4", 19.614, 3], ["<b>", 1.0, 1]], ["task", "PSNR", "n"], fmt={"PSNR": "{:.1f}"})
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "<td>19.6</td>" in html and "&lt;b&gt;" in html
    assert str(t).splitlines()[1].split() == ["sr4", "19.6", "3"]
    with pytest.raises(ValueError, match="3 cells"):
        figures.Table([["sr4", 1.0]], ["task", "PSNR", "n"])
