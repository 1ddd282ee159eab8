"""Read an index folder back: the rows that stand, and what is already indexed.

Beam-free. An index folder holds ``videos/``, ``clips/`` and ``failures/`` as Parquet
files. Where runs overlap (a re-run after a change, a killed run re-run, a retried
bundle), the newest row per (video_id, uri) across ``videos`` and ``failures`` is
the one that counts, and only that run's clips.
"""

from __future__ import annotations

from typing import Optional

import fsspec
import pyarrow as pa
import pyarrow.dataset as ds

from transforms.schemas import TABLES
from transforms.storage import retrying


def read_table(output: str, table: str) -> pa.Table:
    """All rows of one table (empty, with its schema, where there are none)."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    path = f"{root}/{table}"
    if not retrying(fs.exists, path):
        return TABLES[table].empty_table()
    files = [f for f in retrying(fs.find, path) if f.endswith(".parquet") and "/_tmp/" not in f]
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


def indexed_versions(output: str, model: str) -> dict[str, tuple[Optional[int], Optional[str]]]:
    """``uri -> (size, version)`` of every video the index already holds for ``model``.

    Failures count too: an unchanged file that failed would fail again. A video
    whose size or version is unknown is never taken as unchanged.
    """
    rows = current_rows(output)
    done: dict[str, tuple[Optional[int], Optional[str]]] = {}
    for table in ("videos", "failures"):
        t = rows[table]
        for uri, size, version, row_model in zip(
            t.column("uri").to_pylist(),
            t.column("size").to_pylist(),
            t.column("version").to_pylist(),
            t.column("model").to_pylist(),
        ):
            if row_model == model and size is not None and version is not None:
                done[uri] = (size, version)
    return done
