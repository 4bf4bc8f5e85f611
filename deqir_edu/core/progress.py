"""Progress bars for long loops (tqdm), silent in tests and CI.

Notation: none (no paper symbols).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm

__all__ = ["progress"]


def progress(it: Iterable, desc: str, total: int | None = None) -> Iterable:
    """tqdm bar for long loops; silent when ``TQDM_DISABLE`` is set or output is not a terminal."""
    disable = True if os.environ.get("TQDM_DISABLE") else None
    return tqdm(it, desc=desc, total=total, leave=False, disable=disable)
