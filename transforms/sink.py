"""WriteIndex: ``(table, row)`` pairs → commits to the index's Lance tables.

Takes PCollections of ``(table, row dict)`` (schemas in ``video_index.schemas``) and
commits them to ``OUTPUT/<table>.lance`` (``video_index.table``) through fsspec-style
URLs, so the same code writes to a local folder, ``gs://`` or ``s3://``.

Rows are committed every ``flush_rows`` rows or ``flush_s`` seconds, not only when a
bundle ends, so a killed run keeps what it finished. A commit merges on the table's
key and ``run_id``: a runner that retries a bundle commits the same rows again and
nothing changes. The standing rule (a changed video's older rows go) is applied in the
tables at the end of the run (``video_index.table.settle``).
"""

from __future__ import annotations

import time

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from video_index import table as tables
from video_index.schemas import TABLES
from video_index.storage import retrying


def commit(output: str, table: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    """Commit ``rows`` to ``table`` of the index at ``output`` (``video_index.table.commit_rows``).

    ``schema`` (default ``TABLES[table]``) may add optional columns, such as
    ``schemas.clips_schema`` does. A commit that fails on a transient storage error is
    retried whole (``video_index.storage.retrying``): rows it already committed are
    skipped by the merge, so a retry never doubles them.
    """
    rows_table = pa.Table.from_pylist(rows, schema=schema or TABLES[table])
    retrying(tables.commit_rows, output, table, rows_table)


# Commit order within a flush: a video's clips and shots before its row, so that a
# committed video row always has them committed (a resumed run skips that video).
_COMMIT_ORDER = ("clips", "shots", "cues", "failures", "videos")


class _WriteIndexFn(beam.DoFn):
    """Buffers (table, row) pairs; commits each table's rows every flush."""

    def __init__(self, output: str, run_id: str, flush_rows: int, flush_s: float, schemas: dict):
        self._output = output
        self._run_id = run_id
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._schemas = schemas

    def start_bundle(self):
        self._rows: dict[str, list[dict]] = {table: [] for table in _COMMIT_ORDER}
        self._buffered = 0
        self._first_at = 0.0

    def process(self, table_row: tuple[str, dict]):
        table, row = table_row
        if not self._buffered:
            self._first_at = time.monotonic()
        self._rows[table].append(row)
        self._buffered += 1
        if self._buffered >= self._flush_rows or time.monotonic() - self._first_at >= self._flush_s:
            self._flush()
        return ()

    def finish_bundle(self):
        self._flush()

    def _flush(self) -> None:
        for table in _COMMIT_ORDER:
            rows = self._rows[table]
            if rows:
                commit(self._output, table, rows, self._schemas.get(table))
                self._rows[table] = []
        self._buffered = 0


class WriteIndex(beam.PTransform):
    """Named collections of ``(table, row)`` → the Lance tables under ``output``.

    One writer per collection, fused with the step that made it: a merge (Flatten)
    in front of the writer would make Beam's local runner hold every row until the
    stage ends, and a killed run would keep nothing.
    """

    def __init__(
        self,
        output: str,
        run_id: str,
        flush_rows: int = 2000,
        flush_s: float = 20.0,
        clips_schema: pa.Schema | None = None,
    ):
        super().__init__()
        self._output = output
        self._run_id = run_id
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        # The run's clips schema where it writes optional columns (schemas.clips_schema).
        self._schemas = {"clips": clips_schema} if clips_schema is not None else {}

    def expand(self, rows: dict[str, pvalue.PCollection]) -> pvalue.PDone:
        pipeline = next(iter(rows.values())).pipeline
        for name, table_rows in rows.items():
            _ = table_rows | f"Write{name}" >> beam.ParDo(
                _WriteIndexFn(
                    self._output, self._run_id, self._flush_rows, self._flush_s, self._schemas
                )
            )
        return pvalue.PDone(pipeline)
