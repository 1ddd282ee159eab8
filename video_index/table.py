"""The index's tables as Lance datasets: idempotent commits, snapshots, and the upgrade.

Beam-free. Each table of ``SPECS`` is one Lance dataset, ``OUTPUT/<table>.lance``
(the format was chosen by measurement: ``docs/table-format.md``). Lance commits by
writing the next version's manifest only if it is absent, on a local disk and on
``gs://``/``s3://`` alike, so any number of processes commit to one table with no lock
of ours, and a reader opens one version (a snapshot) and keeps reading it while others
commit; old versions stay readable until ``cleanup_old_versions`` removes them.

``commit_rows`` merges rows on their table's key and ``run_id``, inserting only rows
not there yet: a runner that retries a bundle commits the same rows again and nothing
changes. A new table is one ``TableSpec`` in ``SPECS``.

The standing rule is kept in the tables by two deletes (each a commit, reachable by
time travel until old versions are cleaned up):

- ``supersede(output, run_id, videos)``, once a run's video or failure rows for
  ``videos`` are committed (its clips were committed before them): every table's rows of
  those videos from runs older than their newest go. Newest run wins by ``run_id``, so
  two runs at once end with the later run's rows whatever order their commits land in.
- ``remove_orphans(output, running)``: clips of a run that never committed their
  video's row (a killed run), except for runs still ``running``.

Between a run's commits a plain reader may see one video's new clips beside its old
row; after ``supersede`` and ``remove_orphans`` every table holds exactly the rows that
stand, and DuckDB, Polars or pyarrow read them with no rule of ours.

``upgrade(output)`` converts today's layout (``TABLE/*.parquet`` run files, the
``_compacted.json`` pointer) into these tables with exactly the rows that stand
(``video_index.query``'s views): the standing rule is then held by the table's rows,
not by a reader's rule.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Optional

import lance
import pyarrow as pa
import pyarrow.parquet as pq

from video_index.schemas import CLIPS, FAILURES, VIDEOS
from video_index.storage import filesystem, retrying

__all__ = [
    "FORMAT",
    "SPECS",
    "TableDamaged",
    "TableSpec",
    "commit_rows",
    "format_version",
    "has_tables",
    "compact",
    "connect",
    "open_table",
    "snapshot",
    "remove_orphans",
    "supersede",
    "table_uri",
    "upgrade",
]

FORMAT = "lance"


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """A table of the index: its schema and the columns that name one row in a run.

    ``key`` plus ``run_id`` is unique in the table: ``commit_rows`` never inserts a row
    whose key and run are already there.
    """

    name: str
    schema: pa.Schema
    key: tuple[str, ...]


SPECS = {
    spec.name: spec
    for spec in (
        TableSpec("videos", VIDEOS, ("video_id", "uri")),
        TableSpec("clips", CLIPS, ("video_id", "uri", "clip_index")),
        TableSpec("failures", FAILURES, ("video_id", "uri")),
    )
}


class TableDamaged(RuntimeError):
    """A table's folder exists but Lance cannot open it (its versions lost or broken)."""


def format_version() -> str:
    """``"lance <pylance version>"``: what a run record names as the index's format."""
    return f"{FORMAT} {lance.__version__}"


def table_uri(output: str, table: str) -> str:
    """``OUTPUT/<table>.lance`` (any fsspec URL or local path)."""
    return f"{output.rstrip('/')}/{table}.lance"


def open_table(output: str, table: str, version: Optional[int] = None):
    """The table's ``lance.LanceDataset`` at ``version`` (default: the newest), or None.

    None only where the table's folder does not exist. A folder that exists but cannot
    be opened (a copy that skipped ``_versions/``, a damaged manifest) raises
    TableDamaged naming it: a lost metadata file never reads as an empty index.
    """
    uri = table_uri(output, table)
    fs, path = filesystem(uri)
    if not retrying(fs.exists, path):
        return None
    try:
        return lance.dataset(uri, version=version)
    except (ValueError, OSError) as error:
        raise TableDamaged(f"cannot open the {table} table at {uri}: {error}") from error


