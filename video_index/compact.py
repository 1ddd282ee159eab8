"""Compaction: an index's rows rewritten into a few large files, atomically for readers.

Beam-free. Each worker of a run commits small files every ``--commit-every-s``; over
many workers and hours that is many thousands of files, and every reader pays for
each. ``compact(output)`` rewrites the rows that can still matter into files of up to
``ROWS_PER_FILE`` rows per table and deletes the files they replace.

Layout. Run files stay where the job writes them (``TABLE/<run>-<writer>-<n>.parquet``);
compacted files are ``TABLE/compacted-<generation>-<n>.parquet``; the pointer
``OUTPUT/_compacted.json`` names the current generation's files and the run files
they replace. Readers (``video_index.index.index_files``) take the pointer's files
plus the run files it does not name, and never a compacted file it does not name.

Atomic for readers: a compaction (1) lists the folders and reads the pointer, (2)
writes its files under ``TABLE/_tmp/`` and moves them into place (no reader takes
them: the pointer does not name them yet), (3) commits by replacing the pointer
(one object write on a bucket, a rename on a local disk), (4) deletes what it
replaced and (5) rewrites the pointer without the list of replaced files. A reader
lists before it reads the pointer, so whichever pointer it gets, the files that
pointer names exist and the run files it leaves out are covered: it sees the old
files or the new, never both and never neither. A reader whose snapshot predates a
commit may find its old files deleted under it: that is an error, not a wrong
answer, and ``video_index.query.with_retry`` takes a new snapshot. A compaction
killed at any step leaves the index whole: before (3) the old pointer holds, after
it the new one; the next compaction deletes what a killed one left behind.

Runs and compaction never lose rows, without a lock between them: compaction keeps
every row that could stand later, not only the rows that stand now. A video row or
failure row is dropped only when a newer run has a row for the same (video_id, uri)
in the compaction's input; a clip is dropped only when its run is older than the
newest run of its video. So the clips a running (or killed) run has committed
before its video row are kept, whether that row lands before the compaction, after
it or never; files a run commits after the listing are not replaced and stay as
they are. Two compactions are kept apart by a lock (``compaction_lock``): a local
``flock``, or on a bucket an object created only if absent (GCS
``ifGenerationMatch=0``, S3 ``If-None-Match: *``) with a lease that its holder
renews, so a killed compaction's lock expires.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
import uuid
from typing import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from video_index.index import COMPACTED_PREFIX, POINTER, list_names, snapshot
from video_index.query import DEFAULT_MEMORY_LIMIT, connect_files
from video_index.schemas import TABLES
from video_index.storage import retrying

__all__ = [
    "COMPACT_AFTER_FILES",
    "CompactionBusy",
    "CompactionResult",
    "compact",
    "compaction_lock",
    "run_file_count",
]

ROWS_PER_FILE = {
    "videos": 2_000_000,
    "failures": 2_000_000,
    "clips": 5_000_000,
    "shots": 2_000_000,  # a thumbnail each, as clips
    "cues": 2_000_000,
}
ROW_GROUP_ROWS = 100_000
# The job compacts at its end when the index has more run files than this.
COMPACT_AFTER_FILES = 1000
LOCK = "_compaction.lock"
LEASE_S = 300.0  # a lock not renewed for this long is taken to be a dead holder's

# Rows that can still stand: see the module docstring. Clips, shots, cues (written before
# their video's row) are kept per run.
_KEEP_PER_RUN = """
SELECT r.* FROM raw_{table} AS r
LEFT JOIN newest_runs AS n ON r.video_id = n.video_id AND r.uri = n.uri
WHERE r.run_id IS NOT NULL AND (n.run_id IS NULL OR r.run_id >= n.run_id)
QUALIFY row_number() OVER (PARTITION BY r.video_id, r.uri, r.{key}, r.run_id) = 1"""
_KEEP = {
    "videos": "SELECT * FROM videos",
    "failures": "SELECT * FROM failures",
    "clips": _KEEP_PER_RUN.format(table="clips", key="clip_index"),
    "shots": _KEEP_PER_RUN.format(table="shots", key="shot_index"),
    "cues": _KEEP_PER_RUN.format(table="cues", key="cue_index"),
}


class CompactionBusy(RuntimeError):
    """Another compaction holds the output's lock."""


@dataclasses.dataclass
class CompactionResult:
    generation: str
    files_before: dict[str, int]
    files_after: dict[str, int]
    rows: dict[str, int]
    deleted: int


def _checkpoint(step: str) -> None:
    """Called between the steps (tests stop or inspect a compaction here)."""


def run_file_count(output: str) -> int:
    """Run files (not compacted, not replaced) across the three tables."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    _, run, _, _ = snapshot(fs, root)
    return sum(len(names) for names in run.values())


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


@contextlib.contextmanager
def compaction_lock(output: str) -> Iterator[None]:
    """Hold the output's compaction lock; raises CompactionBusy if another holds it."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    path = f"{root}/{LOCK}"
    if _is_local(fs):
        import fcntl

        fs.makedirs(root, exist_ok=True)
        with open(path, "a") as handle:  # the kernel drops the lock when its holder dies
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CompactionBusy(f"another compaction of {output} is running") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    owner = uuid.uuid4().hex
    _take_lease(fs, path, owner, output)
    stop = threading.Event()

    def renew():
        while not stop.wait(LEASE_S / 5):
            retrying(fs.pipe_file, path, _lease(owner))

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)


