"""The book's figures and tables: image grids, convergence curves, the two diagrams of the method
(the paper's Fig. 2 and the triangular dependency of Eq. (10)) and HTML tables, sized for the site.

Notation (code name -> paper symbol)

    T            T                  number of chain states after x_T
    states       x_{T-1}, ..., x_0  the chain, in the paper's order
    k            k                  fixed-point iteration (Algorithm 1)
    F_j          F_j                the j-th block of the map F of Proposition 1 (Eq. (9))

Sizes.  The site shows a figure at most ``PAGE_WIDTH_PX`` wide and scales wider ones down, so a
figure drawn ``PAGE_WIDTH_IN`` inches wide at ``DPI`` is shown 1:1 (``figure_checks`` measures how
large its smallest text is on the page and finds overlapping labels).  Every function returns the
matplotlib ``Figure``; nothing here is needed by the samplers (matplotlib is imported on first use).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "PAGE_WIDTH_IN",
    "use_book_style",
    "image_grid",
    "show_images",
    "curves",
    "integer_axis",
    "chain_diagram",
    "dependency_diagram",
    "Table",
]

DPI = 100
PAGE_WIDTH_PX = 730  # the text column of the site (sphinx-book-theme, desktop)
PAGE_WIDTH_IN = (PAGE_WIDTH_PX - 20) / DPI  # matplotlib adds ~10 px of margin on each side


def use_book_style() -> None:
    """Font sizes, dpi and layout of every figure of the book (call once per notebook)."""
    import matplotlib as mpl  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    mpl.rcParams.update(
        {
            "figure.dpi": DPI,
            "savefig.dpi": DPI,
            "figure.figsize": (PAGE_WIDTH_IN, 2.8),
            "figure.constrained_layout.use": True,
            "font.size": 9,
            "axes.titlesize": 9,
            "axes.labelsize": 9,
            "xtick.labelsize": 8,
            "ytick.labelsize": 8,
            "legend.fontsize": 8,
            "image.cmap": "gray",
        }
    )


def _as_image(img: torch.Tensor) -> Any:
    """``(C, H, W)`` in [-1, 1] -> ``(H, W)`` or ``(H, W, 3)`` numpy array in [0, 1]."""
    if img.dim() != 3:
        raise ValueError(f"an image must be (C, H, W), got shape {tuple(img.shape)}")
    a = ((img.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _wrap(title: str, width_in: float, size_pt: float = 9.0) -> str:
    """Break ``title`` at spaces or hyphens so that each line fits ``width_in`` inches (approx.)."""
    per_line = max(4, int(width_in * 72 / (0.6 * size_pt)))  # average glyph ~ 0.6 em
    lines: list[str] = []
    for part in title.split("\n"):
        words = part.replace("-", "- ").split(" ")
        line = ""
        for w in words:
            candidate = f"{line}{w}" if line.endswith("-") or not line else f"{line} {w}"
            if line and len(candidate) > per_line:
                lines.append(line.rstrip())
                line = w
            else:
                line = candidate
        lines.append(line.rstrip())
    return "\n".join(lines)


def image_grid(
    rows: Sequence[Sequence[torch.Tensor]] | torch.Tensor,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    width: float = PAGE_WIDTH_IN,
    max_cell: float = 1.2,
) -> Any:
    """A grid of images, ``rows[r][c]`` of shape ``(C, H, W)`` in [-1, 1] (grey or RGB).

    ``rows`` may also be a batch ``(N, C, H, W)``: one row.  The figure is at most ``width``
    inches wide (the page) and each cell at most ``max_cell`` inches, so titles stay readable.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    if isinstance(rows, torch.Tensor):
        rows = [list(rows)]
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    cell = min(max_cell, width / n_cols)
    lines = max((_wrap(t, cell).count("\n") + 1 for t in col_titles or []), default=0)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows + 0.17 * lines), squeeze=False, layout="constrained"
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(row):
                ax.imshow(_as_image(row[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.axis("off")
            if r == 0 and col_titles:
                ax.set_title(_wrap(col_titles[c], cell), fontsize=9)
            if c == 0 and row_titles:
                ax.set_ylabel(row_titles[r], fontsize=9)
    return fig


def show_images(
    images: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    width: float = PAGE_WIDTH_IN,
    max_cell: float = 1.6,
) -> Any:
    """A flat list of ``(C, H, W)`` images in [-1, 1], each with its own title, ``ncols`` per row."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    cell = min(max_cell, width / ncols)
    wrapped = [_wrap(t, cell) for t in titles] if titles else []
    lines = max((t.count("\n") + 1 for t in wrapped), default=0)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(cell * ncols, (cell + 0.17 * lines) * nrows), squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(_as_image(images[k]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if wrapped:
                ax.set_title(wrapped[k], fontsize=9)
    return fig


def integer_axis(ax: Any, which: str = "x") -> None:
    """Ticks at integers only on an axis that counts something (iterations, states, steps)."""
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    for name in which:
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(integer=True))


def curves(
    series: Mapping[str, Sequence[float]],
    xlabel: str = "iteration k",
    ylabel: str = "residual",
    logy: bool = True,
    start: int = 1,
    ax: Any = None,
) -> Any:
    """Convergence curves, one line per entry of ``series``, x = ``start, start + 1, ...`` (integers)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH_IN, 5.0), 3.0), layout="constrained")
    for (label, ys), marker in zip(series.items(), "os^vD<>p*h" * 4, strict=False):
        ys = [float(v) for v in ys]
        ax.plot(range(start, start + len(ys)), ys, marker=marker, ms=3, lw=1.2, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
    integer_axis(ax, "x")
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    return fig if fig is not None else ax.figure


def chain_diagram(T: int = 5) -> Any:
    """The paper's Fig. 2: the sequential chain (one state after the other, T network calls in a
    row) against the fixed-point iteration (every state of iterate k+1 from all of iterate k)."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    names = [f"$x_{{{T}}}$"] + [f"$x_{{{t}}}$" for t in range(T - 1, -1, -1)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 2.9), layout="constrained")
    box = {"boxstyle": "round,pad=0.3", "fc": "#e8f0fb", "ec": "#3465a4"}
    for i, name in enumerate(names):  # (a) sequential: one arrow per network call
        a.text(i, 0, name, ha="center", va="center", fontsize=10, bbox=box)
        if i:
            a.annotate("", (i - 0.3, 0), (i - 0.7, 0), arrowprops={"arrowstyle": "->", "color": "#3465a4"})
            a.text(i - 0.5, 0.28, f"{i}", ha="center", fontsize=9, color="#555")
    a.text(T / 2, -0.6, f"{T} network calls, one after the other", ha="center", fontsize=9)
    a.set_title("(a) sequential sampling (DDIM, DDNM)")
    iters = 3
    for k in range(iters):  # (b) parallel: iterate k -> k + 1 in one batched network call
        y = -k
        for i, name in enumerate(names):
            label = name if i == 0 else name.replace("$", "").join(["$", f"^{{({k})}}$"])
            b.text(
                i,
                y,
                label,
                ha="center",
                va="center",
                fontsize=9 if i else 10,
                bbox=box if i == 0 else {**box, "fc": "#fdf0e0", "ec": "#c17d11"},
            )
        if k + 1 < iters:
            b.annotate(
                "",
                (T / 2 + 0.5, y - 0.72),
                (T / 2 + 0.5, y - 0.28),
                arrowprops={"arrowstyle": "->", "color": "#c17d11", "lw": 1.5},
            )
            b.text(T / 2 + 0.7, y - 0.5, "F: one batch of T states", fontsize=9, va="center")
    b.set_title("(b) parallel: fixed point $x = F(x)$ (Prop. 1)")
    for ax, ylim in ((a, (-1.0, 0.7)), (b, (-iters + 0.5, 0.5))):
        ax.set_xlim(-0.6, T + 0.6), ax.set_ylim(*ylim)
        ax.axis("off")
    return fig


def dependency_diagram(T: int = 6) -> Any:
    """Which state each block of F reads (Eq. (10)): ``F_j`` depends on ``x_T, ..., x_{j+1}`` only,
    so in the paper's order ``x_{T-1}, ..., x_0`` the Jacobian is strictly lower triangular."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (lazy: matplotlib is imported on first use)

    order = list(range(T - 1, -1, -1))
    dep = np.array([[1.0 if i > j else 0.0 for i in order] for j in order])
    fig, ax = plt.subplots(figsize=(3.6, 3.2), layout="constrained")
    ax.imshow(dep, cmap="Blues", vmin=0, vmax=1.4)
    labels = [f"$x_{{{t}}}$" for t in order]
    ax.set_xticks(range(T), labels), ax.set_yticks(range(T), [f"$F_{{{t}}}$" for t in order])
    ax.set_xlabel("state read"), ax.set_ylabel("block of F")
    ax.set_title("$\\partial F_j / \\partial x_i \\neq 0$ only for $i > j$")
    for r in range(T):
        for c in range(T):
            ax.text(
                c,
                r,
                "*" if dep[r, c] else "0",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if dep[r, c] else "#999",
            )
    return fig


class Table:
    """A results table shown as an HTML table in notebooks and on the site (``str``: plain text).

    Args:
        rows: one sequence of cells per row; floats are formatted with ``fmt``.
        columns: the header.
        fmt: format of float cells, e.g. ``"{:.2f}"``; a dict ``column -> format`` per column.
        caption: shown above the table.
    """

    def __init__(
        self,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        fmt: str | Mapping[str, str] = "{:.2f}",
        caption: str = "",
    ) -> None:
        if any(len(r) != len(columns) for r in rows):
            raise ValueError(f"every row needs {len(columns)} cells ({', '.join(columns)})")
        self.rows, self.columns, self.fmt, self.caption = [list(r) for r in rows], list(columns), fmt, caption

    def _cell(self, value: Any, column: str) -> str:
        if isinstance(value, float):
            fmt = self.fmt.get(column, "{:.2f}") if isinstance(self.fmt, Mapping) else self.fmt
            return fmt.format(value)
        return str(value)

    def cells(self) -> list[list[str]]:
        """The formatted cells, row by row (what both renderings show)."""
        return [[self._cell(v, c) for v, c in zip(row, self.columns, strict=False)] for row in self.rows]

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in self.cells())
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f'<table class="deqir-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def __str__(self) -> str:
        cells = [self.columns] + self.cells()
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=False)) for r in cells]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    __repr__ = __str__
