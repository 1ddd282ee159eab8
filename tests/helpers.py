"""Helpers the test modules share (no test module imports another).

Paths (``REPO``, ``SHARED``, ``MEDIA``), ``run_cli`` (the CLI in a subprocess, as a
user runs it), ``RUN`` (a run context for stages built directly) and ``make_config``
(an ``IndexConfig`` for a model spec without flags). Videos are written by
``tests.media``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from beam_pipeline.options import IndexConfig
from transforms.context import RunContext
from transforms.video_io import DecodeLimits

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"

RUN = RunContext(run_id="test-run", model_name="m")


def run_cli(*args, cwd=REPO, timeout=600) -> subprocess.CompletedProcess:
    """``video-index ARGS`` in a subprocess of this checkout; its output captured."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "beam_pipeline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def make_config(spec, input_uri: str, output: str, **overrides) -> IndexConfig:
    """The config ``video-index index`` would make for ``spec`` with no optional flags
    (but top-k 2, run id ``test-run`` and the test archives' extensions)."""
    config = IndexConfig(
        input=input_uri,
        output=output,
        spec=spec,
        limits=DecodeLimits(),
        top_k=2,
        batch_size=spec.max_batch_size,
        extensions=(".mkv", ".mp4", ".webm"),
        run_id="test-run",
    )
    return dataclasses.replace(config, **overrides)
