"""Safe downloads of model weights into a local cache.

A download must never leave a half-written file that a later run mistakes for the real one, and
a file whose bytes changed after the first download must be noticed.  So ``download``

1. streams the URL into a temporary file in the destination folder (progress bar with tqdm),
2. checks the byte count against the server's ``Content-Length`` and the expected ``size``,
3. hashes the bytes while they arrive (sha256) and compares with the expected hash, and only then
4. renames the temporary file to its final name (an atomic step on one file system).

``download(..., force=True)`` (``deqir-edu download NAME --force``) downloads again although a file is
cached; the cached file and its hash are replaced only by a complete, checked download, so an unreachable
server, a bad download or Ctrl-C leave them as they were.  Downloaded files get the user's usual
permissions (``0o666 & ~umask``).  One download per cache entry at a time (a lock file ``.<file>.lock``).

Without an expected hash the first download records the sha256 in a sidecar file
``<file>.sha256``, but only after ``validate(tmp)`` (e.g. "parses as a state dict of the expected
manifest") accepted the bytes, and never for a web page (an HTML body served with status 200, e.g. a
login page); every later call checks the cached bytes against it.

Notation (code name -> meaning; this module has no paper symbols)

    dest            final path of the file in the cache
    sidecar         ``dest`` + ".sha256": the hash recorded on first download
    size            expected byte count, or None if unknown
    sha256          expected hex digest, or None (then the sidecar is used)
    validate        callable(path) raising ValueError when the file is not what it should be
    reset           how to start again after a mismatch (e.g. ``deqir-edu download NAME --force``)
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from .files import new_file_mode
from .locks import output_lock, temp_prefix
from .signals import deferred_signals, interrupted

__all__ = ["DownloadError", "cache_dir", "download", "file_md5", "file_sha256", "sidecar_path", "verify", "forget"]

_CHUNK = 1 << 20  # 1 MiB per read
_TIMEOUT_S = 60.0  # seconds without data before a read fails


class DownloadError(RuntimeError):
    """The file could not be fetched (offline, server error); the message says how to get it by hand."""


def cache_dir() -> Path:
    """Folder of downloaded weights: ``$DEQIR_EDU_CACHE`` if set, else the platform cache dir.

    Linux: ``$XDG_CACHE_HOME/deqir-edu`` (default ``~/.cache/deqir-edu``); macOS:
    ``~/Library/Caches/deqir-edu``; Windows: ``%LOCALAPPDATA%\\deqir-edu\\Cache``.
    """
    env = os.environ.get("DEQIR_EDU_CACHE")
    if env:
        path = Path(env).expanduser()
        if path.exists() and not path.is_dir():
            raise ValueError(f"DEQIR_EDU_CACHE={env} is a file, not a folder; point it at a folder (or unset it)")
        return path
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "deqir-edu" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "deqir-edu"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "deqir-edu"


def sidecar_path(dest: Path) -> Path:
    """Path of the file that records ``dest``'s sha256 after the first download."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".sha256")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (works for multi-GB checkpoints)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fix_hint(dest: Path, reset: str | None = None) -> str:
    if reset:
        return (
            f"to start again, run `{reset}` (it downloads the file again and replaces {dest.name} and its "
            "recorded hash once the new copy is complete and checked)"
        )
    return (
        f"delete {dest} and {sidecar_path(dest)} and run again to re-download it "
        "(or put a good copy of the file there by hand)"
    )


def forget(dest: Path) -> None:
    """Delete a cached file and its recorded hash (the reset after a mismatch)."""
    Path(dest).unlink(missing_ok=True)
    sidecar_path(Path(dest)).unlink(missing_ok=True)


