"""Each stage's counters in one small collector, and the local progress feed.

Beam metrics (``video_index`` namespace) show on every runner's UI. For a local run
the CLI also gives a progress path: each event appends one short line to that file
(an ``O_APPEND`` write, atomic for lines this short, so worker processes can share
it) and the CLI turns the lines into a live display. Remote runners get no path.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Optional

from apache_beam.metrics import Metrics

NAMESPACE = "video_index"

LISTED = "listed"
DECODED = "decoded"
CLIPS = "clips"
CLASSIFIED = "classified"
INDEXED = "indexed"
FAILED = "failed"
SKIPPED = "skipped"
FILTERED = "filtered"
# How many left-out names each worker reports (the summary shows the first few).
FILTERED_EXAMPLES = 5


class StageMetrics:
    """Counters for one stage; cheap to build in ``DoFn.setup``."""

    def __init__(self, stage: str, progress_path: Optional[str] = None):
        self._stage = stage
        self._progress_path = progress_path
        self._counters: dict[str, object] = {}
        self._decode_ms = Metrics.distribution(NAMESPACE, "decode_ms_per_video")

    def _inc(self, event: str, n: int = 1, progress: bool = True) -> None:
        counter = self._counters.get(event)
        if counter is None:
            counter = self._counters[event] = Metrics.counter(NAMESPACE, f"{self._stage}_{event}")
        counter.inc(n)
        if progress and self._progress_path:
            try:
                fd = os.open(self._progress_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                # A worker on another machine cannot see the CLI's file: no live
                # line there, the Beam counters still count.
                return
            try:
                os.write(fd, f"{event} {n}\n".encode())
            finally:
                os.close(fd)

    def listed(self, n: int = 1) -> None:
        self._inc(LISTED, n)

    def decoded(self, decode_ms: int) -> None:
        """A video decoded to its end, in ``decode_ms`` milliseconds of wall-clock time."""
        self._inc(DECODED)
        self._decode_ms.update(decode_ms)

    def clips(self, n: int = 1) -> None:
        self._inc(CLIPS, n)

    def classified(self, n: int = 1) -> None:
        self._inc(CLASSIFIED, n)

    def indexed(self, n: int = 1) -> None:
        self._inc(INDEXED, n)

    def skipped(self, n: int = 1) -> None:
        self._inc(SKIPPED, n)

    def filtered(self, name: str) -> None:
        """A file a folder's extension filter left out: counted, its name kept if early."""
        self._inc(FILTERED, progress=False)
        self._filtered_names = getattr(self, "_filtered_names", 0) + 1
        if self._filtered_names <= FILTERED_EXAMPLES:
            Metrics.string_set(NAMESPACE, f"{self._stage}_{FILTERED}_names").add(name)

    def failure(self, n: int = 1, final: bool = True) -> None:
        """A failed video; ``final=False`` where a later stage writes its row and counts it."""
        self._inc(FAILED, n, progress=final)


def read_progress(path: str) -> Counter:
    """Totals of the events appended to a progress file so far."""
    totals: Counter = Counter()
    try:
        with open(path, "rb") as f:
            for line in f:
                event, _, n = line.decode(errors="replace").partition(" ")
                if n.strip().isdigit():
                    totals[event] += int(n)
    except FileNotFoundError:
        pass
    return totals
