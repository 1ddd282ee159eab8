"""Nearest clips by embedding: exact search in DuckDB, approximate with faiss.

Beam-free. Reads an index folder's ``clips/`` ``embedding`` column (the model's clip
embeddings, ``float16 [D]`` per clip) over the rows that stand (per ``(video_id,
uri)`` the newest ``run_id`` across ``videos/`` and ``failures/``, that run's clips,
one per ``clip_index``), and answers "which clips are most like this one" by cosine
similarity.

- ``exact_neighbours``: a DuckDB scan with ``array_cosine_similarity`` (no extension
  needed); exact, linear in the number of clips.
- ``build_ann_index`` / ``ann_neighbours``: a faiss IVF index over int8-quantised
  vectors whose candidates are re-ranked on the float16 vectors, written under
  ``OUT/_similar/`` (readers of the tables skip ``_`` paths)
  with the clip files it covers. It is used only while those files are unchanged: a
  re-run that adds or supersedes rows makes it stale, and a stale index is never
  searched (``ann_state``), so superseded clips are never returned.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional

import fsspec
import numpy as np

from video_index import query
from video_index.index import index_files
from video_index.schemas import EMBEDDING

__all__ = [
    "Neighbour",
    "SimilarError",
    "connect",
    "QueryClip",
    "query_clip",
    "query_embedding",
    "exact_neighbours",
    "build_ann_index",
    "ann_state",
    "ann_neighbours",
    "refresh_ann_index",
    "ANN_DIR",
]

ANN_DIR = "_similar"
_ANN_INDEX = "clips.faiss"
_ANN_VECTORS = "vectors.f16"  # float16 [N, D], unit length, row i = index id i
_ANN_ROWS = "rows.arrow"  # Arrow IPC (memory-mapped): video_id, uri, clip_index, start_s, end_s
_ANN_STATE = "state.json"
# IVF settings, chosen with bench/bench_similar.py (recall@10 against exact search):
# inverted lists of about 1000 clips at 1M, int8 codes (D bytes a clip), and the
# candidates re-ranked exactly on the float16 vectors, read from a memory-mapped file.
ANN_MIN_LISTS, ANN_CLIPS_PER_LIST = 1, 1000
ANN_MAX_LISTS = 1024
ANN_TRAIN_PER_LIST = 40
ANN_NPROBE = 32
ANN_CANDIDATES = 200
# Below this many clips the exact scan is fast enough (about a second at 100k) and a
# run does not build an index of its own accord (``similar --build-index`` still does).
ANN_AUTO_MIN_CLIPS = 100_000


class SimilarError(ValueError):
    """A question the index cannot answer (unknown video, no embeddings); one line."""


@dataclass(frozen=True)
class Neighbour:
    """One clip found: where it is, and its cosine similarity to the query in [-1, 1]."""

    video_id: str
    uri: str
    clip_index: int
    start_s: float
    end_s: float
    similarity: float


def connect(output: str):
    """The query layer's connection (``video_index.query``) plus the view
    ``standing_clips``: ``video_id, uri, clip_index, start_s, end_s, embedding FLOAT[]``
    of the standing clips that have an embedding. Raises ``SimilarError`` where there
    is no index or it holds no embedding."""
    try:
        con = query.connect(output)
    except FileNotFoundError:
        raise SimilarError(f"{output} holds no indexed clips") from None
    if not con.execute("SELECT 1 FROM raw_clips LIMIT 1").fetchall():
        raise SimilarError(f"{output} holds no indexed clips")
    columns = {row[0] for row in con.execute("DESCRIBE raw_clips").fetchall()}
    if EMBEDDING in columns:
        con.execute(
            "CREATE VIEW standing_clips AS SELECT video_id, uri, clip_index, start_s, end_s, "
            f"{EMBEDDING}::FLOAT[] AS embedding "
            f"FROM ({query.standing_sql('clips', f'{EMBEDDING} IS NOT NULL')})"
        )
    if (
        EMBEDDING not in columns
        or not con.execute("SELECT 1 FROM standing_clips LIMIT 1").fetchall()
    ):
        raise SimilarError(
            f"{output} holds no clip embeddings (indexed with --no-embeddings, or with a "
            "model that gives none: stream and frame-sequence models, MoViNet)"
        )
    return con


class QueryClip(NamedTuple):
    """The clip a query starts from: its place in its video and its embedding."""

    video_id: str
    clip_index: int
    start_s: float
    end_s: float
    embedding: np.ndarray  # float32 [D]


def query_clip(con, video_id: str, at_s: float) -> QueryClip:
    """The clip of ``video_id`` that holds ``at_s`` seconds (the nearest clip start where
    none does: a stride longer than a clip leaves gaps). Raises ``SimilarError`` for a
    video with no embedded clips, and for ``at_s`` before 0 or at or past the end of the
    video's last clip."""
    rows = con.execute(
        """
        SELECT clip_index, start_s, end_s, embedding, max(end_s) OVER () AS last_end_s
        FROM standing_clips WHERE video_id = ?
        ORDER BY (? >= start_s AND ? < end_s) DESC, abs(start_s - ?), clip_index LIMIT 1
        """,
        [video_id, at_s, at_s, at_s],
    ).fetchall()
    if not rows:
        raise _no_video(con, video_id)
    clip_index, start_s, end_s, embedding, last_end_s = rows[0]
    if not 0 <= at_s < last_end_s:
        raise SimilarError(
            f"--at {at_s:g} is outside video {video_id!r}: its clips cover 0 to {last_end_s:g} s"
        )
    return QueryClip(video_id, clip_index, start_s, end_s, np.asarray(embedding, dtype=np.float32))


