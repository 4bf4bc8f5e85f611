"""The package version, from one place: ``version`` in ``pyproject.toml`` (through the installed metadata).

Notation: none (no paper symbols).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

__all__ = ["package_version"]


def package_version() -> str:
    """The installed version of ``deqir-edu``; from a source checkout without metadata, ``pyproject.toml``'s."""
    try:
        return metadata.version("deqir-edu")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"
