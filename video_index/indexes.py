"""The search indexes kept inside the index's Lance tables, and the searches they answer.

Beam-free. ``ensure_indexes(output)`` builds what is missing and folds rows added since
the last build into what is there; ``label_filter`` is the Lance filter that the
``LABEL_LIST`` index answers for a label search. Every index lives in its table's
dataset, versioned with its rows, so a reader of one snapshot sees the index of that
snapshot; rows appended after a build sit in fragments the index does not cover, and
Lance scans those exactly in every filtered or nearest-neighbour search (its default:
``fast_search`` off). An index is therefore never stale, only slower until it is folded
again: ``ensure_indexes`` at a run's end, or ``compact``.

Indexes (measured in ``bench/bench_index_scale.py``, figures in ``docs/table-format.md``):

- ``clips.top_label``: ``BITMAP`` (one bitmap of rows per class name) on the clips' top-1
  label (``schemas.TOP1``): ``search`` by label reads the clips whose top-1 is the
  class, not the 25M clips nor the top-k lists of the clips that merely hold it.
- ``videos.video_id``, ``failures.video_id``, ``clips.video_id``: ``BTREE``: a video's
  rows (``similar``'s query clip, the standing check of its results) by lookup.
- ``clips.embedding``: ``IVF_PQ`` with the cosine metric, once the table holds
  ``VECTOR_MIN_ROWS`` embedded clips (below that the exact scan is fast enough).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

from video_index.schemas import CUE, EMBEDDING, SHOT_INDEX, TOP_LABEL, TOP_SCORE
from video_index.table import open_table, sql_string

__all__ = [
    "SCALAR_INDEXES",
    "SCALAR_MIN_ROWS",
    "VECTOR_MIN_ROWS",
    "ensure_indexes",
    "ensure_vector_index",
    "label_candidates",
    "label_filter",
    "rows_of_videos",
    "vector_index_name",
]

# (table, column, Lance scalar index type)
SCALAR_INDEXES = (
    ("clips", TOP_LABEL, "BITMAP"),
    ("clips", "video_id", "BTREE"),
    ("videos", "video_id", "BTREE"),
    ("failures", "video_id", "BTREE"),
)
# Below this many rows a scan is about as fast as a lookup (0.1-0.4 s for 495,000 clips,
# docs/table-format.md) and a run builds no scalar index of its own accord.
SCALAR_MIN_ROWS = 100_000
# Below this many clips an exact scan of the embeddings takes well under a second and a
# run builds no vector index of its own accord (``similar --build-index`` still does).
VECTOR_MIN_ROWS = 100_000
# IVF_PQ: lists of about this many clips; sub-vectors of 16 dimensions (64 bytes a
# 1024-d clip); product quantisation trains 256 centroids a sub-vector, so it needs at
# least that many rows.
VECTOR_ROWS_PER_LIST = 4096
VECTOR_DIMS_PER_SUB_VECTOR = 16
VECTOR_MIN_TRAIN_ROWS = 256


# Indexes an older version built that no search reads now: dropped by ensure_indexes
# (the LABEL_LIST on the top-k lists, before the top-1 ``top_label`` column held the search).
# (table, column, the column whose index replaced it)
OBSOLETE_INDEXES = (("clips", "labels", TOP_LABEL),)

# More videos than this are found by a pass over the video_id column, not by lookups.
_IN_LOOKUP_MAX = 2_000


def _name(column: str) -> str:
    return f"{column}_idx"


def vector_index_name() -> str:
    """The name of the clips table's vector index."""
    return _name(EMBEDDING)


def label_filter(labels: Sequence[str], top1_column: bool = True) -> str:
    """The Lance filter of clips whose top-1 label is one of ``labels``.

    ``top1_column``: the clips table has the ``top_label`` column (``schemas.TOP1``), which
    its ``BITMAP`` index answers. Without it (a table written before the column, not
    yet upgraded): ``array_has_any`` on the top-k lists, which an older ``LABEL_LIST``
    index answers, then the top-1 rule on those rows. Raises ValueError for no labels.
    """
    if not labels:
        raise ValueError("label_filter needs at least one label")
    names = ", ".join(sql_string(label) for label in labels)
    if top1_column:
        return f"{TOP_LABEL} IN ({names})"
    return f"array_has_any(labels, [{names}]) AND labels[1] IN ({names})"


