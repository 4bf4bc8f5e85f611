"""Interrupts that say what they left: Ctrl-C and SIGTERM take the same clean way out, and the code that
was writing says what was and was not written.

Notation: none (no paper symbols).

    Interrupted(what, signum)   a ``KeyboardInterrupt`` with ``what``: the files written and kept, and how
                                to continue (the CLI prints ``deqir-edu CMD: interrupted; {what}``)
    interrupted(err, what)      the ``Interrupted`` to raise from a caught interrupt ``err`` (keeps its signal)
    sigterm_as_interrupt()      context manager: SIGTERM raises ``Interrupted`` like Ctrl-C, so the
                                ``finally`` blocks (temporary files, locks) run
    deferred_signals()          context manager: Ctrl-C / SIGTERM during the block take effect after it
                                (a swap of two files is never cut in half)

Handlers can only be set in the main thread; elsewhere the context managers do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Interrupted", "interrupted", "sigterm_as_interrupt", "deferred_signals"]

_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None)) if s is not None)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (``signum`` SIGINT) or SIGTERM, with ``what`` was written and kept ("" when nothing is known)."""

    def __init__(self, what: str = "", signum: int = signal.SIGINT) -> None:
        super().__init__(what)
        self.what = what
        self.signum = signum


def interrupted(err: BaseException, what: str) -> Interrupted:
    """An ``Interrupted`` that says ``what`` for the caught interrupt ``err`` (Ctrl-C or SIGTERM)."""
    return Interrupted(what, getattr(err, "signum", signal.SIGINT))


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("", signum)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises ``Interrupted`` (a ``KeyboardInterrupt``) in the main thread."""
    if not _main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    old = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _replay(signum: int, handler: object) -> None:
    """Act on a signal that arrived during ``deferred_signals`` as its handler would have."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # the default action (SIGTERM: the process ends)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block has finished, then act on the first that arrived."""
    if not _main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.getsignal(s) for s in _SIGNALS}
    for s in _SIGNALS:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if caught:
            _replay(caught[0], old[caught[0]])
