"""Ctrl-C during a job: remembered, so that the error Beam wraps it in reads as what it is.

A SIGINT raises KeyboardInterrupt in whichever Python frame runs on the main thread;
inside a DoFn (the local runner runs bundles there) Beam catches it and re-raises a
``RuntimeError`` naming the step, which would read as a model or step failure.
``watch()`` keeps Python's behaviour and notes that the interrupt happened, and
``was_interrupted()`` lets the caller say "interrupted" instead.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["watch", "was_interrupted"]

_seen = threading.Event()


def was_interrupted() -> bool:
    """Whether a SIGINT arrived inside the last ``watch()``."""
    return _seen.is_set()


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """Within the block, SIGINT notes itself and raises KeyboardInterrupt as usual.

    Only on the main thread and where SIGINT is not ignored (a job started in the
    background keeps ignoring it, as the shell asked)."""
    _seen.clear()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(
        signal.SIGINT
    ) in (signal.SIG_IGN, None):
        yield
        return

    def on_sigint(signum, frame):
        _seen.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
