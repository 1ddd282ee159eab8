"""Helpers the test modules share (no test module imports another).

Paths (``REPO``, ``SHARED``, ``MEDIA``; ``DEMO_MEDIA`` and ``GOLDEN``, in the repo), ``run_cli`` (the CLI in a subprocess, as a
user runs it), ``RUN`` (a run context for stages built directly), ``preprocess`` (the
product's frame path on an image), ``make_config``
(an ``IndexConfig`` for a model spec without flags) and small rows of the three tables
for tests that write an index directly (``video_row``, ``clip_row``, ``failure_row``:
made by the product's ``transforms.rows``, so a new column reaches them too), and
``index_tables`` / ``assert_injected_faults`` for the decoder crash and hang tests.
Videos are written by ``tests.media``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np

from beam_pipeline.options import IndexConfig
from transforms.context import RunContext
from transforms.preprocess import FrameSpec
from transforms.reading import prepare_frame
from transforms.records import ClipScores, Failure, VideoInfo, VideoOutcome, VideoRef
from transforms.rows import failure_row as _failure_row
from transforms.rows import outcome_rows
from transforms.video_io import DecodeLimits, VideoReader

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
# In the repo, so the tests that matter run anywhere: the demo's three clips and the
# reference outputs of I3D on them.
DEMO_MEDIA = REPO / "examples" / "media"
GOLDEN = REPO / "tests" / "data" / "golden"

RUN = RunContext(run_id="test-run", model_name="m")

# Runner flags the decoder crash/hang tests run under: the local runner's default mode
# and its multi_processing mode.
RUNNER_MODES = {
    "local": [],
    "multi_processing": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
}


def index_tables(out: Path) -> tuple[dict, dict]:
    """``videos/`` and ``failures/`` rows of the index at ``out``, by video_id."""
    from video_index.index import read_table

    return tuple(
        {r["video_id"]: r for r in read_table(str(out), table).to_pylist()}
        for table in ("videos", "failures")
    )


def assert_injected_faults(failures: dict) -> None:
    """``failures`` (video_id -> row) is exactly the injected crash ``x__crash__.mkv`` and
    hang ``y__hang__.mkv``, each a decode failure that says what happened."""
    assert set(failures) == {"x__crash__.mkv", "y__hang__.mkv"}, failures
    crash, hang = failures["x__crash__.mkv"], failures["y__hang__.mkv"]
    assert (crash["stage"], crash["error_type"]) == ("decode", "DecoderCrashed")
    assert "decoder crashed" in crash["message"]
    assert (hang["stage"], hang["error_type"]) == ("decode", "DecoderTimedOut")
    assert "decoder timed out" in hang["message"]


def run_cli(*args, cwd=REPO, timeout=600, text=True) -> subprocess.CompletedProcess:
    """``video-index ARGS`` in a subprocess of this checkout; its output captured (as
    bytes where ``text`` is false: CR LF kept as written)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "beam_pipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=text,
        timeout=timeout,
    )


def preprocess(image: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """The product's frame path (``prepare_frame``: swscale resize, centre crop) applied
    to an RGB uint8 ``[H, W, 3]`` image."""
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    return prepare_frame(VideoReader("unopened"), frame, spec)


def make_config(spec, input_uri: str, output: str, **overrides) -> IndexConfig:
    """The config ``video-index index`` would make for ``spec`` with no optional flags
    (but top-k 2, run id ``test-run`` and the test archives' extensions)."""
    config = IndexConfig(
        inputs=(input_uri,),
        output=output,
        spec=spec,
        limits=DecodeLimits(),
        top_k=2,
        batch_size=spec.max_batch_size,
        extensions=(".mkv", ".mp4", ".webm"),
        run_id="test-run",
    )
    return dataclasses.replace(config, **overrides)


def _rows(outcome: VideoOutcome, run_id: str) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {"videos": [], "clips": []}
    for table, row in outcome_rows(outcome, RunContext(run_id, "m")):
        tables[table].append(row)
    return tables


def _info(video_id: str) -> VideoInfo:
    """A 1 s, 25 fps, 4x4 FFV1 video with one clip."""
    return VideoInfo(video_id, f"/{video_id}", 1.0, 25.0, 4, 4, 1, 25, codec="ffv1")


def _ref(video_id: str) -> VideoRef:
    return VideoRef(video_id, f"/{video_id}", size=1, version="v")


def video_row(video_id: str, run_id: str, label: str = "a") -> dict:
    """A ``videos/`` row of a 1 s, 25 fps, 4x4 video with one clip, top-1 ``label`` (0.9)."""
    info = _info(video_id)
    outcome = VideoOutcome(_ref(video_id), info, (), (label,), (0.9,))
    (row,) = _rows(outcome, run_id)["videos"]
    return row


def clip_row(video_id: str, run_id: str, clip_index: int) -> dict:
    """A ``clips/`` row: clip ``clip_index`` spans [index, index + 1) s, top-1 'a' (0.9)."""
    clip = ClipScores(clip_index, float(clip_index), clip_index + 1.0, ("a",), (0.9,))
    info = _info(video_id)
    outcome = VideoOutcome(_ref(video_id), info, (clip,), ("a",), (0.9,))
    (row,) = _rows(outcome, run_id)["clips"]
    return row


def failure_row(video_id: str, run_id: str) -> dict:
    """A ``failures/`` row: ``decode`` failed with error type 'E', message 'bad'."""
    failure = Failure(video_id, f"/{video_id}", "decode", "E", "bad")
    return _failure_row(failure, RunContext(run_id, "m"), _ref(video_id))


def write_run_file(output: str, table: str, rows: list[dict], file_stem: str, schema=None) -> str:
    """One run file ``OUTPUT/TABLE/STEM.parquet`` of the layout before the Lance tables
    (what `video-index upgrade` converts); returns its path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from video_index.schemas import TABLES

    path = Path(output) / table / f"{file_stem}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema or TABLES[table]), path)
    return str(path)


def table_rows(out, table: str) -> list[dict]:
    """Every row of the index's ``table`` at its newest version, as a plain reader
    (Lance alone, no rule of ours) sees it."""
    import lance

    return lance.dataset(f"{out}/{table}.lance").to_table().to_pylist()
