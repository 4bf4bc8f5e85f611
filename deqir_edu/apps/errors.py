"""What the command line says about an error: one line for the errors of the user (bad files, options, data,
a full disk, a name too long, permissions, a network or a training that produced NaN), nothing for a bug.

Notation: none (no paper symbols).  ``cli.main`` prints ``deqir-edu COMMAND: error: LINE`` (exit code 2) for
``user_error_text(err)``, else the "internal error ...; this is a bug" line (exit code 1).  A permission error
under ``DEQIR_EDU_DATA`` or the model cache names the variable, so the fix is where the user looks.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..core.checks import NotFiniteError
from ..core.download import DownloadError, cache_dir
from ..core.paths import data_dir

__all__ = ["USER_ERRORS", "user_error_text"]

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
    NotFiniteError,
    DownloadError,
)
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def user_error_text(err: BaseException) -> str | None:
    """The one line that tells the user what went wrong and the fix, or None when ``err`` is a bug."""
    if isinstance(err, OSError):
        explained = _os_error(err)
        if explained:
            return explained
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, USER_ERRORS):
        return text
    if isinstance(err, RuntimeError) and ("NaN" in text or "CUDA" in text or "out of memory" in text):
        return text
    return None


def _short(name: str | os.PathLike | None) -> str:
    text = str(name)
    return text if len(text) <= 60 else f"{text[:40]}...{text[-12:]}"


def _os_error(err: OSError) -> str | None:
    """A full disk, a name too long, a read-only disk or a permission, said with the file and the fix."""
    name = err.filename
    if err.errno in _NO_SPACE:
        on = f" holding {_short(name)}" if name else ""
        return f"no space left on the disk{on}: free some space or write the output elsewhere (--out)"
    if err.errno == errno.ENAMETOOLONG:
        long = Path(str(name)).name if name else ""
        return (
            f"the file name {_short(long or name)} is too long ({len(long)} characters; most file systems allow "
            "255): choose a shorter --out"
        )
    if err.errno == errno.EROFS:
        return f"cannot write {_short(name)}: the disk is read-only; choose another --out"
    if err.errno in (errno.EACCES, errno.EPERM) and name:
        return f"permission denied: {_short(name)}{_folder_of(name)}"
    return None


def _inside(path: str | os.PathLike, folder: Path) -> bool:
    try:
        return Path(path).expanduser().resolve().is_relative_to(folder.expanduser().resolve())
    except (OSError, RuntimeError, ValueError):
        return False


def _folder_of(name: str | os.PathLike) -> str:
    """``": fix ..."`` naming ``DEQIR_EDU_DATA`` or ``DEQIR_EDU_CACHE`` when ``name`` lies in their folder."""
    data = os.environ.get("DEQIR_EDU_DATA")
    if _inside(name, data_dir()):
        where = f"DEQIR_EDU_DATA={data}" if data else "the package's data folder"
        return f" (in {where}): make it readable, or set DEQIR_EDU_DATA to a data folder you can read"
    env = os.environ.get("DEQIR_EDU_CACHE")
    try:
        cache = Path(env) if env else cache_dir()
    except (ValueError, OSError):
        cache = None
    if cache is not None and _inside(name, cache):
        where = f"DEQIR_EDU_CACHE={env}" if env else f"the model cache {cache}"
        return f" (in {where}): make it writable, or set DEQIR_EDU_CACHE to a folder you can write"
    return ": check its permissions, or choose a file or folder you can read and write (--out)"
