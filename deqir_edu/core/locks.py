"""One run at a time per output: a lock file in every folder (or cache entry) a command writes, and the
clean-up of the temporary files that a killed run left behind.

Notation: none (no paper symbols).

    output_lock(folder, what)      context manager: holds ``folder/.deqir-edu.lock`` while the block runs
                                   (``name=`` another lock file, e.g. ``.celeba_hq.ckpt.lock`` for a cache entry)
    OutputBusy                     ``ValueError``: a live run holds the lock; says its pid, host, start, command
    temp_prefix(name)              prefix of every temporary file: ``.{name}.deqir-tmp-{host}-{pid}-``
    clean_stale_temporaries(dir)   delete the temporary files of processes of this host that no longer run
    process_alive(pid)             whether a process of this host runs with that pid

The lock file is created with ``os.open(O_CREAT | O_EXCL)``, so of two runs exactly one gets it; it holds
JSON ``{"pid", "host", "started", "command", "token", "group"}`` and is deleted when the block ends (also on
an error or Ctrl-C).  The second run is refused (``OutputBusy``, one line: exit 2 in the CLI).  A lock of a
process that no longer runs on this host (the run was killed) is *stale*: it is replaced atomically by the
new run's lock under a second, short-lived lock file (``<lock>.recover``), with a ``note:`` line, so of two
runs that find the same stale lock only one takes it over.  A lock of another host is never taken over
(its pid cannot be checked from here): the message names the file to delete if that run is gone.  The
ranks of one ``torchrun`` job (same ``TORCHELASTIC_RUN_ID``, or ``MASTER_ADDR:MASTER_PORT``) share a lock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shlex
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_NAME",
    "OutputBusy",
    "output_lock",
    "temp_prefix",
    "clean_stale_temporaries",
    "process_alive",
]

LOCK_NAME = ".deqir-edu.lock"
_GRACE_S = 2.0  # a lock file without content younger than this is being written by its creator
_TEMP = re.compile(r"\.deqir-tmp-([0-9a-f]{6})-(\d+)-")


class OutputBusy(ValueError):
    """Another run that is alive holds the lock of this output (a user error: one line, exit 2)."""


def _host() -> str:
    return socket.gethostname()


def _host_tag() -> str:
    """Six hex digits naming this host in temporary file names (a shared folder may be written from several)."""
    return hashlib.sha1(_host().encode(), usedforsecurity=False).hexdigest()[:6]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (True when that cannot be checked, e.g. on Windows)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would end the process there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def temp_prefix(name: str) -> str:
    """Prefix of a temporary file for ``name``; it names this host and process, so that a later run can tell
    the leftovers of a killed run (``clean_stale_temporaries``) from the files of a run in progress."""
    return f".{name}.deqir-tmp-{_host_tag()}-{os.getpid()}-"


def clean_stale_temporaries(folder: str | Path) -> list[str]:
    """Delete the temporary files in ``folder`` whose process (of this host) no longer runs; return their names."""
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        m = _TEMP.search(path.name)
        if m and m.group(1) == _host_tag() and not process_alive(int(m.group(2))) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path.name)
    return removed


def _command() -> str:
    """The command line of this process, as the user typed it (``deqir-edu train tiny --out runs/tiny``)."""
    argv0 = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if argv0 in ("cli.py", "__main__.py", "deqir-edu"):
        argv0 = "deqir-edu"
    return shlex.join([argv0, *sys.argv[1:]])


def _group() -> str | None:
    """The ``torchrun`` job this process is a rank of (its ranks share a lock), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    job = os.environ.get("TORCHELASTIC_RUN_ID") or f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    return f"torchrun:{job}"


def _record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": _host(),
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": _command(),
        "token": uuid.uuid4().hex,
        "group": _group(),
    }


def _read(lock: Path) -> str | None:
    """The text of a lock file, or None when it does not exist."""
    try:
        return lock.read_text(encoding="utf8")
    except FileNotFoundError:
        return None
    except OSError:
        return ""


