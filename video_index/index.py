"""Read an index folder back: which files hold it, and the rows that stand.

Beam-free. An index folder holds ``videos/``, ``clips/`` and ``failures/`` as Parquet
files. Where runs overlap (a re-run after a change, a killed run re-run, a retried
bundle), the newest row per (video_id, uri) across ``videos`` and ``failures`` is
the one that counts, and only that run's clips.

Which files make up a table (``index_files``): the run files ``TABLE/*.parquet``
that the job commits, plus, once the index has been compacted
(``video_index.compact``), the files named by ``OUTPUT/_compacted.json``; run files
that compaction replaced are left out even while they still exist, and compacted
files of any other generation are never read. The folder is listed first and the
pointer read after, so a compaction that commits in between is seen whole: its
new files and the list of what they replace come from the same pointer.

``current_rows`` applies the standing rule in Python and loads whole tables: it is
the reference that the SQL views of ``video_index.query`` are tested against, and
fine for small indexes. Anything that must scale reads through ``video_index.query``.
"""

from __future__ import annotations

import json

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from video_index.schemas import TABLES
from video_index.storage import retrying

POINTER = "_compacted.json"
COMPACTED_PREFIX = "compacted-"


def read_pointer(fs: fsspec.AbstractFileSystem, root: str) -> dict:
    """The compaction pointer: ``{"generation", "files": {table: [name]}, "replaced": {...}}``.

    ``{}`` where the index was never compacted. Names are file names inside the
    table's folder.
    """
    try:
        data = retrying(fs.cat_file, f"{root}/{POINTER}")
    except FileNotFoundError:
        return {}
    return json.loads(data)


def list_names(fs: fsspec.AbstractFileSystem, folder: str) -> list[str]:
    fs.invalidate_cache(folder)  # gcsfs and s3fs cache listings; a reader wants now
    try:
        entries = retrying(fs.ls, folder, detail=True)
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") != "directory" and name.endswith(".parquet"):
            names.append(name)
    return sorted(names)


def snapshot(
    fs: fsspec.AbstractFileSystem, root: str
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict, dict[str, list[str]]]:
    """``(compacted, run, pointer, listed)``: per table, the current generation's file
    names and the run files it does not replace; the pointer; every name listed.

    The folders are listed before the pointer is read (see the module docstring).
    """
    listed = {table: list_names(fs, f"{root}/{table}") for table in TABLES}
    fs.invalidate_cache(f"{root}/{POINTER}")
    pointer = read_pointer(fs, root)
    compacted, run = {}, {}
    for table, names in listed.items():
        replaced = set(pointer.get("replaced", {}).get(table, ()))
        compacted[table] = list(pointer.get("files", {}).get(table, ()))
        run[table] = [n for n in names if not n.startswith(COMPACTED_PREFIX) and n not in replaced]
    return compacted, run, pointer, listed


def index_files(output: str) -> dict[str, list[str]]:
    """``table -> [path]``: the files that hold each table now (see the module docstring).

    Paths are as ``fsspec.core.url_to_fs(output)`` gives them (no scheme); a table
    whose folder is missing or empty has ``[]``. Raises FileNotFoundError if
    ``output`` does not exist.
    """
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    if not retrying(fs.exists, root):
        raise FileNotFoundError(f"no index at {output}")
    compacted, run, _, _ = snapshot(fs, root)
    return {t: [f"{root}/{t}/{n}" for n in compacted[t] + run[t]] for t in TABLES}


def read_table(output: str, table: str) -> pa.Table:
    """All rows of one table (empty, with its schema, where there are none)."""
    fs, _ = fsspec.core.url_to_fs(output.rstrip("/"))
    try:
        files = index_files(output)[table]
    except FileNotFoundError:
        files = []
    if not files:
        return TABLES[table].empty_table()
    return ds.dataset(files, schema=TABLES[table], filesystem=fs, format="parquet").to_table()


def current_rows(output: str) -> dict[str, pa.Table]:
    """The index as it stands: one row per (video_id, uri), newest run wins."""
    videos = read_table(output, "videos")
    failures = read_table(output, "failures")
    clips = read_table(output, "clips")
    newest: dict[tuple[str, str], str] = {}
    for t in (videos, failures):
        for vid, uri, run in zip(
            t.column("video_id").to_pylist(),
            t.column("uri").to_pylist(),
            t.column("run_id").to_pylist(),
        ):
            key = (vid, uri)
            if run is not None and (key not in newest or run > newest[key]):
                newest[key] = run

    def keep(t: pa.Table) -> pa.Table:
        if t.num_rows == 0:
            return t
        mask = [
            newest.get((vid, uri)) == run
            for vid, uri, run in zip(
                t.column("video_id").to_pylist(),
                t.column("uri").to_pylist(),
                t.column("run_id").to_pylist(),
            )
        ]
        t = t.filter(pa.array(mask, type=pa.bool_()))
        return _first_per_key(t)

    return {"videos": keep(videos), "failures": keep(failures), "clips": keep_clips(clips, newest)}


def keep_clips(clips: pa.Table, newest: dict) -> pa.Table:
    if clips.num_rows == 0:
        return clips
    seen = set()
    mask = []
    for vid, uri, run, idx in zip(
        clips.column("video_id").to_pylist(),
        clips.column("uri").to_pylist(),
        clips.column("run_id").to_pylist(),
        clips.column("clip_index").to_pylist(),
    ):
        # Only rows of the standing run count as seen: clips a killed run committed
        # before the kill (its video row never was) must not hide the re-run's.
        key = (vid, uri, idx)
        ok = newest.get((vid, uri)) == run and key not in seen
        if ok:
            seen.add(key)
        mask.append(ok)
    return clips.filter(pa.array(mask, type=pa.bool_()))


def _first_per_key(t: pa.Table) -> pa.Table:
    # A retried bundle may have committed the same row twice within one run.
    seen = set()
    mask = []
    for key in zip(t.column("video_id").to_pylist(), t.column("uri").to_pylist()):
        mask.append(key not in seen)
        seen.add(key)
    return t.filter(pa.array(mask, type=pa.bool_()))
