"""Compaction: same standing rows in fewer files, atomic for readers, safe to kill, and
never losing a row of a run that commits meanwhile."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import fsspec
import pytest

import video_index.compact as compact_module
from tests.helpers import REPO, clip_row, failure_row, run_cli, video_row
from transforms.sink import write_rows
from video_index.compact import CompactionBusy, compact, compaction_lock, run_file_count
from video_index.index import COMPACTED_PREFIX, index_files
from video_index.query import connect, indexed_versions

VIEWS = {
    "videos": "SELECT video_id, uri, run_id, labels FROM videos",
    "failures": "SELECT video_id, uri, run_id, stage FROM failures",
    "clips": "SELECT video_id, uri, clip_index, run_id, labels, scores FROM clips",
    "segments": "SELECT * FROM segments",
}


def views(out: str) -> dict[str, list]:
    con = connect(out)
    return {name: sorted(con.execute(sql).fetchall()) for name, sql in VIEWS.items()}


def write_history(out: str) -> None:
    """Runs as they leave an index: a change, a killed run, a retried bundle, a failure."""
    for video in ("a", "b", "c"):
        write_rows(out, "clips", [clip_row(video, "r1", i) for i in range(4)], f"r1-{video}-c")
        write_rows(out, "videos", [video_row(video, "r1")], f"r1-{video}-v")
    write_rows(out, "videos", [video_row("b", "r1")], "r1-b-v-again")  # retried bundle
    write_rows(out, "failures", [failure_row("bad", "r1")], "r1-f")
    # r2 re-indexed a (changed): its r1 rows no longer stand.
    write_rows(out, "clips", [clip_row("a", "r2", i) for i in range(6)], "r2-a-c")
    write_rows(out, "videos", [video_row("a", "r2", label="b")], "r2-a-v")
    # r3 was killed after 2 clips of c (orphans) and 1 clip of a new video d.
    write_rows(out, "clips", [clip_row("c", "r3", i) for i in range(2)], "r3-c-c")
    write_rows(out, "clips", [clip_row("d", "r3", 0)], "r3-d-c")


def file_names(out: str) -> dict[str, list[str]]:
    fs, root = fsspec.core.url_to_fs(out)
    fs.invalidate_cache()
    names = {}
    for table in ("videos", "clips", "failures"):
        found = fs.find(f"{root}/{table}") if fs.exists(f"{root}/{table}") else []
        names[table] = sorted(p.rsplit("/", 1)[-1] for p in found)
    return names


def assert_compacted(out: str) -> None:
    for table, names in file_names(out).items():
        assert names and all(n.startswith(COMPACTED_PREFIX) for n in names), (table, names)


def test_compaction_keeps_the_views_and_drops_superseded_rows(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    before = views(out)
    assert run_file_count(out) == 12
    result = compact(out)
    assert views(out) == before
    assert_compacted(out)
    # An index written before shots has no shots/ rows: compaction gives it the table.
    assert result.rows == {"videos": 3, "clips": 17, "shots": 0, "cues": 0, "failures": 1}
    assert result.files_before == {
        "videos": 5,
        "clips": 6,
        "shots": 0,
        "cues": 0,
        "failures": 1,
    }
    con = connect(out)
    # On disk now: the standing rows, plus the killed run's clips, which a later row
    # of that run could still make stand; superseded and repeated rows are gone.
    assert sorted(con.execute("SELECT video_id, run_id, count(*) FROM raw_clips GROUP BY ALL")
                  .fetchall()) == [("a", "r2", 6), ("b", "r1", 4), ("c", "r1", 4),
                                   ("c", "r3", 2), ("d", "r3", 1)]  # fmt: skip
    assert con.execute("SELECT count(*) FROM raw_videos").fetchone() == (3,)
    # Another run adds files: the views take them with the compacted ones.
    write_rows(out, "clips", [clip_row("e", "r4", 0)], "r4-e-c")
    write_rows(out, "videos", [video_row("e", "r4")], "r4-e-v")
    assert connect(out).execute("SELECT count(*) FROM videos").fetchone() == (4,)
    second = compact(out)
    assert second.files_before == {
        "videos": 2,
        "clips": 2,
        "shots": 0,
        "cues": 0,
        "failures": 1,
    }
    assert_compacted(out)
    assert compact(out).rows == {}  # nothing left to do


def test_skip_logic_reads_a_compacted_index_the_same(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    before = indexed_versions(out, "m")
    compact(out)
    assert indexed_versions(out, "m") == before
    assert set(before) == {"/a", "/b", "/c", "/bad"}


def test_a_reader_sees_old_or_new_files_at_every_step(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    write_history(out)
    expected = views(out)
    seen = []

    def read_now(step: str) -> None:
        files = [p.rsplit("/", 1)[-1] for ps in index_files(out).values() for p in ps]
        compacted = [n for n in files if n.startswith(COMPACTED_PREFIX)]
        assert not compacted or len(compacted) == len(files), (step, files)  # never both
        assert views(out) == expected, step  # never neither, never a lost row
        seen.append((step, "new" if compacted else "old"))

    monkeypatch.setattr(compact_module, "_checkpoint", read_now)
    compact(out)
    assert seen[0] == ("listed", "old") and seen[-1] == ("done", "new")
    assert ("moved", "old") in seen and ("committed", "new") in seen


KILL = """
import os, signal, sys
import video_index.compact as c
def stop(step):
    if step == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)