def query_embedding(con, video_id: str, at_s: Optional[float] = None) -> np.ndarray:
    """The query vector, ``float32 [D]``: the embedding of ``query_clip(con, video_id,
    at_s)``, or without ``at_s`` the mean of the video's unit clip embeddings. Raises
    ``SimilarError`` as ``query_clip`` does, and for a video with no embedded clips."""
    if at_s is not None:
        return query_clip(con, video_id, at_s).embedding
    rows = con.execute(
        "SELECT embedding FROM standing_clips WHERE video_id = ?", [video_id]
    ).fetchall()
    if not rows:
        raise _no_video(con, video_id)
    vectors = np.asarray([row[0] for row in rows], dtype=np.float32)
    return _normalised(vectors).mean(axis=0)


def _no_video(con, video_id: str) -> SimilarError:
    """The error for a ``video_id`` with no embedded clips, naming the ids it may have
    meant: those that end with it (a manifest of full paths gives full-path ids)."""
    near = con.execute(
        "SELECT DISTINCT video_id FROM standing_clips WHERE ends_with(video_id, ?) "
        "ORDER BY video_id LIMIT 3",
        [video_id],
    ).fetchall()
    if near:
        names = ", ".join(repr(row[0]) for row in near)
        return SimilarError(f"no video {video_id!r} with embedded clips; did you mean {names}?")
    return SimilarError(
        f"no video {video_id!r} with embedded clips in the index "
        "(--video takes a video_id as `video-index show` lists them)"
    )


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def exact_neighbours(
    con,
    query: np.ndarray,
    limit: int = 10,
    exclude_video: Optional[str] = None,
) -> list[Neighbour]:
    """The ``limit`` standing clips most cosine-similar to ``query`` (``float32 [D]``),
    best first (ties by video_id, clip_index), leaving out ``exclude_video``'s clips."""
    dim = int(query.shape[0])
    rows = con.execute(
        f"""
        SELECT video_id, uri, clip_index, start_s, end_s,
               array_cosine_similarity(embedding::FLOAT[{dim}], ?::FLOAT[{dim}]) AS similarity
        FROM standing_clips
        WHERE ? IS NULL OR video_id <> ?
        ORDER BY similarity DESC, video_id, clip_index
        LIMIT ?
        """,
        [query.astype(np.float32).tolist(), exclude_video, exclude_video, limit],
    ).fetchall()
    return [Neighbour(*row[:5], float(row[5])) for row in rows]