def _lease(owner: str) -> bytes:
    return json.dumps({"owner": owner, "expires": time.time() + LEASE_S}).encode()


def _take_lease(fs, path: str, owner: str, output: str) -> None:
    for _ in range(2):
        try:
            fs.pipe_file(path, _lease(owner), mode="create")
            return
        except (FileExistsError, OSError) as error:
            if not _exists_error(error):
                raise
        try:
            held = json.loads(fs.cat_file(path))
        except FileNotFoundError:
            continue  # released meanwhile
        if held.get("expires", 0) > time.time():
            raise CompactionBusy(f"another compaction of {output} is running")
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)  # a dead holder's lease
    raise CompactionBusy(f"could not take the compaction lock of {output}")


def _exists_error(error: BaseException) -> bool:
    # gcsfs: 412 Precondition Failed; s3fs: PreconditionFailed (an OSError).
    text = f"{type(error).__name__} {error}".lower()
    return isinstance(error, FileExistsError) or "precondition" in text or "412" in text


def _write_pointer(fs, root: str, pointer: dict) -> None:
    data = json.dumps(pointer, indent=0).encode()
    path = f"{root}/{POINTER}"
    if _is_local(fs):
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)  # a rename: atomic on one file system
    else:
        retrying(fs.pipe_file, path, data)  # one object write: atomic


def _target_schema(table: str, got: pa.Schema) -> pa.Schema:
    """The product schema of ``table``, plus any column newer files have."""
    schema = TABLES[table]
    extra = [f for f in got if schema.get_field_index(f.name) < 0]
    return pa.schema(list(schema) + extra)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` in ``schema``'s order and types; columns older files lack are null."""
    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names).cast(schema)


def _write_table(con, fs, root: str, table: str, generation: str) -> tuple[list[str], int]:
    """Stream ``_KEEP[table]`` into compacted files under ``TABLE/_tmp``; move them in."""
    reader = con.sql(_KEEP[table]).to_arrow_reader(ROW_GROUP_ROWS)
    schema = _target_schema(table, reader.schema)
    names, rows, writer, handle, in_file = [], 0, None, None, 0
    folder = f"{root}/{table}"

    def close():
        if writer is not None:
            writer.close()
            handle.close()

    try:
        for batch in reader:
            if writer is None or in_file >= ROWS_PER_FILE[table]:
                close()
                names.append(f"{COMPACTED_PREFIX}{generation}-{len(names):05d}.parquet")
                fs.makedirs(f"{folder}/_tmp", exist_ok=True)
                handle = fs.open(f"{folder}/_tmp/{names[-1]}", "wb")
                writer = pq.ParquetWriter(handle, schema, compression="zstd")
                in_file = 0
            table_batch = _conform(pa.Table.from_batches([batch]), schema)
            writer.write_table(table_batch, row_group_size=ROW_GROUP_ROWS)
            in_file += batch.num_rows
            rows += batch.num_rows
    finally:
        close()
    _checkpoint(f"written {table}")
    for name in names:
        retrying(fs.mv, f"{folder}/_tmp/{name}", f"{folder}/{name}")
    return names, rows


def compact(
    output: str,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
) -> CompactionResult:
    """Compact the index at ``output`` (see the module docstring); returns what it did.

    Raises FileNotFoundError if there is no index, CompactionBusy if another
    compaction of it is running.
    """
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    if not retrying(fs.exists, root):
        raise FileNotFoundError(f"no index at {output}")
    with compaction_lock(output):
        # One listing for everything below: a file a run commits after it is
        # neither compacted nor deleted.
        compacted, run, pointer, listed = snapshot(fs, root)
        inputs = {t: compacted[t] + run[t] for t in TABLES}
        replaced = {t: list(names) for t, names in inputs.items()}
        garbage = {}
        for table in TABLES:
            kept = set(inputs[table])
            # Left by a killed compaction: files of a generation it did not commit,
            # files a committed one replaced but did not get to delete, temporaries.
            tmp = list_names(fs, f"{root}/{table}/_tmp")
            garbage[table] = [n for n in listed[table] if n not in kept] + [
                f"_tmp/{n}" for n in tmp if n.startswith(COMPACTED_PREFIX)
            ]
        _checkpoint("listed")
        if not any(run.values()) and not any(garbage.values()):
            count = {t: len(names) for t, names in compacted.items()}
            return CompactionResult(pointer.get("generation", ""), count, count, {}, 0)
        files = {t: [f"{root}/{t}/{n}" for n in names] for t, names in inputs.items()}
        con = connect_files(fs, files, memory_limit=memory_limit)
        generation = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        written, rows = {}, {}
        for table in TABLES:
            written[table], rows[table] = _write_table(con, fs, root, table, generation)
        con.close()
        _checkpoint("moved")
        _write_pointer(fs, root, {"generation": generation, "files": written, "replaced": replaced})
        _checkpoint("committed")
        doomed = [f"{root}/{t}/{n}" for t in TABLES for n in replaced[t] + garbage[t]]
        for i in range(0, len(doomed), 1000):
            with contextlib.suppress(FileNotFoundError):
                retrying(fs.rm, doomed[i : i + 1000])
            _checkpoint("deleting")
        _write_pointer(fs, root, {"generation": generation, "files": written, "replaced": {}})
        _checkpoint("done")
    return CompactionResult(
        generation,
        {t: len(names) for t, names in inputs.items()},
        {t: len(names) for t, names in written.items()},
        rows,
        len(doomed),
    )