def _parse(text: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _describe(holder: dict[str, Any]) -> str:
    return (
        f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: `{holder.get('command')}`"
    )


def _is_stale(holder: dict[str, Any] | None, lock: Path) -> bool:
    """A lock whose process of this host no longer runs; or one without readable content, left for long."""
    if holder is None:
        return _age_s(lock) > _GRACE_S
    pid = holder.get("pid")
    return holder.get("host") == _host() and isinstance(pid, int) and not process_alive(pid)


def _take_over(lock: Path, seen: str, mine: str) -> bool:
    """Replace the stale lock whose text was ``seen`` by ``mine``, atomically; False if another run was faster."""
    guard = lock.with_name(lock.name + ".recover")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        if _age_s(guard) > 10 * _GRACE_S:  # a run that died while taking over
            guard.unlink(missing_ok=True)
        return False
    os.close(fd)
    try:
        if _read(lock) != seen:  # released or taken over meanwhile: start again
            return False
        fd, tmp = tempfile.mkstemp(dir=lock.parent, prefix=temp_prefix(lock.name), suffix=".json")
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(mine)
        os.replace(tmp, lock)  # the stale lock becomes this run's in one step
        return True
    finally:
        guard.unlink(missing_ok=True)


def _refuse(what: str, holder: dict[str, Any] | None, lock: Path, hint: str) -> OutputBusy:
    who = _describe(holder) if holder is not None else "a run that is starting"
    return OutputBusy(f"{what} is in use by another run ({who}); {hint} (if that run no longer exists, delete {lock})")


def _acquire(lock: Path, mine: dict[str, Any], what: str, hint: str, note: Callable[[str], None]) -> bool:
    """Take ``lock`` for ``mine``; True if this call created it, False if it joined its own torchrun job."""
    text = json.dumps(mine)
    for _ in range(200):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen = _read(lock)
            if seen is None:  # released just now
                continue
            holder = _parse(seen)
            if holder is not None and mine["group"] is not None and holder.get("group") == mine["group"]:
                return False
            if holder is None and not _is_stale(None, lock):  # its creator is writing it
                time.sleep(0.05)
                continue
            if not _is_stale(holder, lock):
                raise _refuse(what, holder, lock, hint) from None
            if _take_over(lock, seen, text):
                old = _describe(holder) if holder is not None else "an empty lock file"
                note(f"{what}: took over the lock of an earlier run that no longer runs ({old})")
                return True
            time.sleep(0.05)
            continue
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(text)
        return True
    raise _refuse(what, _parse(_read(lock) or ""), lock, hint)


def _stderr_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


@contextlib.contextmanager
def output_lock(
    folder: str | Path,
    what: str | None = None,
    *,
    name: str = LOCK_NAME,
    hint: str = "wait until it finishes or choose another --out",
    note: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Hold the lock file ``folder/name`` while the block runs (the folder is created); yield its path.

    Raises ``OutputBusy`` (a ``ValueError``) naming the other run when a live run holds it; takes over a
    stale lock (its process no longer runs on this host) with a note.  Once the lock is held, the temporary
    files that killed runs left in ``folder`` are deleted (with a note).  ``what`` names the output in the
    messages (default: the folder); ``note(text)`` prints ``note: text`` on stderr unless given.
    """
    folder = Path(folder).expanduser()
    what = what or str(folder)
    note = note or _stderr_note
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what}: {folder} is a file, not a folder; choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    lock, mine = folder / name, _record()
    owner = _acquire(lock, mine, what, hint, note)
    try:
        removed = clean_stale_temporaries(folder)
        if removed:
            note(f"removed {len(removed)} temporary file(s) left in {folder} by a run that was killed: {removed[0]}")
        yield lock
    finally:
        if owner and _read(lock) == json.dumps(mine):  # never delete another run's lock
            lock.unlink(missing_ok=True)