# ----------------------------------------------------------------------- approximate


def _state(output: str) -> dict:
    """What an ANN index covers: the table files it was built from."""
    return {
        table: [path.rsplit("/", 1)[-1] for path in paths]
        for table, paths in index_files(output).items()
    }


def build_ann_index(output: str, batch_rows: int = 16384) -> int:
    """Build the approximate index of ``output``'s standing clip embeddings under
    ``output/_similar/`` (local folders only); returns the number of clips in it.

    Two passes, streamed: the embeddings go from DuckDB to a float16 file (unit
    length), then a faiss IVF index with int8 codes is trained on a sample of them and
    filled in batches. Memory: the codes (D bytes a clip) and one batch.
    """
    import faiss
    import pyarrow as pa

    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" not in protocols and "local" not in protocols:
        raise SimilarError("the approximate index is built for local index folders only")
    state = _state(output)
    con = connect(output)
    folder = f"{root}/{ANN_DIR}"
    staging = f"{folder}/_tmp"
    os.makedirs(staging, exist_ok=True)
    reader = con.sql(
        "SELECT video_id, uri, clip_index, start_s, end_s, embedding FROM standing_clips"
    ).to_arrow_reader(batch_rows)
    count, dim = 0, 0
    with open(f"{staging}/{_ANN_VECTORS}", "wb") as vectors_file, pa.OSFile(
        f"{staging}/{_ANN_ROWS}", "wb"
    ) as rows_file:
        writer = None
        for batch in reader:
            if not batch.num_rows:
                continue
            flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
            vectors = _normalised(np.asarray(flat, np.float32).reshape(batch.num_rows, -1))
            dim = vectors.shape[1]
            vectors_file.write(vectors.astype(np.float16).tobytes())
            rows = batch.drop_columns(["embedding"])
            if writer is None:
                writer = pa.ipc.new_file(rows_file, rows.schema)
            writer.write_batch(rows)
            count += batch.num_rows
        if writer is not None:
            writer.close()
    lists = int(min(ANN_MAX_LISTS, max(ANN_MIN_LISTS, count // ANN_CLIPS_PER_LIST)))
    sample = np.sort(
        np.random.default_rng(0).choice(count, min(count, lists * ANN_TRAIN_PER_LIST), False)
    )
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim),
        dim,
        lists,
        faiss.ScalarQuantizer.QT_8bit,
        faiss.METRIC_INNER_PRODUCT,
    )
    # The float16 file is read in batches, not mapped: mapped pages once read count in
    # the process's RSS, and at 1M clips the file is 2 GB.
    vectors_path = f"{staging}/{_ANN_VECTORS}"
    index.train(
        np.concatenate(
            [
                batch[sample[(sample >= start) & (sample < start + len(batch))] - start]
                for start, batch in _f16_batches(vectors_path, dim, batch_rows)
            ]
        )
    )
    for _, batch in _f16_batches(vectors_path, dim, batch_rows):
        index.add(batch)
    faiss.write_index(index, f"{staging}/{_ANN_INDEX}")
    with open(f"{staging}/{_ANN_STATE}", "w") as f:
        json.dump({**state, "count": count, "dim": dim, "lists": lists}, f)
    # The state file last: an index whose state names the current files is complete.
    for name in (_ANN_INDEX, _ANN_VECTORS, _ANN_ROWS, _ANN_STATE):
        os.replace(f"{staging}/{name}", f"{folder}/{name}")
    return count


def _f16_batches(path: str, dim: int, batch_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, float32 [n, dim])`` batches of a file of float16 rows, in order."""
    start = 0
    with open(path, "rb") as f:
        while True:
            batch = np.fromfile(f, np.float16, batch_rows * dim)
            if not batch.size:
                return
            yield start, batch.reshape(-1, dim).astype(np.float32)
            start += batch.size // dim


def refresh_ann_index(output: str, min_clips: int = ANN_AUTO_MIN_CLIPS) -> Optional[int]:
    """Keep the approximate index in step after a run (or a compaction): rebuild it where
    one exists and is stale, or build it where the index holds ``min_clips`` clip rows or
    more; local folders only. Returns the clips indexed, or None where nothing was done.
    """
    _, root = fsspec.core.url_to_fs(output.rstrip("/"))
    if not os.path.isdir(root):
        return None
    state = ann_state(output)
    if state is None:
        return None
    if state == "no approximate index":
        con = query.connect(output)
        columns = {row[0] for row in con.execute("DESCRIBE raw_clips").fetchall()}
        rows = con.execute("SELECT count(*) FROM raw_clips").fetchall()[0][0]
        if EMBEDDING not in columns or rows < min_clips:
            return None
    return build_ann_index(output)


def ann_state(output: str) -> Optional[str]:
    """None where ``output`` has an approximate index in step with its tables, else
    why not (one line): no index, or the tables changed since it was built."""
    _, root = fsspec.core.url_to_fs(output.rstrip("/"))
    try:
        with open(f"{root}/{ANN_DIR}/{_ANN_STATE}") as f:
            built = json.load(f)
    except (OSError, ValueError):
        return "no approximate index"
    try:
        now = _state(output)
    except FileNotFoundError:
        return "no index"
    if any(built.get(table) != now[table] for table in now):
        return "the approximate index is older than the tables (a run since)"
    return None


def ann_neighbours(
    output: str,
    query: np.ndarray,
    limit: int = 10,
    exclude_video: Optional[str] = None,
) -> list[Neighbour]:
    """As ``exact_neighbours``, from the approximate index (check ``ann_state`` first).

    The IVF index proposes ``ANN_CANDIDATES`` clips (more while too many belong to
    ``exclude_video``); they are ranked by their exact cosine on the stored float16
    vectors. The vectors and row table are memory-mapped: a query reads the rows it
    ranks, not the archive.
    """
    import pyarrow as pa

    _, root = fsspec.core.url_to_fs(output.rstrip("/"))
    folder = f"{root}/{ANN_DIR}"
    with open(f"{folder}/{_ANN_STATE}") as f:
        built = json.load(f)
    count, dim = built["count"], built["dim"]
    index = _read_index(f"{folder}/{_ANN_INDEX}")
    index.nprobe = ANN_NPROBE
    vectors = np.memmap(f"{folder}/{_ANN_VECTORS}", np.float16, "r", shape=(count, dim))
    rows = pa.ipc.open_file(pa.memory_map(f"{folder}/{_ANN_ROWS}")).read_all()
    unit = _normalised(query.astype(np.float32))[None]
    wanted = max(ANN_CANDIDATES, 4 * limit)
    while True:
        _, found = index.search(unit, min(wanted, count))
        ids = np.unique(found[0][found[0] >= 0])
        taken = rows.take(pa.array(ids))
        videos = taken.column("video_id").to_pylist()
        keep = [i for i, video in enumerate(videos) if video != exclude_video]
        if len(keep) >= limit or wanted >= count:
            break
        wanted *= 4
    similarity = np.asarray(vectors[ids[keep]], np.float32) @ unit[0]
    order = sorted(range(len(keep)), key=lambda i: (-similarity[i], videos[keep[i]], ids[keep[i]]))
    columns = [taken.column(name).to_pylist() for name in _ROW_COLUMNS]
    return [
        Neighbour(*(column[keep[i]] for column in columns), float(similarity[i]))
        for i in order[:limit]
    ]


_ROW_COLUMNS = ("video_id", "uri", "clip_index", "start_s", "end_s")
_INDEXES: dict = {}


def _read_index(path: str):
    """The faiss index at ``path``, read once per process and file version."""
    import faiss

    key = (path, os.stat(path).st_mtime_ns)
    if key not in _INDEXES:
        _INDEXES.clear()
        _INDEXES[key] = faiss.read_index(path)
    return _INDEXES[key]
