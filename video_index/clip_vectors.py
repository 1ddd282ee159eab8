"""Nearest clips by embedding in an index kept as Lance tables: exact, or through the
clips table's vector index, never stale.

Beam-free. ``ClipVectors(output)`` opens one snapshot of the ``clips``, ``videos`` and
``failures`` tables (``video_index.table.snapshot``) and answers "which standing clips
are most like this one" by cosine similarity of the ``embedding`` column
(``float16 [D]`` per clip), read by Lance (DuckDB cannot bind float16).

- ``neighbours(query, exact=False)``: Lance's nearest-neighbour search. Where the clips
  table has its ``IVF_PQ`` index (``video_index.indexes.ensure_vector_index``), the
  indexed rows are searched through it (``NPROBES`` lists, candidates re-ranked on the
  stored vectors, ``REFINE_FACTOR`` times the clips asked for) and the rows committed
  since the build exactly: the index is never stale. Without an index, and with
  ``exact=True``, every embedding is compared (a flat scan).
- The standing rule: a clip stands where its ``run_id`` is the newest run of its video
  among the ``videos`` and ``failures`` rows. A run's end deletes the rest
  (``table.settle``); between a run's commits, and for a killed run's orphan clips,
  found clips are checked against those rows and more are fetched until ``limit``
  standing clips are found.

The index for the layout before Lance tables (a faiss side folder) is
``video_index.nearest``'s.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from video_index.nearest import Neighbour, QueryClip, SimilarError, _normalised
from video_index.schemas import EMBEDDING
from video_index.table import snapshot, sql_string

__all__ = ["ClipVectors", "NPROBES", "REFINE_FACTOR"]

# Chosen with bench/bench_index_scale.py: at 1M clips of 1024-d embeddings (245 lists,
# 64 sub-vectors) recall@10 against the exact search 1.0 at 71 ms median; 20 lists and
# x10 gave 0.874 (docs/table-format.md, "At archive scale").
NPROBES = 40
REFINE_FACTOR = 20
_ROW_COLUMNS = ["video_id", "uri", "clip_index", "start_s", "end_s", "run_id"]


class ClipVectors:
    """One snapshot of an index's embedded clips (see the module docstring).

    Raises ``SimilarError`` where ``output`` holds no clips table, or clips without an
    ``embedding`` column.
    """

    def __init__(self, output: str):
        tables_at = snapshot(output)
        self.clips = tables_at["clips"]
        self._owners = [tables_at[t] for t in ("videos", "failures") if tables_at[t] is not None]
        if self.clips is None or self.clips.count_rows() == 0:
            raise SimilarError(f"{output} holds no indexed clips")
        if self.clips.schema.get_field_index(EMBEDDING) < 0:
            raise SimilarError(
                f"{output} holds no clip embeddings (indexed with --no-embeddings, or with a "
                "model that gives none: stream and frame-sequence models, MoViNet)"
            )
        self.has_index = any(
            EMBEDDING in index.field_names for index in self.clips.describe_indices()
        )

    # --------------------------------------------------------------- the standing rule

    def _newest_runs(self, videos: set[str]) -> dict[tuple[str, str], str]:
        """``(video_id, uri) -> newest run_id`` of ``videos`` (their videos/failures rows)."""
        newest: dict[tuple[str, str], str] = {}
        names = sorted(videos)
        for start in range(0, len(names), 500):
            where = f"video_id IN ({', '.join(sql_string(v) for v in names[start:start + 500])})"
            for dataset in self._owners:
                rows = dataset.to_table(columns=["video_id", "uri", "run_id"], filter=where)
                for video_id, uri, run in zip(*(c.to_pylist() for c in rows.columns)):
                    newest[(video_id, uri)] = max(newest.get((video_id, uri), run), run)
        return newest

    def _standing(self, rows: list[dict]) -> list[dict]:
        newest = self._newest_runs({row["video_id"] for row in rows})
        return [row for row in rows if newest.get((row["video_id"], row["uri"])) == row["run_id"]]

    # --------------------------------------------------------------- the query

    def _video_clips(self, video_id: str) -> list[dict]:
        """The standing clips of ``video_id`` with their embeddings, by clip_index."""
        found = self.clips.to_table(
            columns=[*_ROW_COLUMNS, EMBEDDING],
            filter=f"video_id = {sql_string(video_id)} AND {EMBEDDING} IS NOT NULL",
        )
        rows = self._standing(found.to_pylist())
        if not rows:
            raise self._no_video(video_id)
        return sorted(rows, key=lambda row: row["clip_index"])

    def _no_video(self, video_id: str) -> SimilarError:
        """As ``video_index.nearest``'s: naming ids that end with ``video_id``."""
        pattern = "%" + video_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        near = self.clips.to_table(
            columns=["video_id"], filter=f"video_id LIKE {sql_string(pattern)}", limit=50
        )
        names = sorted(set(near.column("video_id").to_pylist()) - {video_id})[:3]
        if video_id in near.column("video_id").to_pylist():
            return SimilarError(
                f"video {video_id!r} has no embedded clips (indexed with --no-embeddings, or "
                "by a model that gives none)"
            )
        if names:
            listed = ", ".join(repr(name) for name in names)
            return SimilarError(
                f"no video {video_id!r} with embedded clips; did you mean {listed}?"
            )
        return SimilarError(
            f"no video {video_id!r} with embedded clips in the index "
            "(--video takes a video_id as `video-index show` lists them)"
        )

    def query_clip(self, video_id: str, at_s: float) -> QueryClip:
        """The clip of ``video_id`` that holds ``at_s`` seconds (else the nearest clip
        start), as ``video_index.nearest.query_clip``; the same errors."""
        rows = self._video_clips(video_id)
        last_end_s = max(row["end_s"] for row in rows)
        if not 0 <= at_s < last_end_s:
            raise SimilarError(
                f"--at {at_s:g} is outside video {video_id!r}: its clips cover 0 to "
                f"{last_end_s:g} s"
            )
        row = min(
            rows,
            key=lambda r: (not r["start_s"] <= at_s < r["end_s"], abs(r["start_s"] - at_s)),
        )
        embedding = np.asarray(row[EMBEDDING], dtype=np.float32)
        return QueryClip(video_id, row["clip_index"], row["start_s"], row["end_s"], embedding)

    def query_embedding(self, video_id: str, at_s: Optional[float] = None) -> np.ndarray:
        """``float32 [D]``: the clip at ``at_s``, or the mean of the video's unit clip
        embeddings (as ``video_index.nearest.query_embedding``)."""
        if at_s is not None:
            return self.query_clip(video_id, at_s).embedding
        rows = self._video_clips(video_id)
        vectors = np.asarray([row[EMBEDDING] for row in rows], dtype=np.float32)
        return _normalised(vectors).mean(axis=0)

    def neighbours(
        self,
        query: np.ndarray,
        limit: int = 10,
        exclude_video: Optional[str] = None,
        exact: bool = False,
    ) -> list[Neighbour]:
        """The ``limit`` standing clips most cosine-similar to ``query`` (``float32
        [D]``), best first (ties by video_id, clip_index), ``exclude_video``'s left out.

        ``exact``: compare every embedding (a flat scan) even where the table has its
        vector index. Clips of ``exclude_video`` and clips that do not stand are dropped
        from what Lance finds, and more are fetched while fewer than ``limit`` remain.
        """
        wanted = limit
        if exclude_video is not None:
            wanted += self.clips.count_rows(filter=f"video_id = {sql_string(exclude_video)}")
        total = self.clips.count_rows()
        while True:
            found = self._search(query, min(wanted, total), exact)
            rows = [row for row in found if row["video_id"] != exclude_video]
            standing = self._standing(rows)
            if len(standing) >= limit or len(found) < wanted or wanted >= total:
                break
            wanted *= 4
        standing.sort(key=lambda r: (-r["similarity"], r["video_id"], r["clip_index"]))
        return [
            Neighbour(*(row[c] for c in _ROW_COLUMNS[:5]), row["similarity"])
            for row in standing[:limit]
        ]

    def _search(self, query: np.ndarray, k: int, exact: bool) -> list[dict]:
        nearest = {
            "column": EMBEDDING,
            "q": np.asarray(query, dtype=np.float32),
            "k": k,
            "metric": "cosine",
            "use_index": self.has_index and not exact,
        }
        if nearest["use_index"]:
            nearest.update(nprobes=NPROBES, refine_factor=REFINE_FACTOR)
        found = self.clips.to_table(columns=[*_ROW_COLUMNS, "_distance"], nearest=nearest)
        rows = found.to_pylist()
        for row in rows:
            row["similarity"] = 1.0 - float(row.pop("_distance"))
        return rows