def _conform(rows: pa.Table, spec: TableSpec, optional: Optional[dict] = None) -> pa.Table:
    """``rows`` with the spec's columns in order and type, then any optional columns
    (in the types ``optional`` names, where it names them)."""
    optional = optional or {}
    extra = [
        pa.field(f.name, optional.get(f.name, f.type))
        for f in rows.schema
        if spec.schema.get_field_index(f.name) < 0
    ]
    schema = pa.schema(list(spec.schema) + extra)
    for field in spec.schema:
        if field.name not in rows.column_names:
            rows = rows.append_column(field.name, pa.nulls(rows.num_rows, field.type))
    return rows.select(schema.names).cast(schema)


def commit_rows(output: str, table: str, rows: pa.Table) -> None:
    """Commit ``rows`` to ``table``: rows whose key and ``run_id`` are there already are
    skipped, so committing the same rows twice is one commit's worth.

    ``rows`` holds the spec's columns (missing ones become nulls) and may add optional
    ones (``schemas.clips_schema``). Lance retries a commit that races another
    writer's; a table's first commit that loses the race to create it merges instead.
    """
    spec = SPECS[table]
    rows = _conform(rows, spec)
    if rows.num_rows == 0 and open_table(output, table) is not None:
        return
    dataset = open_table(output, table)
    if dataset is None:
        try:
            lance.write_dataset(rows, table_uri(output, table), mode="create")
            return
        except (OSError, ValueError):
            dataset = open_table(output, table)  # another writer created it first
            if dataset is None:
                raise
    on = [*spec.key, "run_id"]
    dataset.merge_insert(on).when_not_matched_insert_all().execute(rows)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _video_filters(videos: list[tuple[str, str]], chunk: int = 500):
    """SQL filters, each matching up to ``chunk`` of the ``(video_id, uri)`` pairs exactly."""
    for start in range(0, len(videos), chunk):
        pairs = ", ".join(
            f"{_quote(video_id)} || chr(0) || {_quote(uri)}"
            for video_id, uri in videos[start : start + chunk]
        )
        yield f"concat(video_id, chr(0), uri) IN ({pairs})"


def supersede(output: str, run_id: str, videos: list[tuple[str, str]]) -> None:
    """Keep only the newest run's rows of ``videos`` (``(video_id, uri)`` pairs), in every
    table: call once ``run_id``'s rows for them are committed.

    The newest run of a video is the greatest ``run_id`` among its videos and failures
    rows at the time of the call (``run_id`` at least), so a run that commits after a
    newer one removes its own rows again, and two runs end the same in either order.
    """
    newest: dict[tuple[str, str], str] = {pair: run_id for pair in set(videos)}
    for table in ("videos", "failures"):
        dataset = open_table(output, table)
        if dataset is None:
            continue
        for where in _video_filters(sorted(newest)):
            found = dataset.to_table(columns=["video_id", "uri", "run_id"], filter=where)
            for video_id, uri, run in zip(*(c.to_pylist() for c in found.columns)):
                newest[(video_id, uri)] = max(newest[(video_id, uri)], run)
    by_run: dict[str, list[tuple[str, str]]] = {}
    for pair, run in sorted(newest.items()):
        by_run.setdefault(run, []).append(pair)
    for table in SPECS:
        dataset = open_table(output, table)
        if dataset is None:
            continue
        for run, pairs in by_run.items():
            for where in _video_filters(pairs):
                dataset.delete(f"run_id < {_quote(run)} AND {where}")


def remove_orphans(output: str, running: frozenset[str] = frozenset()) -> int:
    """Delete clips whose run has no videos or failures row for their video (a killed
    run's clips), except those of ``running`` runs; returns how many went.
    """
    import duckdb

    clips = open_table(output, "clips")
    if clips is None:
        return 0
    keys = ["video_id", "uri", "run_id"]
    con = duckdb.connect()
    con.register("clips", clips.scanner(columns=keys))
    ended = []
    for table in ("videos", "failures"):
        dataset = open_table(output, table)
        if dataset is not None:
            con.register(table, dataset.scanner(columns=keys))
            ended.append(f"SELECT video_id, uri, run_id FROM {table}")
    rows = " UNION ALL ".join(ended) or "SELECT NULL AS video_id, NULL AS uri, NULL AS run_id"
    orphans = con.sql(
        f"SELECT DISTINCT c.video_id, c.uri, c.run_id FROM clips AS c "
        f"ANTI JOIN ({rows}) AS v USING (video_id, uri, run_id) ORDER BY ALL"
    ).fetchall()
    con.close()
    by_run: dict[str, list[tuple[str, str]]] = {}
    for video_id, uri, run in orphans:
        if run not in running:
            by_run.setdefault(run, []).append((video_id, uri))
    before = clips.count_rows()
    for run, pairs in by_run.items():
        for where in _video_filters(pairs):
            clips.delete(f"run_id = {_quote(run)} AND {where}")
    return before - open_table(output, "clips").count_rows() if by_run else 0


