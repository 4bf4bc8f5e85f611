"""Checks that a figure of the book is readable on the site: the size of its smallest text on the
page and texts whose drawn boxes overlap (the tests run both on every figure helper of ``figures``).

Notation: none (no paper symbols).

    fig            a matplotlib ``Figure``
    page_width_px  the width the site shows a figure at most (``figures.PAGE_WIDTH_PX``); a wider
                   figure is scaled down, and its texts with it
    MIN_FONT_PX    the smallest text size, in pixels on the page, that the book asks for
"""

from __future__ import annotations

from typing import Any

from .figures import PAGE_WIDTH_PX

__all__ = ["MIN_FONT_PX", "min_font_px", "overlapping_texts"]

MIN_FONT_PX = 9.0


def _drawn_texts(fig: Any) -> list[Any]:
    """The visible, non-empty texts of ``fig``, each once (ticks of an ``axis("off")`` are not drawn)."""
    hidden = {
        id(t)
        for ax in fig.axes
        if not ax.axison
        for axis in (ax.xaxis, ax.yaxis)
        for t in axis.findobj(lambda o: hasattr(o, "get_text"))
    }
    texts = fig.findobj(lambda o: hasattr(o, "get_text") and hasattr(o, "get_fontsize"))
    return list(
        {
            id(t): t
            for t in texts  # findobj may list one artist twice
            if t.get_visible() and str(t.get_text()).strip() and id(t) not in hidden
        }.values()
    )


def min_font_px(fig: Any, page_width_px: float = PAGE_WIDTH_PX) -> float:
    """Smallest visible text of ``fig`` in pixels on the page (figures wider than the page shrink)."""
    scale = min(1.0, page_width_px / (fig.get_figwidth() * fig.dpi))
    sizes = [t.get_fontsize() for t in _drawn_texts(fig)]
    return min(sizes) * fig.dpi / 72 * scale if sizes else float("inf")


def overlapping_texts(fig: Any) -> list[tuple[str, str]]:
    """Pairs of visible texts of ``fig`` whose drawn boxes overlap (tick labels, titles, labels)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(str(t.get_text()), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    return [
        (s1, s2)
        for i, (s1, b1) in enumerate(boxes)
        for s2, b2 in boxes[i + 1 :]
        if b1.overlaps(b2)
        and b1.width * b1.height > 0
        and b2.width * b2.height > 0
        and not (s1 == s2 and tuple(b1.bounds) == tuple(b2.bounds))
    ]  # one text reached twice
