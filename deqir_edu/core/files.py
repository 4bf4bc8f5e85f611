"""Safe file writes: every file the package writes goes to a temporary file in the same folder and is
renamed into place, so an interrupt, a full disk or an OOM kill never leaves a truncated file and never
destroys the previous version.  A temporary file is named ``.{name}.deqir-tmp-{host}-{pid}-XXXXXXXX{ext}``
(``core.locks.temp_prefix``): it is deleted when its block fails, on Ctrl-C and on SIGTERM (the CLI turns
SIGTERM into an interrupt), and the next run that writes to the folder deletes those a killed run left.
Also the checks that keep names from configs inside their folder and outputs away from inputs.

Notation: none (no paper symbols).

    atomic_path(dest)     context manager: yields a temporary path next to ``dest``; on success it is
                          renamed to ``dest`` (``os.replace``, atomic on one file system), on error deleted
    new_file_mode(dest)   the permissions a file written to ``dest`` gets: ``dest``'s own if it exists, else
                          the user's usual ``0o666 & ~umask`` (never the 0600 of a temporary file)
    safe_name(name)       a config's ``"name"`` as a plain file name (no folders, no ``..``)
    same_file(a, b)       whether two paths name one file (other spelling, symlink, hard link)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .locks import clean_stale_temporaries, temp_prefix

__all__ = ["atomic_path", "new_file_mode", "write_text", "write_json", "safe_name", "same_file", "check_writable"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@contextlib.contextmanager
def atomic_path(dest: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a fresh temporary path in ``dest``'s folder; rename it to ``dest`` when the block succeeds.

    ``suffix`` (default: ``dest``'s) keeps writers that pick a format from the extension happy
    (Pillow, matplotlib).  The folder is created if needed.  On any exception the temporary file is
    removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=dest.parent, prefix=temp_prefix(dest.name), suffix=suffix or dest.suffix or ".tmp"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with contextlib.suppress(OSError):  # keep the usual permissions (mkstemp makes 0600)
            os.chmod(tmp, new_file_mode(dest))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def new_file_mode(dest: str | Path) -> int:
    """Permission bits for a file written to ``dest``: those of the file it replaces, else ``0o666 & ~umask``."""
    with contextlib.suppress(OSError):
        return Path(dest).stat().st_mode & 0o777
    return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set back at once
    os.umask(mask)
    return mask


def write_text(dest: str | Path, text: str) -> Path:
    """Write ``text`` to ``dest`` atomically (``atomic_path``); return ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf8")
    return Path(dest)


def write_json(dest: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (plus a final newline) to ``dest`` atomically; return ``dest``."""
    return write_text(dest, json.dumps(obj, indent=indent) + "\n")


def safe_name(name: Any, what: str = "name") -> str:
    """``name`` if it is a plain file name (letters, digits, ``.``, ``_``, ``-``; no folder, no ``..``).

    Raises ``ValueError`` otherwise: names from configs never leave their output folder.
    """
    text = str(name)
    if not _NAME.match(text) or ".." in text:
        raise ValueError(
            f"{what} {text!r} is not a plain file name: use letters, digits, '.', '_' and '-' only "
            "(no '/', no '..'), e.g. \"fashion32\""
        )
    return text


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether paths ``a`` and ``b`` name the same file (spelling, ``..``, symlinks and hard links resolved)."""
    a, b = Path(a).expanduser(), Path(b).expanduser()
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_writable(dest: str | Path, what: str = "output") -> Path:
    """Check, before any work, that a file can be created at ``dest``; return it as a ``Path``.

    Raises ``ValueError`` when ``dest`` is a folder, its parent is a file, or the folder cannot be
    written (a test file is created and removed; the folder is created if missing).  Temporary files that
    a killed run left in the folder are deleted (``core.locks.clean_stale_temporaries``, with a note).
    """
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise ValueError(f"{what} {dest} is a folder; give a file name such as {dest / 'out.png'}")
    parent = dest.parent
    for p in [parent, *parent.parents]:  # the first existing ancestor must be a folder
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"cannot write {what} {dest}: {p} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=temp_prefix(dest.name), suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write {what} {dest}: {err.strerror or err}; choose another --out") from err
    removed = clean_stale_temporaries(parent)
    if removed:
        print(
            f"note: removed {len(removed)} temporary file(s) left in {parent} by a run that was killed", file=sys.stderr
        )
    return dest
