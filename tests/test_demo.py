"""The demo runs from the repo alone: ``./run_local.sh`` with no arguments, as a stranger
runs it on a fresh clone, indexes ``examples/`` and prints the table, twice."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

EXAMPLES = REPO / "examples"


def _manifest_uris() -> dict[str, str]:
    with open(EXAMPLES / "demo_manifest.csv", newline="") as f:
        return {row["video_id"]: row["uri"] for row in csv.DictReader(f)}


def test_demo_input_is_in_the_repo_with_its_provenance():
    """Every demo input lies inside the checkout: a committed clip whose sha256 the NOTICE
    states, or the not-a-video file the demo writes under out/ (never committed)."""
    notice = (EXAMPLES / "NOTICE").read_text()
    committed = set()
    for video_id, uri in _manifest_uris().items():
        path = (EXAMPLES / uri).resolve()
        assert path.is_relative_to(REPO), (video_id, uri)
        if path.is_relative_to(REPO / "out"):
            continue  # written by run_local.sh
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"file: {uri}" in notice and f"sha256: {digest}" in notice, uri
        committed.add(path)
    assert len(committed) == 3
    assert committed == {p.resolve() for p in (EXAMPLES / "media").iterdir()}
    size = sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file())
    assert size < 6_000_000


def _stranger_checkout(root: Path) -> Path:
    """run_local.sh and examples/ in a folder with nothing beside it; the venv step
    replaced by a ``video-index`` on PATH that runs this checkout's code."""
    clone = root / "clone"
    (clone / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "run_local.sh", clone)
    shutil.copytree(EXAMPLES, clone / "examples")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "video-index"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m beam_pipeline "$@"\n')
    shim.chmod(0o755)
    (clone / "scripts" / "ensure_venv.sh").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    return clone


@pytest.mark.slow
def test_run_local_indexes_the_demo_from_the_repo_alone(tmp_path):
    clone = _stranger_checkout(tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "VIDEO_INDEX_SHARED": str(tmp_path / "no-shared"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    runs = [
        subprocess.run(
            ["bash", "run_local.sh"], cwd=clone, env=env, capture_output=True, text=True,
            timeout=900,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
        table = {
            line.split()[0]: line
            for line in run.stdout.splitlines()
            if line and not line.startswith(("run", "video", "failed"))
        }
        assert re.search(r"playing cricket 0\.9", table["cricket-shot"]), run.stdout
        assert re.search(r"cleaning pool 0\.9", table["cleaning-pool"]), run.stdout
        assert "chaplin" in table
        assert "UnreadableVideo" in table["not-a-video"], run.stdout
    assert "3 videos indexed, 1 failed" in runs[0].stdout
    assert not (clone / "examples" / "not-a-video.mp4").exists()


def test_the_summary_counts_the_tests_that_want_shared(tmp_path):
    """Without ../shared the run says how many tests skipped for want of it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDEO_INDEX_SHARED": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_video_io.py", "-k", "rotation or gif_frame_times"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert f"3 of 3 skipped tests need {tmp_path}, which is not here" in done.stdout
