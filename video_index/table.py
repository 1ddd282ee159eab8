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

``video_index.upgrade`` converts the old layout (``TABLE/*.parquet`` run files) into
these tables. This module imports neither ``video_index.index`` nor ``query``: they
read through it.
"""

from __future__ import annotations

import dataclasses
import warnings
from datetime import timedelta
from typing import Optional

import lance
import pyarrow as pa

# Lance warns at every fork (os.register_at_fork), also at the fork of subprocess's
# fork-exec, which it does not concern: our processes fork only to exec (the decoders,
# tools), never to run Lance in the child. Only that message is filtered.
warnings.filterwarnings("ignore", message="lance is not fork-safe", category=UserWarning)
import pyarrow.parquet as pq

from video_index.schemas import CLIPS_TABLE, CUES, FAILURES, SHOTS, TOP1, VIDEOS
from video_index.storage import filesystem, lance_options, retrying

__all__ = [
    "Damaged",
    "FORMAT",
    "SPECS",
    "TableDamaged",
    "TableMismatch",
    "TableSpec",
    "commit_rows",
    "add_first_columns",
    "ensure_tables",
    "first_elements",
    "table_schema",
    "file_count",
    "format_version",
    "has_tables",
    "compact",
    "damaged",
    "connect",
    "open_table",
    "snapshot",
    "sql_string",
    "duckdb_columns",
    "duckdb_source",
    "readable_columns",
    "remove_orphans",
    "repair",
    "settle",
    "supersede",
    "table_uri",
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
    # (column, list column): ``column`` holds the first element of ``list column``,
    # written by ``conform_rows`` (``schemas.TOP1``: a clip's top-1 label and score).
    first_of: tuple[tuple[str, str], ...] = ()


SPECS = {
    spec.name: spec
    for spec in (
        TableSpec("videos", VIDEOS, ("video_id", "uri")),
        TableSpec("clips", CLIPS_TABLE, ("video_id", "uri", "clip_index"), TOP1),
        TableSpec("shots", SHOTS, ("video_id", "uri", "shot_index")),
        TableSpec("cues", CUES, ("video_id", "uri", "cue_index")),
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
        return lance.dataset(uri, version=version, storage_options=lance_options(uri))
    except (ValueError, OSError) as error:
        raise TableDamaged(f"cannot open the {table} table at {uri}: {error}") from error


def conform_rows(rows: pa.Table, spec: TableSpec, optional: Optional[dict] = None) -> pa.Table:
    """``rows`` with the spec's columns in order and type, then any optional columns
    (in the types ``optional`` names, where it names them). The spec's ``first_of``
    columns are made from their lists where ``rows`` lacks them."""
    optional = optional or {}
    for column, source in spec.first_of:
        if column not in rows.column_names and source in rows.column_names:
            rows = rows.append_column(column, first_elements(rows.column(source)))
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


def table_schema(table: str, rows: Optional[pa.Schema] = None) -> pa.Schema:
    """The schema ``table`` has for rows of schema ``rows`` (default: the spec's): the
    spec's columns, its ``first_of`` columns, then the optional ones ``rows`` adds (a
    run's ``schemas.clips_schema``), as ``commit_rows`` writes them."""
    spec = SPECS[table]
    return conform_rows((rows or spec.schema).empty_table(), spec).schema


def first_elements(lists) -> pa.Array:
    """The first element of each list of ``lists`` (a list ``pyarrow`` array or chunked
    array), null where a list is empty or null: an array of the lists' value type."""
    import numpy as np
    import pyarrow.compute as pc

    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    present = pc.fill_null(pc.greater(pc.list_value_length(lists), 0), False).to_numpy(
        zero_copy_only=False
    )
    firsts = pc.list_flatten(pc.list_slice(lists, 0, 1))
    positions = np.zeros(len(lists), dtype=np.int64)
    positions[present] = np.arange(int(present.sum()))
    return firsts.take(pa.array(positions, mask=~present))


def _add_columns(output: str, spec: TableSpec, fields: list[pa.Field]):
    """Add ``fields`` to the spec's table and return it reopened. Older rows read a
    plain column as null; a ``first_of`` column is computed by Lance from its list in
    every row (an index written before the column existed)."""
    first = dict(spec.first_of)
    computed = {f.name: f"{first[f.name]}[1]" for f in fields if f.name in first}
    plain = [f for f in fields if f.name not in first]
    if plain:
        open_table(output, spec.name).add_columns(plain)
    if computed:
        open_table(output, spec.name).add_columns(computed)
    return open_table(output, spec.name)


def add_first_columns(output: str) -> list[str]:
    """Add the ``first_of`` columns (``schemas.TOP1``) that existing tables lack, one
    commit per table; returns the ``table.column`` names added. Readers keep their
    snapshot meanwhile."""
    added = []
    for table, spec in SPECS.items():
        dataset = open_table(output, table)
        if dataset is None:
            continue
        missing = [
            spec.schema.field(column)
            for column, _ in spec.first_of
            if dataset.schema.get_field_index(column) < 0
        ]
        if missing:
            _add_columns(output, spec, missing)
            added += [f"{table}.{f.name}" for f in missing]
    return added


def commit_rows(output: str, table: str, rows: pa.Table) -> None:
    """Commit ``rows`` to ``table``: rows whose key and ``run_id`` are there already are
    skipped, so committing the same rows twice is one commit's worth.

    ``rows`` holds the spec's columns (missing ones become nulls) and may add optional
    ones (``schemas.clips_schema``). Lance retries a commit that races another
    writer's; a table's first commit that loses the race to create it merges instead.
    """
    spec = SPECS[table]
    rows = conform_rows(rows, spec)
    dataset = open_table(output, table)
    if rows.num_rows == 0 and dataset is not None:
        return
    if dataset is None:
        try:
            uri = table_uri(output, table)
            lance.write_dataset(rows, uri, mode="create", storage_options=lance_options(uri))
            return
        except (OSError, ValueError):
            dataset = open_table(output, table)  # another writer created it first
            if dataset is None:
                raise
    new_columns = [f for f in rows.schema if dataset.schema.get_field_index(f.name) < 0]
    if new_columns:
        # A run that writes an optional column the table lacks (thumbnails after a run
        # without): the older rows read it as null.
        dataset = _add_columns(output, spec, new_columns)
    on = [*spec.key, "run_id"]
    dataset.merge_insert(on).when_not_matched_insert_all().execute(rows)


class TableMismatch(ValueError):
    """A table holds a column of another type than a run writes (say embeddings of
    another width, from another model)."""


def ensure_tables(output: str, schemas: Optional[dict[str, pa.Schema]] = None) -> None:
    """Create every table of ``SPECS`` that does not exist yet, empty, and add to each
    the optional columns ``schemas[table]`` names (nulls in older rows) and the
    ``first_of`` columns it lacks (computed from older rows' lists): each table gets
    ``table_schema(table, schemas.get(table))``.

    Called once by a run's launcher before any worker commits, so the workers' commits
    never change a schema, and every table is readable (by any engine) after any run,
    ``failures`` of a run where nothing failed too. Raises TableMismatch where a column
    exists with another type (one line naming table, column and both types), and
    TableDamaged where a table cannot be opened.
    """
    schemas = schemas or {}
    for table, spec in SPECS.items():
        schema = table_schema(table, schemas.get(table))
        dataset = open_table(output, table)
        if dataset is None:
            commit_rows(output, table, schema.empty_table())
            continue
        for field in schema:
            index = dataset.schema.get_field_index(field.name)
            if index >= 0 and dataset.schema.field(index).type != field.type:
                raise TableMismatch(
                    f"{table_uri(output, table)} has {field.name} as "
                    f"{dataset.schema.field(index).type}, this run writes {field.type} "
                    "(another model's index: give another --output)"
                )
        missing = [f for f in schema if dataset.schema.get_field_index(f.name) < 0]
        if missing:
            _add_columns(output, spec, missing)


def file_count(output: str) -> int:
    """Data files (Lance fragments) over all tables of the newest versions: what
    ``compact`` folds into few. Each commit of a run adds one per table it writes."""
    total = 0
    for table in SPECS:
        dataset = open_table(output, table)
        if dataset is not None:
            total += len(dataset.get_fragments())
    return total


def sql_string(text: str) -> str:
    """``text`` as an SQL string literal (single quotes doubled), for Lance filters and
    DuckDB."""
    return "'" + text.replace("'", "''") + "'"


def _video_filters(videos: list[tuple[str, str]], chunk: int = 500):
    """SQL filters, each matching up to ``chunk`` of the ``(video_id, uri)`` pairs exactly."""
    for start in range(0, len(videos), chunk):
        pairs = ", ".join(
            f"{sql_string(video_id)} || chr(0) || {sql_string(uri)}"
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
                dataset.delete(f"run_id < {sql_string(run)} AND {where}")


def remove_orphans(
    output: str, running: frozenset[str] = frozenset(), only: Optional[frozenset[str]] = None
) -> int:
    """Delete clips, shots and cues whose run has no videos or failures row for their
    video (a killed run's), except those of ``running`` runs and, where ``only`` is
    given, of runs not in it; returns how many went.
    """
    return sum(
        _remove_orphans(output, table, running, only) for table in ("clips", "shots", "cues")
    )


def settle(output: str, run_id: str, ended: frozenset[str] = frozenset()) -> int:
    """A run's end: every video with a row of ``run_id``, or rows of more than one run,
    in ``videos`` and ``failures`` keeps only its newest run's rows in every table
    (``supersede``; this covers the videos ``run_id`` redid, the clips a killed run left
    for them, and the videos of a killed run that never settled), then
    ``remove_orphans`` of ``run_id`` and the ``ended`` runs (a run still going
    elsewhere keeps its clips); returns how many orphan rows went.

    After it a plain reader of each table's newest version counts the standing rows.
    """
    import duckdb

    con = duckdb.connect()
    # A video that has a row of this run or rows of several runs: its rows of older
    # runs go everywhere, the clips a killed run left for it among them.
    repeated = con.sql(
        f"SELECT video_id, uri FROM ({_owner_rows(con, output)}) GROUP BY ALL "
        f"HAVING count(DISTINCT run_id) > 1 OR bool_or(run_id = {sql_string(run_id)}) "
        "ORDER BY ALL"
    ).fetchall()
    con.close()
    if repeated:
        # The newest run among each video's rows wins (run ids sort by start time).
        supersede(output, "", repeated)
    return remove_orphans(output, only=frozenset(ended) | {run_id})


_OWNER_KEYS = ("video_id", "uri", "run_id")


def _owner_rows(con, output: str) -> str:
    """Registers the ``videos`` and ``failures`` tables' key columns with ``con``;
    returns the SQL of their rows' ``(video_id, uri, run_id)``, one table after the
    other (no rows where neither exists)."""
    selects = []
    for table in ("videos", "failures"):
        dataset = open_table(output, table)
        if dataset is not None:
            con.register(table, dataset.scanner(columns=list(_OWNER_KEYS)))
            selects.append(f"SELECT video_id, uri, run_id FROM {table}")
    return " UNION ALL ".join(selects) or (
        "SELECT NULL::VARCHAR AS video_id, NULL::VARCHAR AS uri, NULL::VARCHAR AS run_id "
        "WHERE false"
    )


def _remove_orphans(
    output: str, table: str, running: frozenset[str], only: Optional[frozenset[str]]
) -> int:
    import duckdb

    parts = open_table(output, table)
    if parts is None:
        return 0
    con = duckdb.connect()
    con.register("parts", parts.scanner(columns=list(_OWNER_KEYS)))
    orphans = con.sql(
        f"SELECT DISTINCT c.video_id, c.uri, c.run_id FROM parts AS c "
        f"ANTI JOIN ({_owner_rows(con, output)}) AS v USING (video_id, uri, run_id) "
        "ORDER BY ALL"
    ).fetchall()
    con.close()
    by_run: dict[str, list[tuple[str, str]]] = {}
    for video_id, uri, run in orphans:
        if run not in running and (only is None or run in only):
            by_run.setdefault(run, []).append((video_id, uri))
    before = parts.count_rows()
    for run, pairs in by_run.items():
        for where in _video_filters(pairs):
            parts.delete(f"run_id = {sql_string(run)} AND {where}")
    return before - open_table(output, table).count_rows() if by_run else 0


def snapshot(output: str) -> dict:
    """``table -> LanceDataset`` (None where the table does not exist), each opened once
    at its newest version: what one reader reads, however others commit meanwhile."""
    return {table: open_table(output, table) for table in SPECS}


def _half(t: pa.DataType) -> bool:
    return t == pa.float16() or (hasattr(t, "value_type") and _half(t.value_type))


def readable_columns(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` DuckDB can bind: all but float16 ones (DuckDB 2.0
    refuses an Arrow source with any float16 column, even one a query never reads)."""
    return [f.name for f in schema if not _half(f.type)]


def duckdb_columns(schema: pa.Schema) -> Optional[dict[str, str]]:
    """None where DuckDB can bind ``schema`` as it is; else a Lance projection of every
    column in which float16 (scalars, lists, fixed-size lists of them) becomes float32,
    for ``LanceDataset.scanner(columns=...)``."""
    if not any(_half(f.type) for f in schema):
        return None

    def wider(t: pa.DataType) -> str:
        if t == pa.float16():
            return "Float32"
        if pa.types.is_fixed_size_list(t):
            return f"FixedSizeList({t.list_size}, {wider(t.value_type)})"
        return f"List({wider(t.value_type)})"

    return {
        f.name: f"arrow_cast({f.name}, '{wider(f.type)}')" if _half(f.type) else f.name
        for f in schema
    }


def duckdb_source(table: str, dataset):
    """What to register with DuckDB for ``table`` at ``dataset`` (a ``LanceDataset``,
    None where the table does not exist): the dataset itself (DuckDB pushes projections
    and filters into Lance), a scan casting float16 columns to float32 where it has any
    (``duckdb_columns``), or an empty table of the spec's schema."""
    if dataset is None:
        return SPECS[table].schema.empty_table()
    columns = duckdb_columns(dataset.schema)
    return dataset if columns is None else dataset.scanner(columns=columns)


def connect(tables_at: dict):
    """A DuckDB connection with a view per table of ``tables_at`` (from ``snapshot``):
    its rows at that version, float16 columns as float32; an absent table is empty."""
    import duckdb

    con = duckdb.connect()
    for table, dataset in tables_at.items():
        con.register(table, duckdb_source(table, dataset))
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


def has_tables(output: str) -> bool:
    """Whether ``output`` holds the index as Lance tables (any of them)."""
    for table in SPECS:
        fs, path = filesystem(table_uri(output, table))
        if retrying(fs.exists, path):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class Damaged:
    """A data file of a table that cannot be read: ``path`` (under the table's
    ``data/``), its table and Lance fragment id, and the first line of the error."""

    table: str
    fragment_id: int
    path: str
    error: str


def damaged(output: str) -> list[Damaged]:
    """Every data file of the newest versions that cannot be read whole, in table order.

    Reads each fragment through, batch by batch (memory stays that of one batch): a
    full read of the index, so this is the slow check that ``repair`` and a reader's
    error message run, not something a reader does on its way. Raises TableDamaged
    where a table's versions themselves cannot be opened.
    """
    found = []
    for table in SPECS:
        dataset = open_table(output, table)
        if dataset is None:
            continue
        for fragment in dataset.get_fragments():
            try:
                for _ in fragment.to_batches(batch_size=4096):
                    pass
            except (OSError, ValueError, pa.ArrowException) as error:
                files = [f.path for f in fragment.data_files()]
                path = f"{table_uri(output, table)}/data/{files[0]}" if files else "?"
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                found.append(Damaged(table, fragment.fragment_id, path, first))
    return found


def repair(output: str, running: frozenset[str] = frozenset()) -> dict:
    """Bring an index with unreadable data files back to working order; returns
    ``{"removed": [Damaged, ...], "videos_to_redo": N}``.

    Each damaged file leaves its table in a commit of its own (the rows it held are
    lost: they could not be read; older versions keep the file until cleaned up). Then
    what depended on them goes, so the standing rows stay whole and the next run indexes
    those videos again: clips, shots and cues whose video row is gone (every run not
    ``running``), and videos rows whose clips are no longer all there. Run it when no
    run is writing to the index, or name the runs that are in ``running``.
    """
    removed = damaged(output)
    by_table: dict[str, list[Damaged]] = {}
    for item in removed:
        by_table.setdefault(item.table, []).append(item)
    for table, items in by_table.items():
        dataset = open_table(output, table)
        operation = lance.LanceOperation.Delete(
            [], [item.fragment_id for item in items], "repair: unreadable data files"
        )
        uri = table_uri(output, table)
        lance.LanceDataset.commit(
            uri, operation, read_version=dataset.version, storage_options=lance_options(uri)
        )
    redo = 0
    if removed:
        remove_orphans(output, running=running)
        redo = _remove_incomplete_videos(output, running)
        remove_orphans(output, running=running)
    return {"removed": removed, "videos_to_redo": redo}


def _remove_incomplete_videos(output: str, running: frozenset[str]) -> int:
    """Delete videos rows (of runs not ``running``) with fewer clips than ``num_clips``
    says: a resumed run then indexes those videos again. Returns how many went."""
    import duckdb

    videos, clips = open_table(output, "videos"), open_table(output, "clips")
    if videos is None:
        return 0
    con = duckdb.connect()
    con.register("v", videos.scanner(columns=["video_id", "uri", "run_id", "num_clips"]))
    if clips is None:
        con.register("c", SPECS["clips"].schema.empty_table())
    else:
        con.register("c", clips.scanner(columns=["video_id", "uri", "run_id"]))
    short = con.sql(
        "SELECT v.video_id, v.uri, v.run_id FROM v LEFT JOIN "
        "(SELECT video_id, uri, run_id, count(*) AS n FROM c GROUP BY ALL) AS c "
        "USING (video_id, uri, run_id) WHERE coalesce(c.n, 0) < coalesce(v.num_clips, 0) "
        "ORDER BY ALL"
    ).fetchall()
    con.close()
    by_run: dict[str, list[tuple[str, str]]] = {}
    for video_id, uri, run in short:
        if run not in running:
            by_run.setdefault(run, []).append((video_id, uri))
    for run, pairs in by_run.items():
        for where in _video_filters(pairs):
            videos.delete(f"run_id = {sql_string(run)} AND {where}")
    return sum(len(pairs) for pairs in by_run.values())
