"""Ctrl-C during a job: remembered, so that the error Beam wraps it in reads as what it is.

A SIGINT raises KeyboardInterrupt in whichever Python frame runs on the main thread;
inside a DoFn (the local runner runs bundles there) Beam catches it and re-raises a
``RuntimeError`` naming the step, which would read as a model or step failure.
``watch()`` keeps Python's behaviour and notes that the interrupt happened, and
``was_interrupted()`` lets the caller say "interrupted" instead.

In ``--direct_running_mode multi_processing`` the workers end on the same Ctrl-C
(``local_worker``), and the runner's threads that watched them raise as they go
("Worker subprocess exited with return code -2", a broken gRPC stream): after an
interrupt those threads' tracebacks are consequences, not news, and are dropped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["watch", "was_interrupted"]

_seen = threading.Event()
# How long a thread that fails waits for the SIGINT that may explain it: a worker killed
# by Ctrl-C can end before this process's handler has run.
_EXPLAINED_WITHIN_S = 2.0


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

    def on_thread_error(args):
        if not _seen.wait(_EXPLAINED_WITHIN_S):
            previous_hook(args)

    previous = signal.signal(signal.SIGINT, on_sigint)
    previous_hook, threading.excepthook = threading.excepthook, on_thread_error
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        threading.excepthook = previous_hook
