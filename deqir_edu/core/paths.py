"""Where the package finds its data: the embedded models and the frozen test sets.

Notation: none (no paper symbols).  ``data_dir()`` is the one place that answers "where is data/".
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir"]


def data_dir() -> Path:
    """The data folder holding ``models/`` and ``testsets/``: ``$DEQIR_EDU_DATA`` if set, else the
    repository's top-level ``data/``."""
    env = os.environ.get("DEQIR_EDU_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "data"
