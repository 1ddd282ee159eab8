"""The index as SQL: a DuckDB connection whose views hold the rows that stand.

Beam-free. ``connect(output)`` opens the index's Lance tables at one version each
(``video_index.table.snapshot``), or, for an index not yet upgraded, lists its Parquet
files (``video_index.index.index_files``: run files plus the current compacted
generation), and gives an in-memory DuckDB connection with these views:

* ``videos``, ``clips``, ``shots``, ``cues``, ``failures``: the standing rows, with the columns
  of ``video_index.schemas``. The rule: per ``(video_id, uri)`` the newest ``run_id``
  across ``videos`` and ``failures`` stands, with that run's clips; a row repeated
  within one run (a retried bundle) counts once.
* ``segments``: events merged from the standing clips (``video_index.segments``;
  inside one shot where clips carry ``shot_index``, none from clips in a ``cue``):
  video_id, uri, label, start_s, end_s, num_clips, max_score, mean_score, model,
  run_id. Its thresholds are the DuckDB variables ``segment_min_score`` and
  ``segment_max_gap`` (``SET VARIABLE segment_min_score = 0.7`` changes the view).
* ``raw_videos``, ``raw_clips``, ``raw_shots``, ``raw_cues``, ``raw_failures``: every row,
  standing or not; ``newest_runs``: the standing ``(video_id, uri, run_id)``.

The rule is SQL, so DuckDB streams the files and spills to ``temp_directory`` when
a join or window outgrows ``memory_limit``; nothing is loaded into Python. The
connection is a snapshot of the file list: reconnect to see later runs. Local
folders are read by DuckDB itself, ``gs://`` and ``s3://`` through the same fsspec
filesystem the job writes with (``DuckDBPyConnection.register_filesystem``), since
DuckDB's httpfs extension would download itself on first use.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from typing import Callable, Optional, TypeVar

import duckdb
import fsspec

from video_index.index import index_files
from video_index.schemas import TABLES
from video_index.segments import (
    DEFAULT_MAX_GAP_CLIPS,
    DEFAULT_MIN_SCORE,
    check_thresholds,
    segments_sql,
)

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "check_memory_limit",
    "connect",
    "connect_files",
    "indexed_versions",
    "is_schema_mismatch",
    "is_vanished_file",
    "standing_sql",
    "with_retry",
]

# DuckDB's buffer manager limit; with Python, pyarrow and DuckDB's own code the
# process peaks near this plus ~0.3 GB. Joins, sorts and windows over it spill.
DEFAULT_MEMORY_LIMIT = "1GB"

_KEYS = {
    "videos": "video_id, uri",
    "failures": "video_id, uri",
    "clips": "video_id, uri, clip_index",
    "shots": "video_id, uri, shot_index",
    "cues": "video_id, uri, cue_index",
}

T = TypeVar("T")

# A size as DuckDB's memory_limit reads it: a number and a decimal or binary unit.
_SIZE = re.compile(r"\s*\d+(\.\d+)?\s*([KMGT]i?B|[KMGT]|B|bytes)?\s*", re.IGNORECASE)


def check_memory_limit(memory_limit: str) -> str:
    """``memory_limit`` if it is a size (``1GB``, ``512MiB``, ``1.5 GB``); else ValueError.

    The value reaches DuckDB as a bound parameter, never as SQL text; this check
    makes a wrong value a clear error before any connection is made.
    """
    if not isinstance(memory_limit, str) or not _SIZE.fullmatch(memory_limit):
        raise ValueError(f"memory limit must be a size such as 1GB or 512MiB, not {memory_limit!r}")
    return memory_limit.strip()


def _spill_directory() -> str:
    # One per process: DuckDB names its spill files the same in every process.
    path = os.path.join(tempfile.gettempdir(), f"video-index-duckdb-{os.getpid()}")
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)
        atexit.register(shutil.rmtree, path, True)
    return path


def standing_sql(table: str, where: str = "") -> str:
    """SELECT of the standing rows of ``table``; ``where`` filters raw rows first.

    A filter on raw rows gives the same rows as the same filter on the view (rows
    repeated within a run are equal), and lets DuckDB skip data before the join and
    the de-duplication, which it cannot push a filter through.
    """
    where_sql = f"WHERE {where}" if where else ""
    return f"""
SELECT r.* FROM (SELECT * FROM raw_{table} {where_sql}) AS r
SEMI JOIN newest_runs AS n
    ON r.video_id = n.video_id AND r.uri = n.uri AND r.run_id = n.run_id