c._checkpoint = stop
c.compact(sys.argv[1])
"""


@pytest.mark.parametrize("step", ["listed", "written clips", "moved", "committed", "deleting"])
def test_a_compaction_killed_at_any_step_leaves_the_index_whole(tmp_path, step):
    out = str(tmp_path / "out")
    write_history(out)
    expected = views(out)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    killed = subprocess.run([sys.executable, "-c", KILL, out, step], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert views(out) == expected
    done = run_cli("compact", out)
    assert done.returncode == 0, done.stderr
    assert views(out) == expected
    assert_compacted(out)
    assert not [n for n in os.listdir(f"{out}/clips/_tmp") if n.startswith(COMPACTED_PREFIX)]


def test_a_run_committing_during_compaction_loses_nothing(tmp_path, monkeypatch):
    """Clips before the listing, the video row after it: the dangerous order."""
    out = str(tmp_path / "out")
    write_history(out)
    write_rows(out, "clips", [clip_row("a", "r5", i) for i in range(3)], "r5-a-c")

    def run_goes_on(step: str) -> None:
        if step == "listed":
            write_rows(out, "videos", [video_row("a", "r5", label="r5")], "r5-a-v")
            write_rows(out, "clips", [clip_row("f", "r5", 0)], "r5-f-c")
            write_rows(out, "videos", [video_row("f", "r5")], "r5-f-v")

    monkeypatch.setattr(compact_module, "_checkpoint", run_goes_on)
    compact(out)
    con = connect(out)
    assert sorted(con.execute("SELECT video_id, run_id, num_clips FROM videos").fetchall()) == [
        ("a", "r5", 1), ("b", "r1", 1), ("c", "r1", 1), ("f", "r5", 1),
    ]  # fmt: skip
    clips = con.execute("SELECT video_id, count(*) FROM clips GROUP BY 1 ORDER BY 1").fetchall()
    assert clips == [("a", 3), ("b", 4), ("c", 4), ("f", 1)]
    # The run's files that came after the listing are still there as run files.
    assert "r5-a-v.parquet" in file_names(out)["videos"]


def test_a_second_compaction_is_refused(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    with compaction_lock(out):
        done = run_cli("compact", out)
        assert done.returncode == 1 and "another compaction" in done.stderr
    assert run_cli("compact", out).returncode == 0


def test_compact_command_errors(tmp_path):
    done = run_cli("compact", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no index at" in done.stderr


# --- buckets -------------------------------------------------------------------------------


def test_compaction_on_a_bucket(store, monkeypatch):
    out = store.uri(f"compact-{uuid.uuid4().hex[:8]}")
    write_history(out)
    expected = views(out)
    with compaction_lock(out):  # a lock object, created only if absent
        with pytest.raises(CompactionBusy):
            compact(out)
    done = run_cli("compact", out)
    assert done.returncode == 0, done.stderr
    assert views(out) == expected
    assert_compacted(out)
    for command in (["search", out, "--label", "a", "--format", "json"],
                    ["query", out, "SELECT count(*) FROM clips"]):  # fmt: skip
        shown = run_cli(*command)
        assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["count_star()", "14"]


def test_a_dead_holders_lease_expires(s3_server, monkeypatch):
    out = s3_server.uri(f"lease-{uuid.uuid4().hex[:8]}")
    write_history(out)
    monkeypatch.setattr(compact_module, "LEASE_S", -1.0)  # every lease is already stale
    with compaction_lock(out):
        pass
    s3_server.fs.pipe_file(f"{out.split('://', 1)[1]}/_compaction.lock", b'{"expires": 0}')
    assert compact(out).rows["videos"] == 3


def test_compaction_of_files_written_before_a_column_was_added(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    write_history(str(out))
    old = pa.Table.from_pylist([video_row("g", "r0")]).drop_columns(["num_frames"])
    pq.write_table(old, out / "videos" / "r0-old.parquet")
    compact(str(out))
    con = connect(str(out))
    assert con.execute("SELECT num_frames FROM videos WHERE video_id = 'g'").fetchone() == (None,)
    assert con.execute("SELECT num_frames FROM videos WHERE video_id = 'a'").fetchone() == (25,)


def test_the_job_compacts_past_its_threshold(tmp_path, capsys):
    from beam_pipeline.query_cli import compact_if_many_files

    out = str(tmp_path / "out")
    write_history(out)
    compact_if_many_files(out, 12, "video-index")  # 12 run files: not past it
    assert run_file_count(out) == 12 and capsys.readouterr().out == ""
    compact_if_many_files(out, 11, "video-index")
    assert run_file_count(out) == 0
    assert "compacted 12 small files into 3" in capsys.readouterr().out