def snapshot(output: str) -> dict:
    """``table -> LanceDataset`` (None where the table does not exist), each opened once
    at its newest version: what one reader reads, however others commit meanwhile."""
    return {table: open_table(output, table) for table in SPECS}


def _readable_columns(schema: pa.Schema) -> list[str]:
    # DuckDB cannot bind an Arrow float16 column, even one a query never reads.
    def half(t: pa.DataType) -> bool:
        return t == pa.float16() or (hasattr(t, "value_type") and half(t.value_type))

    return [f.name for f in schema if not half(f.type)]


def connect(tables_at: dict):
    """A DuckDB connection with a view per table of ``tables_at`` (from ``snapshot``):
    its rows at that version, float16 columns left out; an absent table is empty."""
    import duckdb

    con = duckdb.connect()
    for table, dataset in tables_at.items():
        if dataset is None:
            source = SPECS[table].schema.empty_table()
        else:
            source = dataset.scanner(columns=_readable_columns(dataset.schema))
        con.register(table, source)
    return con


def compact(output: str, retention_s: float = 7 * 24 * 3600) -> dict[str, int]:
    """Compact each table's small files, fold new rows into its indexes, and remove the
    files of versions older than ``retention_s`` (readers of those versions keep working
    until then); returns the data files per table after it.

    Each step is a Lance commit or a removal of files no version in the window uses, so
    a compaction killed at any moment leaves every table readable with the same rows.
    """
    files = {}
    for table in SPECS:
        dataset = open_table(output, table)
        if dataset is None:
            continue
        dataset.optimize.compact_files()
        if dataset.describe_indices():
            dataset.optimize.optimize_indices()
        dataset.cleanup_old_versions(older_than=timedelta(seconds=retention_s))
        files[table] = len(open_table(output, table).get_fragments())
    return files


def upgrade(output: str, *, memory_limit: str = "2GB") -> dict[str, int]:
    """Convert the Parquet layout at ``output`` into Lance tables; returns rows per table.

    Writes the rows that stand now (``video_index.query``'s ``videos``, ``clips`` and
    ``failures`` views: per ``(video_id, uri)`` the newest run, that run's clips, once)
    into ``OUTPUT/<table>.lance``, streamed in batches, one table at a time. The Parquet
    files are left where they are. Raises FileExistsError if a table is already there.
    """
    from video_index.index import index_files
    from video_index.query import connect

    for table in SPECS:
        if open_table(output, table) is not None:
            raise FileExistsError(f"{table_uri(output, table)} exists: already upgraded")
    con = connect(output, memory_limit=memory_limit)
    fs, _ = filesystem(output)
    written = {}
    for table, spec in SPECS.items():
        # DuckDB reads a fixed-size float16 embedding back as a float list: the optional
        # columns keep the type the run files wrote (read from their footers).
        optional = {}
        for path in index_files(output)[table]:
            for field in pq.read_schema(path, filesystem=fs):
                if spec.schema.get_field_index(field.name) < 0:
                    optional.setdefault(field.name, field.type)
        reader = con.sql(f"SELECT * FROM {table}").to_arrow_reader(100_000)
        schema = _conform(reader.schema.empty_table(), spec, optional).schema
        batches = (_conform(pa.Table.from_batches([b]), spec, optional) for b in reader)
        source = pa.RecordBatchReader.from_batches(
            schema, (batch for table_ in batches for batch in table_.to_batches())
        )
        dataset = lance.write_dataset(source, table_uri(output, table), schema=schema)
        written[table] = dataset.count_rows()
    con.close()
    return written


def has_tables(output: str) -> bool:
    """Whether ``output`` holds the index as Lance tables (any of them)."""
    for table in SPECS:
        fs, path = filesystem(table_uri(output, table))
        if retrying(fs.exists, path):
            return True
    return False