QUALIFY row_number() OVER (PARTITION BY {', '.join('r.' + k for k in _KEYS[table].split(', '))}) = 1"""


_NEWEST_RUNS = """
SELECT video_id, uri, max(run_id) AS run_id FROM (
    SELECT video_id, uri, run_id FROM raw_videos
    UNION ALL
    SELECT video_id, uri, run_id FROM raw_failures
) GROUP BY video_id, uri"""


def connect(output: str, **options) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views above over the index at ``output``.

    ``output`` is a local folder, ``gs://`` or ``s3://`` URL (the ``--output`` of a
    run); ``options`` are those of ``connect_files``. Raises FileNotFoundError if
    there is no index at ``output``, ValueError for thresholds out of range.

    Example (a notebook)::

        con = connect("gs://bucket/index")
        con.sql("SELECT label, count(*) FROM segments GROUP BY 1 ORDER BY 2 DESC").df()
    """
    check_thresholds(
        options.get("min_score", DEFAULT_MIN_SCORE),
        options.get("max_gap_clips", DEFAULT_MAX_GAP_CLIPS),
    )
    from video_index import table as tables

    narrow = options.pop("narrow", None)
    if tables.has_tables(output):
        tables_at = tables.snapshot(output)
        return connect_tables(narrow(tables_at) if narrow else tables_at, **options)
    fs, _ = fsspec.core.url_to_fs(output)
    return connect_files(fs, index_files(output), **options)


def connect_tables(tables_at: dict, **options) -> duckdb.DuckDBPyConnection:
    """The views over the Lance tables of ``video_index.table.snapshot``: each table at
    the one version the snapshot opened, so what another process commits meanwhile
    (a run, a compaction) changes nothing this connection reads. ``options`` are
    ``connect_files``'s (``union_by_name`` has no use here: a table has one schema).

    A table is registered as its Lance dataset, so DuckDB pushes its projections and
    filters into Lance. DuckDB cannot bind Arrow float16, so a table with a float16
    column (the clips' ``embedding``) is registered as a Lance scan that casts those
    columns to float32 (``video_index.table.duckdb_columns``): the same values, read
    whole by every query of that table.

    A table may also be given as rows already read (a ``pyarrow.Table``): a search
    that found its candidate rows through the tables' indexes
    (``video_index.indexes.label_candidates``) applies the views' exact rules to those
    rows only. ``connect(output, narrow=f)`` passes ``f(snapshot)`` here; an index not
    yet upgraded ignores ``narrow`` (DuckDB scans its files)."""
    import pyarrow as pa

    from video_index.table import duckdb_source

    options.pop("union_by_name", None)

    def source(con: duckdb.DuckDBPyConnection, table: str) -> str:
        dataset = tables_at.get(table)
        if isinstance(dataset, pa.Table):
            con.register(f"rows_{table}", dataset)
            return f"rows_{table}"
        con.register(f"lance_{table}", duckdb_source(table, dataset))
        return f"lance_{table}"

    return _connect(source, **options)


def connect_files(
    fs: fsspec.AbstractFileSystem,
    files: dict[str, list[str]],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    max_gap_clips: int = DEFAULT_MAX_GAP_CLIPS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_directory: Optional[str] = None,
    threads: Optional[int] = None,
    union_by_name: Optional[bool] = None,
) -> duckdb.DuckDBPyConnection:
    """The views over explicit files: ``table -> [path on fs]`` (``index_files``'s form).

    ``min_score`` (0-1) and ``max_gap_clips`` (>= 0) set the segments thresholds;
    ``memory_limit`` is DuckDB's (e.g. ``"1GB"``; ValueError if not a size); spills go to ``temp_directory``
    (default: a folder of this process under the system temp); ``threads`` defaults
    to DuckDB's (the number of cores). ``union_by_name`` forces DuckDB's matching of
    columns by name across files (default: only where the first and last file of a
    table differ, see ``_same_schema``).
    """
    local = _is_local(fs)

    def source(con: duckdb.DuckDBPyConnection, table: str) -> str:
        if not local and table == next(iter(TABLES)):
            con.register_filesystem(fs)  # once, before the first table's files
        paths = [p if local else fs.unstrip_protocol(p) for p in files.get(table, [])]
        if not paths:
            con.register(f"empty_{table}", TABLES[table].empty_table())
            return f"empty_{table}"
        con.execute(f"SET VARIABLE files_{table} = ?", [paths])
        union = union_by_name if union_by_name is not None else not _same_schema(fs, files[table])
        union = str(union).lower()
        return f"read_parquet(getvariable('files_{table}'), union_by_name = {union})"

    return _connect(
        source,
        min_score=min_score,
        max_gap_clips=max_gap_clips,
        memory_limit=memory_limit,
        temp_directory=temp_directory,
        threads=threads,
    )


