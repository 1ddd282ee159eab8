"""A ``--direct_running_mode multi_processing`` worker: Beam's SDK worker, quiet on Ctrl-C.

A terminal's Ctrl-C reaches the whole process group, the workers too. Beam's worker
would raise KeyboardInterrupt, log it to the launcher and print its traceback, once per
worker; the launcher is the one that says "interrupted". Here SIGINT ends the worker
as it ends any program that does not catch it: at once, and without a word.
"""

from __future__ import annotations

import signal
import sys

# The module LocalRunner's workers run instead of Beam's own (it wraps that one).
BEAM_WORKER = "apache_beam.runners.worker.sdk_worker_main"


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)


if __name__ == "__main__":
    main()
