"""WriteIndex and reading the index back."""

from __future__ import annotations

import apache_beam as beam
import pyarrow.dataset as ds
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipeline.report import current_rows, format_summary, load_summary
from tests.helpers import clip_row, failure_row, video_row
from transforms.sink import WriteIndex, write_rows


def test_write_rows_is_atomic_and_readable(tmp_path):
    path = write_rows(str(tmp_path), "videos", [video_row("x", "r1")], "r1-part")
    assert path.endswith("videos/r1-part.parquet")
    assert list((tmp_path / "videos" / "_tmp").iterdir()) == []
    # pyarrow.dataset over the folder skips the _tmp folder by itself.
    table = ds.dataset(str(tmp_path / "videos"), format="parquet").to_table()
    assert table.column("video_id").to_pylist() == ["x"]


def test_write_index_flushes_in_pieces(tmp_path):
    rows = [video_row(f"v{i}", "r1") for i in range(7)]
    with TestPipeline() as p:
        tables = {
            "Videos": p | "V" >> beam.Create([("videos", row) for row in rows]),
            "Failures": p | "F" >> beam.Create([("failures", failure_row("bad", "r1"))]),
        }
        tables | WriteIndex(str(tmp_path), "r1", flush_rows=3)
    files = sorted((tmp_path / "videos").glob("*.parquet"))
    assert len(files) >= 3  # 7 rows, at most 3 per file
    current = current_rows(str(tmp_path))
    assert sorted(current["videos"].column("video_id").to_pylist()) == [f"v{i}" for i in range(7)]
    assert current["failures"].column("video_id").to_pylist() == ["bad"]


def test_newest_run_wins_across_tables(tmp_path):
    out = str(tmp_path)
    write_rows(out, "videos", [video_row("x", "r1"), video_row("y", "r1")], "r1-a")
    write_rows(out, "failures", [failure_row("x", "r2")], "r2-a")
    write_rows(out, "videos", [video_row("y", "r2", "b"), video_row("y", "r2", "b")], "r2-b")
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
    write_rows(out, "clips", [clip_row("x", "r1", i) for i in range(3)], "r1-a")
    write_rows(out, "clips", [clip_row("x", "r2", i) for i in range(10)], "r2-a")
    write_rows(out, "clips", [clip_row("x", "r2", 4)], "r2-b")  # a retried bundle's repeat
    write_rows(out, "videos", [video_row("x", "r2")], "r2-c")
    clips = current_rows(out)["clips"]
    assert clips.column("run_id").to_pylist() == ["r2"] * 10
    assert sorted(clips.column("clip_index").to_pylist()) == list(range(10))
