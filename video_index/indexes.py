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

- ``clips.labels``: ``LABEL_LIST`` (one bitmap of rows per class name): ``search`` by
  label reads the rows whose top-k holds the class, not the 25M clips.
- ``videos.video_id``, ``failures.video_id``, ``clips.video_id``: ``BTREE``: a video's
  rows (``similar``'s query clip, the standing check of its results) by lookup.
- ``clips.embedding``: ``IVF_PQ`` with the cosine metric, once the table holds
  ``VECTOR_MIN_ROWS`` embedded clips (below that the exact scan is fast enough).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from video_index.schemas import EMBEDDING
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
    ("clips", "labels", "LABEL_LIST"),
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


# More videos than this are found by a pass over the video_id column, not by lookups.
_IN_LOOKUP_MAX = 2_000


def _name(column: str) -> str:
    return f"{column}_idx"


def vector_index_name() -> str:
    """The name of the clips table's vector index."""
    return _name(EMBEDDING)


def label_filter(labels: Sequence[str]) -> str:
    """The Lance filter of clips whose top-1 label is one of ``labels``.

    ``array_has_any`` is what the ``LABEL_LIST`` index answers (clips with the class
    anywhere in their top-k); Lance then checks the top-1 rule on those rows only.
    Raises ValueError for no labels.
    """
    if not labels:
        raise ValueError("label_filter needs at least one label")
    names = ", ".join(sql_string(label) for label in labels)
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


def label_candidates(tables_at: dict, labels: Sequence[str]) -> dict:
    """``tables_at`` (``video_index.table.snapshot``) narrowed for a search of
    ``labels``: ``clips`` holds the clips whose top-1 label is one of them
    (``label_filter``), and ``videos``, ``failures``, ``shots`` and ``cues`` the rows
    of those clips' videos, each a ``pyarrow.Table`` read at the snapshot's version
    (without float16 and binary columns: embeddings and thumbnails).

    The standing rule then needs only those videos' rows: a search reads what its
    answer is made of, not the archive (``video_index.query.connect(narrow=...)``).
    """
    clips = tables_at.get("clips")
    if clips is None:
        return tables_at
    found = clips.to_table(columns=_search_columns(clips.schema), filter=label_filter(labels))
    videos = found.column("video_id").unique().to_pylist()
    narrowed = {**tables_at, "clips": found}
    for table in ("videos", "failures", "shots", "cues"):
        if tables_at.get(table) is not None:
            narrowed[table] = rows_of_videos(tables_at[table], videos)
    return narrowed


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
    into the existing ones; returns ``"table.column" -> what was done`` (built, updated).

    A scalar index is built once its table holds ``min_rows`` rows (default
    ``SCALAR_MIN_ROWS``; 0: always). ``vectors``: None builds the vector index once the
    clips hold ``VECTOR_MIN_ROWS`` embedded clips, True whenever there are enough rows
    to train, False never. Each build or fold is one Lance commit; readers keep their
    snapshot meanwhile. A table that does not exist is skipped.
    """
    min_rows = SCALAR_MIN_ROWS if min_rows is None else min_rows
    done: dict[str, str] = {}
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
