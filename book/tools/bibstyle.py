"""Author-year labels for the bibliography, to match the author-year citations of the chapters.

sphinxcontrib-bibtex formats citations with ``bibtex_reference_style: author_year`` (``Cao et al.
(2024)``) but labels the bibliography with the pybtex style's labels, which for ``plain`` are numbers
([1], [2], ...).  This Sphinx extension registers the pybtex style ``authoryear``: entries sorted by
author, year and title, labelled ``Cao et al., 2024``.  ``_config.yml`` loads it as a local extension
and sets ``bibtex_default_style: authoryear``.
"""

from __future__ import annotations

from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _author_year(entry: Any) -> str:
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(p.last_names) for p in persons] or [entry.fields.get("title", "?")]
    who = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """``Wang et al., 2023``; a second entry with the same label gets ``2023b``."""

    def format_labels(self, sorted_entries: Any) -> Any:
        labels = [_author_year(e) for e in sorted_entries]
        for i, label in enumerate(labels):
            same = [j for j, other in enumerate(labels) if other == label]
            yield label + ("abcdefghij"[same.index(i)] if len(same) > 1 else "")


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "authoryear"
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app: Any) -> dict[str, Any]:
    return {"parallel_read_safe": True, "parallel_write_safe": True}