def rows_of_videos(dataset, videos: Sequence[str], columns: Optional[list[str]] = None):
    """The rows of ``dataset`` whose ``video_id`` is one of ``videos`` (a
    ``pyarrow.Table`` of ``columns``, default those DuckDB binds less binary ones).

    A few videos are looked up through the ``video_id`` index (``IN``); many are found
    by one pass over the ``video_id`` column and read by position: at 15,000 of 1M
    videos the pass takes half the time of the lookups (bench/bench_index_scale.py).
    """
    import pyarrow.compute as pc

    columns = columns or _search_columns(dataset.schema)
    names = sorted(set(videos))
    if len(names) <= _IN_LOOKUP_MAX:
        where = ", ".join(sql_string(name) for name in names) or "NULL"
        return dataset.to_table(columns=columns, filter=f"video_id IN ({where})")
    ids = dataset.to_table(columns=["video_id"]).column("video_id")
    positions = pc.indices_nonzero(pc.is_in(ids, value_set=pc.unique(pc.cast(names, ids.type))))
    return dataset.take(positions.to_numpy(), columns=columns)


def _search_columns(schema) -> list[str]:
    """What a search reads of a table: the columns DuckDB binds, less the pictures
    (``thumbnail``: kilobytes a row, and no search ranks by them)."""
    import pyarrow as pa

    from video_index.table import readable_columns

    return [c for c in readable_columns(schema) if not pa.types.is_binary(schema.field(c).type)]


# What a search by label reads of each table (beam_pipeline.query_cli.search_sql and
# the standing rule, video_index.query): clips also their top-1 label and score.
_SEARCH_COLUMNS = {
    "clips": (
        "video_id", "uri", "clip_index", "start_s", "end_s", "model", "run_id", SHOT_INDEX, CUE
    ),  # fmt: skip
    "videos": ("video_id", "uri", "run_id"),
    "failures": ("video_id", "uri", "run_id"),
    "shots": ("video_id", "uri", "shot_index", "start_s", "end_s", "kind", "run_id"),
}


def label_candidates(
    tables_at: dict,
    labels: Sequence[str],
    min_score: Optional[float] = None,
    limit: Optional[int] = None,
    kth_score: Optional[Callable[[dict], Optional[float]]] = None,
) -> dict:
    """``tables_at`` (``video_index.table.snapshot``) narrowed for a search of
    ``labels``, each narrowed table a ``pyarrow.Table`` read at the snapshot's version:

    - ``clips``: the clips whose top-1 label is one of ``labels`` and, given
      ``min_score`` (0-1), whose top-1 score is at least that, found through the
      ``top_label`` index (``label_filter``). Their ``labels`` and ``scores`` are cut to the
      top-1 (one-element lists): all a search reads of them.
    - ``videos``, ``failures``: those clips' videos' rows, with the columns of the
      standing rule (video_id, uri, run_id); ``shots``: their shots, where the clips
      carry ``shot_index`` (events stay inside their shot).

    The other tables are left as they are (a search does not read them). The standing
    rule then needs only those videos' rows: a search reads what its answer is made
    of, not the archive (``video_index.query.connect(narrow=...)``). A clips table
    without the ``top_label`` column (not yet upgraded) is searched through its top-k lists.

    ``limit`` and ``kth_score``: the search keeps its ``limit`` best moments, and
    ``kth_score(narrowed)`` gives the score of the ``limit``-th best moment in such
    narrowed tables (None where there are fewer). A moment's score is the top-1 score of
    one of its clips, so no moment of a video scores above that video's best candidate
    clip (its bound; clips of runs that no longer stand only raise it). Then only the
    clips of the videos with the best bounds are read, in rounds (the threshold
    algorithm, Fagin et al., PODS 2001): the first ``limit`` videos, then every video
    whose bound is at least the ``limit``-th moment's score, until none is left; the
    moments of the videos never read cannot reach the answer, ties included.
    """
    clips = tables_at.get("clips")
    if clips is None:
        return tables_at
    names = clips.schema.names
    if not (TOP_LABEL in names and TOP_SCORE in names):
        found = clips.to_table(
            columns=_search_columns(clips.schema), filter=label_filter(labels, top1_column=False)
        )
        return _with_their_videos(tables_at, found)
    where = label_filter(labels)
    if min_score is not None:
        # A pre-filter only: the search's SQL applies its own score rule after.
        where += f" AND {TOP_SCORE} >= {float(min_score)!r}"
    columns = [c for c in _SEARCH_COLUMNS["clips"] if c in names] + [TOP_LABEL, TOP_SCORE]

    def narrowed(videos: Optional[list[str]] = None) -> dict:
        only = f" AND video_id IN ({', '.join(sql_string(v) for v in videos)})" if videos else ""
        found = _top1_as_lists(clips.to_table(columns=columns, filter=where + only))
        return _with_their_videos(tables_at, found)

    if limit is None or kth_score is None:
        return narrowed()
    bounds = _video_bounds(clips, where)
    read = min(limit, len(bounds))
    while read < len(bounds) and read <= _IN_LOOKUP_MAX:
        tables = narrowed([video for video, _ in bounds[:read]])
        kth = kth_score(tables)
        if kth is None:  # fewer than limit moments yet
            read = min(len(bounds), read * 4)
            continue
        more = sum(1 for _, bound in bounds[read:] if bound >= kth)
        if not more:
            return tables
        read += more
    return narrowed()


