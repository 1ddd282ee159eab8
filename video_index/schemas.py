"""The Parquet schemas of the index: one explicit pyarrow schema per table.

``videos/``: one row per indexed video; ``clips/``: one row per classified clip of
an indexed video; ``shots/``: an indexed video's shots (``transforms.shots``), in
order, covering it from its first frame to its end; ``cues/``: its technical cues (black frames, colour bars, still pictures);
``failures/``: one row per input that could not be indexed. Every distinct input is in exactly one of ``videos/`` and
``failures/``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

VIDEOS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("version", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("num_frames", pa.int64()),
        pa.field("decode_errors", pa.int64()),
        pa.field("discontinuities", pa.int32()),
        pa.field("stream_index", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("sample_aspect_ratio", pa.string()),
        # FFmpeg's transfer name; smpte2084 (PQ) and arib-std-b67 (HLG) are HDR,
        # tone-mapped to SDR before the model (transforms.hdr)
        pa.field("color_transfer", pa.string()),
        pa.field("num_clips", pa.int32()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float32())),
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

CLIPS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("clip_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("labels", pa.list_(pa.string())),
        pa.field("scores", pa.list_(pa.float32())),
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

FAILURES = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("error_type", pa.string()),
        pa.field("message", pa.string()),
        # True: not the file's fault (storage, network, a time limit, a killed decoder);
        # the next run retries it. Null in rows written before the column existed.
        pa.field("transient", pa.bool_()),
        pa.field("size", pa.int64()),
        pa.field("version", pa.string()),
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

SHOTS = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("shot_index", pa.int32(), nullable=False),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        # The boundary that starts the shot: start (the first), cut, fade, dissolve.
        pa.field("kind", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("thumbnail", pa.binary()),  # the middle frame, JPEG
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

CUES = pa.schema(
    [
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("cue_index", pa.int32(), nullable=False),
        pa.field("kind", pa.string()),  # black, bars (colour bars), still (a frozen picture)
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("run_id", pa.string()),
    ]
)

# The clips table adds two columns to the rows a run makes: ``top_label`` and
# ``top_score``, a clip's top-1 (the first of ``labels`` and of ``scores``, null where
# they are empty; not ``label``, the name SQL gives ``labels[1]`` by habit).
# ``video_index.table`` writes them from the lists on every commit; Lance's BITMAP index
# on ``top_label`` answers search by label with the clips whose top-1 it is
# (``video_index.indexes``), so a search reads neither the top-k lists nor other clips.
TOP_LABEL = "top_label"
TOP_SCORE = "top_score"
TOP1 = ((TOP_LABEL, "labels"), (TOP_SCORE, "scores"))
CLIPS_TABLE = CLIPS.append(pa.field(TOP_LABEL, pa.string())).append(
    pa.field(TOP_SCORE, pa.float32())
)

TABLES = {
    "videos": VIDEOS,
    "clips": CLIPS,
    "shots": SHOTS,
    "cues": CUES,
    "failures": FAILURES,
}

# Optional columns of ``clips/``, written where the run makes them (readers of the
# columns above never load them): ``embedding``, the model's penultimate features as a
# fixed-size list of EMBEDDING_TYPE (its length is the model's, 1024 for I3D);
# ``thumbnail``, the clip's middle frame as JPEG bytes (``transforms.thumbnails``); and
# ``shot_index``, the shot (``shots/``) that holds the clip's middle, and ``cue``, the
# kind of the technical cue (``cues/``) that covers at least half the clip, or null.
EMBEDDING = "embedding"
THUMBNAIL = "thumbnail"
SHOT_INDEX = "shot_index"
CUE = "cue"
EMBEDDING_DTYPE = np.float16  # chosen by measurement: bench/bench_similar.py real
EMBEDDING_TYPE = pa.from_numpy_dtype(EMBEDDING_DTYPE)


def clips_schema(
    embedding_dim: int | None = None, thumbnails: bool = False, shots: bool = False
) -> pa.Schema:
    """The ``clips/`` schema of a run: CLIPS plus the optional columns it writes."""
    schema = CLIPS
    if shots:
        schema = schema.append(pa.field(SHOT_INDEX, pa.int32()))
        schema = schema.append(pa.field(CUE, pa.string()))
    if embedding_dim is not None:
        schema = schema.append(pa.field(EMBEDDING, pa.list_(EMBEDDING_TYPE, embedding_dim)))
    if thumbnails:
        schema = schema.append(pa.field(THUMBNAIL, pa.binary()))
    return schema