def _connect(
    source: Callable[[duckdb.DuckDBPyConnection, str], str],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    max_gap_clips: int = DEFAULT_MAX_GAP_CLIPS,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    temp_directory: Optional[str] = None,
    threads: Optional[int] = None,
) -> duckdb.DuckDBPyConnection:
    """A connection whose ``raw_TABLE`` views select from ``source(con, TABLE)``, and the
    standing views over them."""
    memory_limit = check_memory_limit(memory_limit)
    con = duckdb.connect(":memory:")
    con.execute("SET memory_limit = ?", [memory_limit])
    con.execute("SET temp_directory = ?", [temp_directory or _spill_directory()])
    # Results that need an order say so (ORDER BY); this lets big scans stream.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for table in TABLES:
        con.execute(f"CREATE VIEW raw_{table} AS SELECT * FROM {source(con, table)}")
    con.execute(f"CREATE VIEW newest_runs AS {_NEWEST_RUNS}")
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS {standing_sql(table)}")
    set_thresholds(con, min_score, max_gap_clips)
    # Events stay inside shots where clips say which shot they are in (runs with shots).
    clip_columns = {row[0] for row in con.execute("DESCRIBE raw_clips").fetchall()}
    shots = "shots" if "shot_index" in clip_columns else None
    con.execute(f"CREATE VIEW segments AS {segments_sql('clips', shots)}")
    return con


def _same_schema(fs: fsspec.AbstractFileSystem, paths: list[str]) -> bool:
    """Whether the first and last file (oldest and newest run) have one schema.

    DuckDB reads every file's footer at each bind with ``union_by_name`` (a request
    per file on a bucket, at every query), without it only the first file's; files
    without a column the first one has are then an error. Schemas change between
    releases, so between runs, and file names sort by run: where the oldest and the
    newest file agree, all do, and the cheap bind is safe. Otherwise files written
    before a column was added read it as NULL.
    """
    import pyarrow.parquet as pq

    schemas = []
    for path in {paths[0], paths[-1]}:
        with fs.open(path, "rb") as f:
            schemas.append(pq.read_schema(f).remove_metadata())
    return all(s.equals(schemas[0]) for s in schemas)


def set_thresholds(con: duckdb.DuckDBPyConnection, min_score: float, max_gap_clips: int) -> None:
    """Set the segments thresholds of a connection (see ``video_index.segments``)."""
    check_thresholds(min_score, max_gap_clips)
    con.execute("SET VARIABLE segment_min_score = ?::DOUBLE", [float(min_score)])
    con.execute("SET VARIABLE segment_max_gap = ?::INTEGER", [int(max_gap_clips)])


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def is_vanished_file(error: BaseException) -> bool:
    """Whether a DuckDB error says a file it was given is gone (compacted away)."""
    text = str(error).lower()
    return isinstance(error, duckdb.Error) and (
        "no such file" in text or "not found" in text or "does not exist" in text
    )


def with_retry(output: str, work: Callable[[duckdb.DuckDBPyConnection], T], **kwargs) -> T:
    """``work(connect(output, **kwargs))``, once more on a fresh snapshot if files vanished.

    A compaction that commits while a reader runs deletes the files it replaced;
    the reader's snapshot then names files that are gone. Its second snapshot sees
    the compacted files.
    """
    try:
        return work(connect(output, **kwargs))
    except duckdb.Error as error:
        if is_schema_mismatch(error):
            # A file between the first and the last lacks a column (a run with
            # --no-embeddings between two with): match columns by name everywhere.
            kwargs = {**kwargs, "union_by_name": True}
        elif not is_vanished_file(error):
            raise
    return work(connect(output, **kwargs))


def is_schema_mismatch(error: BaseException) -> bool:
    """Whether a DuckDB error says one file of a table lacks a column that another has."""
    return isinstance(error, duckdb.Error) and "schema mismatch" in str(error).lower()


def indexed_versions(
    output: str, model: str, retry_failed: bool = False
) -> dict[str, tuple[Optional[int], Optional[str]]]:
    """``uri -> (size, version)`` of every video the index already holds for ``model``.

    Content failures count too: an unchanged file that failed on its content would
    fail again. Transient failures (``failures.transient``) do not, and with
    ``retry_failed`` no failure does: those videos are tried again. A video whose
    size or version is unknown is never taken as unchanged. Read through the SQL
    views: only the standing videos and failures, never the clips. An output that
    does not exist yet holds nothing.
    """
    failed = """
        UNION ALL
        SELECT uri, size, version FROM failures
        WHERE model = $model AND size IS NOT NULL AND version IS NOT NULL"""

    def read(con) -> dict:
        sql = """
            SELECT uri, size, version FROM videos
            WHERE model = $model AND size IS NOT NULL AND version IS NOT NULL"""
        if not retry_failed:
            columns = {row[0] for row in con.execute("DESCRIBE failures").fetchall()}
            # An index written before the column: its failures count as content ones.
            sql += failed + (" AND transient IS NOT TRUE" if "transient" in columns else "")
        result = con.execute(sql, {"model": model})
        done = {}
        while batch := result.fetchmany(10_000):
            for uri, size, version in batch:
                done[uri] = (size, version)
        return done

    try:
        return with_retry(output, read)
    except FileNotFoundError:
        return {}
