"""Where the package finds its data: the embedded models, the frozen test sets and the book's data.

Notation: none (no paper symbols).  ``data_dir()`` is the one place that answers "where is data/".

The repository's top-level ``data/`` is shipped inside the wheel as the resource package
``deqir_edu._data`` (``pyproject.toml``: ``package-dir``), so a wheel, a PyPI install and an editable
install (or a plain checkout) read the same files:

1. ``$DEQIR_EDU_DATA``, if set (another data folder);
2. the installed resource package ``deqir_edu._data`` (found with ``importlib``; a wheel install);
3. the repository's ``data/`` next to the package (an editable install or a checkout).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["data_dir"]

_RESOURCE = "deqir_edu._data"


def _installed() -> Path | None:
    """The folder of the resource package ``deqir_edu._data``, or ``None`` if it is not installed."""
    try:
        spec = importlib.util.find_spec(_RESOURCE)
    except ModuleNotFoundError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(p) for p in locations if (Path(p) / "models").is_dir()]
    return found[0] if found else None


def data_dir() -> Path:
    """The data folder holding ``models/`` and ``testsets/`` (see the module docstring for the order)."""
    env = os.environ.get("DEQIR_EDU_DATA")
    if env:
        return Path(env).expanduser()
    return _installed() or Path(__file__).resolve().parents[2] / "data"