def _video_bounds(clips, where: str) -> list[tuple[str, float]]:
    """``(video_id, its best candidate clip's score)`` of each video with a clip that
    matches ``where``, best first."""
    best = (
        clips.to_table(
            columns=["video_id", TOP_SCORE], filter=f"{where} AND {TOP_SCORE} IS NOT NULL"
        )
        .group_by("video_id")
        .aggregate([(TOP_SCORE, "max")])
        .sort_by([(f"{TOP_SCORE}_max", "descending"), ("video_id", "ascending")])
    )
    return list(zip(best["video_id"].to_pylist(), best[f"{TOP_SCORE}_max"].to_pylist()))


def _with_their_videos(tables_at: dict, found) -> dict:
    """``tables_at`` with ``found`` as its clips and the rows of their videos."""
    videos = found.column("video_id").unique().to_pylist()
    narrowed = {**tables_at, "clips": found}
    tables = ["videos", "failures"] + (["shots"] if SHOT_INDEX in found.column_names else [])
    for table in tables:
        dataset = tables_at.get(table)
        if dataset is not None:
            columns = [c for c in _SEARCH_COLUMNS[table] if c in dataset.schema.names]
            narrowed[table] = rows_of_videos(dataset, videos, columns)
    return narrowed


def _top1_as_lists(rows):
    """``rows`` with ``top_label``/``top_score`` turned into one-element ``labels``/``scores``
    lists (the columns the search's SQL reads as ``labels[1]``, ``scores[1]``)."""
    import numpy as np
    import pyarrow as pa

    offsets = pa.array(np.arange(rows.num_rows + 1, dtype=np.int32))
    lists = {
        "labels": pa.ListArray.from_arrays(offsets, rows.column(TOP_LABEL).combine_chunks()),
        "scores": pa.ListArray.from_arrays(offsets, rows.column(TOP_SCORE).combine_chunks()),
    }
    rows = rows.drop_columns([TOP_LABEL, TOP_SCORE])
    for name, values in lists.items():
        rows = rows.append_column(name, values)
    return rows


def _indexed(dataset) -> dict[str, str]:
    """``column -> index name`` of the dataset's indexes."""
    found = {}
    for index in dataset.describe_indices():
        for column in index.field_names:
            found[column] = index.name
    return found