def _check_not_html(path: Path, url: str) -> None:
    """Refuse a body that is a web page (login or error page served with status 200), not the file."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")) or (
        head.startswith(b"<") and b"<html" in head
    ):
        raise ValueError(
            f"the server sent a web page (HTML), not the file, for {url}; nothing was saved. "
            "The link may need a login or has moved: download the file in a browser instead"
        )


def _read_sidecar(dest: Path) -> str | None:
    side = sidecar_path(dest)
    if not side.is_file():
        return None
    text = side.read_text().split()
    return text[0].lower() if text else None


def _write_sidecar(dest: Path, digest: str) -> None:
    # written through a temporary file too, so a crash never leaves half a hash behind
    side = sidecar_path(dest)
    fd, tmp = tempfile.mkstemp(dir=side.parent, prefix=temp_prefix(side.name), suffix=".part")
    with os.fdopen(fd, "w") as f:
        f.write(f"{digest}  {dest.name}\n")
    os.chmod(tmp, new_file_mode(side))  # the user's usual permissions, not mkstemp's 0600
    os.replace(tmp, side)


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks (only to compare with checksums that a data set publishes as MD5)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    validate: Callable[[Path], None] | None = None,
    reset: str | None = None,
) -> Path:
    """Check a cached file against its expected ``size``, published ``md5`` and sha256 (given, or recorded
    in the sidecar).

    A file without any known hash (e.g. placed by hand) is first checked by ``validate`` and then gets
    its hash recorded.  Raises ``ValueError`` naming the expected and actual values and the fix (``reset``:
    the command that starts again) if anything differs.
    """
    dest = Path(dest)
    if md5 is not None and file_md5(dest) != md5.lower():
        raise ValueError(
            f"md5 mismatch for {dest}: the published checksum is {md5}, the file's is "
            f"{file_md5(dest)}; the file is corrupt or not the published one; {_fix_hint(dest, reset)}"
        )
    actual_size = dest.stat().st_size
    if size is not None and actual_size != size:
        raise ValueError(
            f"{dest} has {actual_size} bytes but {size} are expected (truncated or wrong file); "
            f"{_fix_hint(dest, reset)}"
        )
    recorded = _read_sidecar(dest)
    expected = sha256.lower() if sha256 else recorded
    actual = file_sha256(dest)
    if expected is None:
        if validate is not None:
            validate(dest)
        _write_sidecar(dest, actual)
    elif actual != expected:
        origin = "expected" if sha256 else f"recorded in {sidecar_path(dest)} at the first download"
        raise ValueError(
            f"sha256 mismatch for {dest}: {origin} {expected}, actual {actual}; the file changed or is "
            f"corrupt; {_fix_hint(dest, reset)}"
        )
    elif recorded is None:
        _write_sidecar(dest, actual)
    return dest


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    md5: str | None = None,
    validate: Callable[[Path], None] | None = None,
    reset: str | None = None,
    force: bool = False,
) -> Path:
    """Fetch ``url`` to ``dest`` unless a verified copy is already there (or ``force``); return ``dest``.

    ``md5``: a checksum the data's publisher gives as MD5 (Fashion-MNIST does); checked like sha256.
    ``validate(tmp)``: a structural check of the downloaded bytes (raise ``ValueError``) run before the
    file is renamed into place and before any hash is recorded.  ``reset``: the command a mismatch
    message tells the user to run.  ``force``: download again even if a file is cached, ignoring the
    hash recorded for it (the reset after a mismatch); the cached file and its hash are replaced only
    once the new download is complete and checked, so an unreachable server or Ctrl-C leaves them as
    they were.

    A cache hit makes no request: the cached file is checked by ``size`` and sha256 (the given
    one, or the one recorded in ``<dest>.sha256`` on the first download).  A download goes to a
    temporary file next to ``dest`` that is renamed only after the byte count and the hash check
    out; on any failure it is deleted, so no corrupt file is left behind.  The cache entry is locked
    (``core.locks.output_lock``, ``.<file>.lock``) while it downloads: a second download of it is refused.

    Raises ``ValueError`` for a truncated or corrupt file (message names expected/actual and the
    fix) and ``DownloadError`` when the server cannot be reached (message gives the URL and the
    path to place the file at by hand).
    """
    dest = Path(dest)
    if dest.is_file() and not force:  # a cache hit needs no lock (a read-only cache works)
        return verify(dest, sha256, size, md5, validate, reset)
    with output_lock(
        dest.parent, f"the cache entry {dest}", name=f".{dest.name}.lock", hint="wait until that download finishes"
    ):
        if dest.is_file() and not force:  # another run downloaded it meanwhile
            return verify(dest, sha256, size, md5, validate, reset)
        old = dest.is_file()
        try:
            _fetch(url, dest, _Expect(sha256, size, md5, validate, reset, force), progress)
        except (DownloadError, ValueError) as err:
            if not old:
                raise
            kept = f"{dest} and its recorded hash were" if sidecar_path(dest).is_file() else f"{dest} was"
            raise type(err)(f"{err}; the file already at {kept} kept unchanged") from err
    return dest


class _Expect(NamedTuple):
    """What a download must be: the known checks, the reset command, and whether the recorded hash counts."""

    sha256: str | None
    size: int | None
    md5: str | None
    validate: Callable[[Path], None] | None
    reset: str | None
    force: bool


def _fetch(url: str, dest: Path, want: _Expect, progress: bool) -> None:
    """Stream ``url`` into a temporary file, check it, then swap it in for ``dest`` (and its hash)."""
    # a hash recorded earlier (file since deleted) still guards against a changed server file; not when forced
    expected = want.sha256.lower() if want.sha256 else (None if want.force else _read_sidecar(dest))
    old, swapped = dest.is_file(), [False]
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=temp_prefix(dest.name), suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            received, digest, announced, md5_digest = _stream(url, dest, out, want.size, progress)
        _check_length(url, dest, received, announced, want.size)
        _check_sha256(url, dest, digest, expected, want.reset)
        _check_md5(url, dest, md5_digest, want.md5)
        _check_not_html(tmp, url)
        if want.validate is not None and expected is None and want.md5 is None:  # nothing else vouches for it
            _validate_download(tmp, url, dest, want.validate)
        with deferred_signals():  # never half a swap: the new file and its hash, or the old ones
            os.chmod(tmp, new_file_mode(dest))  # the user's usual permissions, not mkstemp's 0600
            sidecar_path(dest).unlink(missing_ok=True)  # a crash just after leaves a file without hash: rechecked
            os.replace(tmp, dest)  # only a complete, checked file gets the final name
            if want.sha256 is None:
                _write_sidecar(dest, digest)
            swapped[0] = True
    except KeyboardInterrupt as err:
        raise interrupted(err, _after_interrupt(dest, old, swapped[0])) from None
    finally:
        tmp.unlink(missing_ok=True)


def _after_interrupt(dest: Path, old: bool, swapped: bool) -> str:
    """What an interrupted download left: the new file, the old one unchanged, or nothing."""
    if swapped:
        return f"the download had finished: {dest} is the new, checked file"
    if old:
        return f"nothing was written: {dest} is unchanged (the partial download was removed)"
    return f"nothing was written to {dest.parent} (the partial download was removed)"


def _check_length(url: str, dest: Path, received: int, announced: int | None, size: int | None) -> None:
    """Refuse a download shorter than its ``Content-Length`` (``announced``) or of another ``size``."""
    if announced is not None and received != announced:
        raise ValueError(
            f"download of {url} was truncated: received {received} of {announced} bytes "
            f"(Content-Length); nothing was saved to {dest}; run again to retry"
        )
    if size is not None and received != size:
        raise ValueError(
            f"download of {url} has {received} bytes but {size} are expected; nothing was saved to "
            f"{dest}; run again to retry, or check that the URL still serves the same file"
        )


def _check_sha256(url: str, dest: Path, digest: str, expected: str | None, reset: str | None) -> None:
    """Refuse a download whose sha256 ``digest`` is not the ``expected`` one (if any)."""
    if expected is not None and digest != expected:
        raise ValueError(
            f"sha256 mismatch for the download of {url}: expected {expected}, actual {digest}; "
            f"nothing was saved to {dest}; the server's file differs from the known one; "
            f"{_fix_hint(dest, reset)}"
        )


def _check_md5(url: str, dest: Path, md5_digest: str, md5: str | None) -> None:
    """Refuse a download whose md5 is not the published checksum ``md5`` (if any)."""
    if md5 is not None and md5_digest != md5.lower():
        raise ValueError(
            f"md5 mismatch for the download of {url}: the published checksum is {md5}, the download's is "
            f"{md5_digest}; nothing was saved to {dest}; the server sent another file (an error page?)"
        )


def _validate_download(tmp: Path, url: str, dest: Path, validate: Callable[[Path], None]) -> None:
    """Run ``validate`` on the downloaded bytes; its ``ValueError`` says that nothing was saved."""
    try:
        validate(tmp)
    except ValueError as err:
        raise ValueError(
            f"the download of {url} is not a valid file ({err}); nothing was saved to {dest}; run again to retry"
        ) from None


def _stream(url: str, dest: Path, out, size: int | None, progress: bool) -> tuple[int, str, int | None, str]:
    """Copy the response body into ``out``; return (bytes received, sha256 hex, Content-Length or None, md5 hex)."""
    request = urllib.request.Request(url, headers={"User-Agent": "deqir-edu"})
    h, h_md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as resp:
            length = resp.headers.get("Content-Length")
            announced = int(length) if length is not None and length.isdigit() else None
            total = announced if announced is not None else size
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    h.update(chunk)
                    h_md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except http.client.IncompleteRead as err:  # some Python versions raise this on a short body
        raise ValueError(
            f"download of {url} was truncated after {received} bytes ({err}); nothing was saved to "
            f"{dest}; run again to retry"
        ) from err
    except urllib.error.HTTPError as err:  # the server answered, with an error status
        raise DownloadError(
            f"could not download {url}: the server answered HTTP {err.code} ({err.reason}); the file may "
            f"have moved. Download it by hand and put it at {dest}"
        ) from err
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # DNS, refused, timeout, reset
        reason = getattr(err, "reason", None) or err
        raise DownloadError(
            f"could not download {url} ({reason}); received {received} bytes. Are you offline? "
            f"Download the file by hand from {url} and put it at {dest}"
        ) from err
    return received, h.hexdigest(), announced, h_md5.hexdigest()
