"""WriteIndex: ``(table, row)`` pairs → Parquet files under ``OUTPUT/{videos,clips,failures}/``.

Takes PCollections of ``(table, row dict)`` (schemas in ``video_index.schemas``) and
writes each table as Parquet files through fsspec, so the same code writes to a
local folder, ``gs://`` or ``s3://``.

A file is written under ``TABLE/_tmp/`` and then moved into place, so a reader
never sees a half-written file (readers such as ``pyarrow.dataset`` and DuckDB's
``TABLE/*.parquet`` skip ``_``-prefixed paths). Rows are committed every
``flush_rows`` rows or ``flush_s`` seconds, not only when a bundle ends, so a
killed run keeps what it finished. A runner that retries a bundle can commit some
rows twice; readers keep one row per video (``video_index.index.read_table``).
"""

from __future__ import annotations

import time
import uuid

import apache_beam as beam
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue

from video_index.schemas import TABLES
from video_index.storage import retrying


def write_rows(
    output: str, table: str, rows: list[dict], file_stem: str, schema: pa.Schema | None = None
) -> str:
    """Write rows as one Parquet file of ``table``, atomically; returns its URI.

    ``schema`` (default ``TABLES[table]``) may add optional columns, such as
    ``schemas.clips_schema`` does.

    The write to ``_tmp/`` and the move into place are retried together on transient
    storage errors (``video_index.storage.retrying``). A retry rewrites the temporary
    file whole and moves it onto the same final name, which only this call uses, so
    a retried commit still leaves exactly one complete file.
    """
    schema = schema or TABLES[table]
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    table_dir = f"{root}/{table}"
    tmp_path = f"{table_dir}/_tmp/{file_stem}.parquet"
    final_path = f"{table_dir}/{file_stem}.parquet"
    arrow_table = pa.Table.from_pylist(rows, schema=schema)

    def commit(path: str) -> None:
        fs.makedirs(f"{table_dir}/_tmp", exist_ok=True)
        with fs.open(tmp_path, "wb") as f:
            pq.write_table(arrow_table, f, compression="zstd")
        try:
            fs.mv(tmp_path, path)
        except FileNotFoundError:
            # A move whose answer was lost, retried inside the storage client, finds
            # its source gone: it is committed if the final file is there instead.
            fs.invalidate_cache()
            if fs.exists(tmp_path) or not fs.exists(path):
                raise

    retrying(commit, final_path)
    return final_path


def ensure_tables(output: str) -> None:
    """Give every table that has no Parquet file yet an empty one with its schema.

    So ``TABLE/*.parquet`` globs (DuckDB, pandas) and ``pyarrow.dataset(TABLE)`` read
    every table after every run, e.g. ``failures/`` of a run where nothing failed.
    """
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    for table in TABLES:
        if not retrying(fs.glob, f"{root}/{table}/*.parquet"):
            write_rows(output, table, [], "empty")


# Commit order within a flush: a video's clips and shots before its row, so that a
# committed video row always has them committed (a resumed run skips that video).
_COMMIT_ORDER = ("clips", "shots", "cues", "failures", "videos")


class _WriteIndexFn(beam.DoFn):
    """Buffers (table, row) pairs; commits one file per table every flush."""

    def __init__(self, output: str, run_id: str, flush_rows: int, flush_s: float, schemas: dict):
        self._output = output
        self._run_id = run_id
        self._flush_rows = flush_rows
        self._flush_s = flush_s
        self._schemas = schemas

    def setup(self):
        # One writer id per DoFn instance: file names never collide across workers.
        self._writer = uuid.uuid4().hex[:12]
        self._files = 0

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
                stem = f"{self._run_id}-{self._writer}-{self._files:05d}"
                write_rows(self._output, table, rows, stem, self._schemas.get(table))
                self._files += 1
                self._rows[table] = []
        self._buffered = 0


class WriteIndex(beam.PTransform):
    """Named collections of ``(table, row)`` → Parquet tables under ``output``.

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
        # At the start of the run, so even a run that dies leaves readable tables.
        _ = (
            pipeline
            | "Tables" >> beam.Create([self._output])
            | "EnsureTables" >> beam.Map(ensure_tables)
        )
        for name, table_rows in rows.items():
            _ = table_rows | f"Write{name}" >> beam.ParDo(
                _WriteIndexFn(
                    self._output, self._run_id, self._flush_rows, self._flush_s, self._schemas
                )
            )
        return pvalue.PDone(pipeline)
