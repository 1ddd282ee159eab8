"""WriteIndex and reading the index back."""

from __future__ import annotations

import apache_beam as beam
import duckdb
import lance
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipeline.report import current_rows, format_summary, load_summary
from tests.helpers import clip_row, failure_row, video_row
from transforms.sink import WriteIndex, commit


def test_a_commit_retried_by_the_runner_adds_nothing(tmp_path):
    out = str(tmp_path)
    rows = [video_row("x", "r1"), video_row("y", "r1")]
    commit(out, "videos", rows)
    commit(out, "videos", rows)  # the runner retried the bundle after its commit
    # A plain reader with no rule of ours counts each row once.
    videos = lance.dataset(str(tmp_path / "videos.lance"))
    assert duckdb.sql("SELECT count(*) FROM videos").fetchall() == [(2,)]


def test_write_index_flushes_in_pieces(tmp_path):
    rows = [video_row(f"v{i}", "r1") for i in range(7)]
    with TestPipeline() as p:
        tables = {
            "Videos": p | "V" >> beam.Create([("videos", row) for row in rows]),
            "Failures": p | "F" >> beam.Create([("failures", failure_row("bad", "r1"))]),
        }
        tables | WriteIndex(str(tmp_path), "r1", flush_rows=3)
    # 7 rows, at most 3 per commit: each flush is a version of the table.
    assert lance.dataset(str(tmp_path / "videos.lance")).version >= 3
    current = current_rows(str(tmp_path))
    assert sorted(current["videos"].column("video_id").to_pylist()) == [f"v{i}" for i in range(7)]
    assert current["failures"].column("video_id").to_pylist() == ["bad"]


def test_newest_run_wins_across_tables(tmp_path):
    out = str(tmp_path)
    commit(out, "videos", [video_row("x", "r1"), video_row("y", "r1")])
    commit(out, "failures", [failure_row("x", "r2")])
    commit(out, "videos", [video_row("y", "r2", "b"), video_row("y", "r2", "b")])
    current = current_rows(out)
    assert current["videos"].column("video_id").to_pylist() == ["y"]
    assert current["videos"].column("labels").to_pylist() == [["b"]]
    assert current["failures"].column("video_id").to_pylist() == ["x"]
    text = format_summary(load_summary(out), out, None)
    assert "1 video indexed, 1 failed" in text


def test_orphan_clips_of_a_killed_run_do_not_hide_the_rerun_clips(tmp_path):
    # A run killed mid-video committed clips 0-2 of x but not x's row; the re-run
    # indexed x whole. Its 10 clips stand; clips of a run that lost never shadow them.
    out = str(tmp_path)
    commit(out, "clips", [clip_row("x", "r1", i) for i in range(3)])
    commit(out, "clips", [clip_row("x", "r2", i) for i in range(10)])
    commit(out, "clips", [clip_row("x", "r2", 4)])  # a retried bundle's repeat
    commit(out, "videos", [video_row("x", "r2")])
    clips = current_rows(out)["clips"]
    assert clips.column("run_id").to_pylist() == ["r2"] * 10
    assert sorted(clips.column("clip_index").to_pylist()) == list(range(10))
