"""Incremental and resumable runs, through the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lance
import pyarrow.parquet as pq

from beam_pipeline.report import current_rows, read_table
from video_index.table import format_version as table_format_version
from tests.helpers import REPO
from tests.media import COLOURS, write_colour_video


def index_cmd(archive: Path, out: Path, spec_file: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "beam_pipeline", "index",
        "--input", str(archive), "--output", str(out), "--model", str(spec_file), *extra,
    ]  # fmt: skip


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def last_record(out: Path) -> dict:
    records = sorted((out / "runs").glob("*.json"))
    return json.loads(records[-1].read_text())


def test_rerun_indexes_only_what_changed(tmp_path, colour_spec_file):
    archive = tmp_path / "archive"
    archive.mkdir()
    for name, rgb in COLOURS.items():
        write_colour_video(archive / f"{name}.mkv", rgb, 1.0)
    (archive / "broken.mkv").write_text("not a video")
    out = tmp_path / "out"

    run(index_cmd(archive, out, colour_spec_file))
    # 1 s at 10 fps in 8-frame clips: one clip and one aligned to the end.
    assert last_record(out)["counts"] == {
        "videos": 3,
        "clips": 6,
        "failures": 1,
        "skipped_unchanged": 0,
        "left_out_by_extension": 0,
    }

    # The run record names the index's table format and its version.
    assert last_record(out)["format"] == table_format_version()
    second = run(index_cmd(archive, out, colour_spec_file))
    assert last_record(out)["counts"]["skipped_unchanged"] == 4
    assert last_record(out)["counts"]["videos"] == last_record(out)["counts"]["failures"] == 0
    assert "nothing new to index" in second.stdout

    # Change one file (now blue, and longer): exactly that one is indexed again.
    time.sleep(0.01)
    write_colour_video(archive / "red.mkv", COLOURS["blue"], 2.0)
    run(index_cmd(archive, out, colour_spec_file))
    record = last_record(out)
    assert (record["counts"]["videos"], record["counts"]["skipped_unchanged"]) == (1, 3)
    videos = {r["video_id"]: r for r in current_rows(str(out))["videos"].to_pylist()}
    assert videos["red.mkv"]["labels"][0] == "blue" and videos["red.mkv"]["num_clips"] == 3
    # The table holds the standing rows only; the old red.mkv row is in an older version.
    assert len(read_table(str(out), "videos")) == len(videos) == 3
    dataset = lance.dataset(str(out / "videos.lance"))
    old = [
        row
        for version in dataset.versions()
        for row in lance.dataset(str(out / "videos.lance"), version=version["version"])
        .to_table(filter="video_id = 'red.mkv'")
        .to_pylist()
    ]
    assert {row["labels"][0] for row in old} == {"red", "blue"}
    # An export holds the standing rows only, as plain files any Parquet reader takes.
    exported = tmp_path / "export"
    shown = run([sys.executable, "-m", "beam_pipeline", "show", str(out),
                 "--export", str(exported)])  # fmt: skip
    assert shown.stdout.count("exported: ") == 5
    tables = ("videos", "clips", "shots", "cues", "failures")
    flat = {t: pq.read_table(exported / f"{t}.parquet") for t in tables}
    # Each standing video's shots (one each: a flat colour), none of a failure's.
    assert sorted(flat["shots"].column("video_id").to_pylist()) == sorted(videos)
    assert sorted(flat["videos"].column("video_id").to_pylist()) == sorted(videos)
    assert flat["clips"].num_rows == sum(r["num_clips"] for r in videos.values()) == 7
    assert flat["failures"].column("video_id").to_pylist() == ["broken.mkv"]

    run(index_cmd(archive, out, colour_spec_file, "--reindex"))
    assert last_record(out)["counts"]["videos"] == 3


def committed(out: Path, table: str) -> int:
    """Rows in the table's newest version (0 before the table exists)."""
    try:
        return lance.dataset(str(out / f"{table}.lance")).count_rows()
    except (ValueError, OSError):
        return 0


def test_a_killed_run_resumes_to_a_complete_index(tmp_path, colour_spec_file):
    archive = tmp_path / "archive"
    archive.mkdir()
    names = []
    for i in range(24):
        name = f"v{i:02d}.mkv"
        write_colour_video(archive / name, list(COLOURS.values())[i % 3], 8.0)
        names.append(name)
    (archive / "broken.mkv").write_text("not a video")
    out = tmp_path / "out"
    cmd = index_cmd(archive, out, colour_spec_file, "--commit-every-s", "0", "--batch-size", "1")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # Kill mid-video where we can (one file per row here): a video's first
            # clips committed, its row not yet, the case a reader must get right.
            mid_video = committed(out, "clips") % 10 != 0
            if committed(out, "videos") >= 3 and mid_video:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = read_table(str(out), "videos").column("video_id").to_pylist()
    assert 3 <= len(partial) < 24

    run([c for c in cmd if c not in ("--batch-size", "1")])
    videos = read_table(str(out), "videos").column("video_id").to_pylist()
    failures = read_table(str(out), "failures").column("video_id").to_pylist()
    # Exactly one row per input across the two tables, on disk, not only after dedup.
    assert sorted(videos + failures) == sorted(names + ["broken.mkv"])
    assert last_record(out)["counts"]["skipped_unchanged"] >= len(partial)
    # Every indexed video has all its clips (8 s at 10 fps in 8-frame clips = 10).
    clips = current_rows(str(out))["clips"]
    per_video = {}
    for vid in clips.column("video_id").to_pylist():
        per_video[vid] = per_video.get(vid, 0) + 1
    assert per_video == {name: 10 for name in names}
    # The killed run's clips of videos it never finished went with the resumed run's
    # commits: a reader with no rule of ours counts each clip once.
    assert committed(out, "clips") == 10 * len(names)
    assert committed(out, "videos") + committed(out, "failures") == len(names) + 1


def test_two_runs_into_one_index_at_once_count_each_video_once(tmp_path, colour_spec_file):
    """Both runs index every video (neither sees the other's rows when it starts): once
    both have ended, a plain reader counts each video and its clips once."""
    archive = tmp_path / "archive"
    archive.mkdir()
    names = [f"v{i}.mkv" for i in range(6)]
    for i, name in enumerate(names):
        write_colour_video(archive / name, list(COLOURS.values())[i % 3], 2.0)
    (archive / "broken.mkv").write_text("not a video")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = index_cmd(archive, out, colour_spec_file, "--commit-every-s", "0")
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
    records = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(records) == 2
    videos = lance.dataset(str(out / "videos.lance")).to_table().to_pylist()
    failures = lance.dataset(str(out / "failures.lance")).to_table().to_pylist()
    assert sorted(r["video_id"] for r in videos) == names
    assert [r["video_id"] for r in failures] == ["broken.mkv"]
    # Each video's clips are those of the run whose row stands, once.
    clips = lance.dataset(str(out / "clips.lance")).to_table(columns=["video_id", "run_id"])
    assert clips.num_rows == sum(r["num_clips"] for r in videos)
    assert {r["run_id"] for r in videos} <= {r["run_id"] for r in records}
    by_video = {r["video_id"]: r["run_id"] for r in videos}
    assert all(
        run == by_video[video]
        for video, run in zip(*(clips.column(c).to_pylist() for c in ("video_id", "run_id")))
    )