def ensure_indexes(
    output: str, vectors: Optional[bool] = None, min_rows: Optional[int] = None
) -> dict[str, str]:
    """Build the missing indexes of ``output``'s Lance tables and fold rows added since
    into the existing ones; returns ``"table.column" -> what was done`` (built, updated,
    dropped: ``OBSOLETE_INDEXES`` once their successor column exists).

    A scalar index is built once its table holds ``min_rows`` rows (default
    ``SCALAR_MIN_ROWS``; 0: always). ``vectors``: None builds the vector index once the
    clips hold ``VECTOR_MIN_ROWS`` embedded clips, True whenever there are enough rows
    to train, False never. Each build or fold is one Lance commit; readers keep their
    snapshot meanwhile. A table that does not exist is skipped.
    """
    min_rows = SCALAR_MIN_ROWS if min_rows is None else min_rows
    done: dict[str, str] = {}
    for table, column, successor in OBSOLETE_INDEXES:
        dataset = open_table(output, table)
        if dataset is None or dataset.schema.get_field_index(successor) < 0:
            continue
        indexed = _indexed(dataset)
        if column in indexed:
            dataset.drop_index(indexed[column])
            done[f"{table}.{column}"] = f"index dropped (searched by {successor} now)"
    for table, column, kind in SCALAR_INDEXES:
        dataset = open_table(output, table)
        if dataset is None:
            continue
        indexed = _indexed(dataset)
        if column not in indexed and dataset.count_rows() < max(min_rows, 1):
            continue
        if column not in indexed:
            dataset.create_scalar_index(column, kind, name=_name(column))
            done[f"{table}.{column}"] = f"{kind} built"
        elif _unindexed_rows(dataset, indexed[column]):
            dataset.optimize.optimize_indices(index_names=[indexed[column]])
            done[f"{table}.{column}"] = f"{kind} updated"
    if vectors is not False:
        what = ensure_vector_index(output, min_rows=VECTOR_MIN_ROWS if vectors is None else 0)
        if what:
            done[f"clips.{EMBEDDING}"] = what
    return done


def _unindexed_rows(dataset, name: str) -> int:
    return int(dataset.stats.index_stats(name).get("num_unindexed_rows", 0))


def ensure_vector_index(output: str, min_rows: int = VECTOR_MIN_ROWS) -> Optional[str]:
    """The clips' ``IVF_PQ`` cosine index on ``embedding``: built where missing and the
    table holds at least ``min_rows`` embedded clips (and ``VECTOR_MIN_TRAIN_ROWS``),
    updated where rows were added since; returns what was done, or None.

    Lists: about ``VECTOR_ROWS_PER_LIST`` clips each; sub-vectors: the largest count
    that divides the embedding's width into pieces of at least
    ``VECTOR_DIMS_PER_SUB_VECTOR`` dimensions.
    """
    import pyarrow as pa

    dataset = open_table(output, "clips")
    if dataset is None or dataset.schema.get_field_index(EMBEDDING) < 0:
        return None
    field = dataset.schema.field(EMBEDDING)
    if not pa.types.is_fixed_size_list(field.type):
        return None
    indexed = _indexed(dataset)
    if EMBEDDING in indexed:
        if _unindexed_rows(dataset, indexed[EMBEDDING]):
            dataset.optimize.optimize_indices(index_names=[indexed[EMBEDDING]])
            return "IVF_PQ updated"
        return None
    rows = dataset.count_rows(filter=f"{EMBEDDING} IS NOT NULL")
    if rows < max(min_rows, VECTOR_MIN_TRAIN_ROWS):
        return None
    dim = field.type.list_size
    sub_vectors = max(
        [d for d in range(1, dim + 1) if dim % d == 0 and dim // d >= VECTOR_DIMS_PER_SUB_VECTOR]
        or [1]
    )
    lists = max(1, min(rows // VECTOR_MIN_TRAIN_ROWS, math.ceil(rows / VECTOR_ROWS_PER_LIST)))
    dataset.create_index(
        EMBEDDING,
        "IVF_PQ",
        name=vector_index_name(),
        metric="cosine",
        num_partitions=lists,
        num_sub_vectors=sub_vectors,
    )
    return f"IVF_PQ built ({lists} lists, {sub_vectors} sub-vectors)"
