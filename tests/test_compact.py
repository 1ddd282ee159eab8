"""Compaction of the index's Lance tables: the same standing rows in fewer files, readers
and runs going on meanwhile, old-layout indexes upgraded first, and the job's threshold."""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.helpers import clip_row, failure_row, run_cli, video_row, write_run_file
from transforms.sink import commit
from video_index import table as tables
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
    """Runs as they leave an index: a change, a killed run, a retried bundle, a failure;
    one commit per call, as a run's flushes make them."""
    for video in ("a", "b", "c"):
        commit(out, "clips", [clip_row(video, "r1", i) for i in range(4)])
        commit(out, "videos", [video_row(video, "r1")])
    commit(out, "videos", [video_row("b", "r1")])  # retried bundle
    commit(out, "failures", [failure_row("bad", "r1")])
    tables.settle(out, "r1")
    # r2 re-indexed a (changed): its r1 rows go when r2 settles.
    commit(out, "clips", [clip_row("a", "r2", i) for i in range(6)])
    commit(out, "videos", [video_row("a", "r2", label="b")])
    tables.settle(out, "r2")
    # r3 was killed after 2 clips of c (orphans) and 1 clip of a new video d.
    commit(out, "clips", [clip_row("c", "r3", i) for i in range(2)])
    commit(out, "clips", [clip_row("d", "r3", 0)])


def test_compaction_keeps_the_views_in_fewer_files(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    before = views(out)
    assert len(before["videos"]) == 3 and len(before["clips"]) == 14
    files = tables.file_count(out)
    after = tables.compact(out)
    assert views(out) == before
    assert files > sum(after.values())
    assert after == {"videos": 1, "clips": 1, "failures": 1}  # no shots or cues were written
    # The killed run's clips stay until a run settles them; nothing else is on disk.
    con = connect(out)
    assert sorted(con.execute("SELECT video_id, run_id, count(*) FROM raw_clips GROUP BY ALL")
                  .fetchall()) == [("a", "r2", 6), ("b", "r1", 4), ("c", "r1", 4),
                                   ("c", "r3", 2), ("d", "r3", 1)]  # fmt: skip
    # Another run adds files: the views take them with the compacted ones.
    commit(out, "clips", [clip_row("e", "r4", 0)])
    commit(out, "videos", [video_row("e", "r4")])
    assert connect(out).execute("SELECT count(*) FROM videos").fetchone() == (4,)
    assert tables.compact(out)["videos"] == 1


def test_skip_logic_reads_a_compacted_index_the_same(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    before = indexed_versions(out, "m")
    tables.compact(out)
    assert indexed_versions(out, "m") == before
    assert set(before) == {"/a", "/b", "/c", "/bad"}


def test_a_run_committing_during_compaction_loses_nothing(tmp_path):
    out = str(tmp_path / "out")
    write_history(out)
    errors = []

    def run_goes_on() -> None:
        try:
            for i in range(12):
                commit(out, "clips", [clip_row(f"n{i}", "r5", j) for j in range(2)])
                commit(out, "videos", [video_row(f"n{i}", "r5")])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    writer = threading.Thread(target=run_goes_on)
    writer.start()
    while writer.is_alive():
        tables.compact(out)
    writer.join()
    assert errors == []
    con = connect(out)
    assert con.execute("SELECT count(*) FROM videos").fetchone() == (15,)
    assert con.execute("SELECT count(*) FROM clips WHERE run_id = 'r5'").fetchone() == (24,)
    assert con.execute("SELECT count(*) FROM raw_clips WHERE run_id = 'r5'").fetchone() == (24,)


def test_compact_upgrades_an_index_in_the_old_layout(tmp_path):
    out = tmp_path / "out"
    write_run_file(str(out), "clips", [clip_row("a", "r1", i) for i in range(3)], "r1-a")
    write_run_file(str(out), "videos", [video_row("a", "r1")], "r1-b")
    write_run_file(str(out), "videos", [video_row("a", "r1")], "r1-c")  # a retried bundle
    before = views(str(out))
    done = run_cli("compact", str(out))
    assert done.returncode == 0, done.stderr
    assert "upgraded" in done.stdout and "1 videos, 3 clips" in done.stdout
    assert tables.has_tables(str(out)) and views(str(out)) == before
    assert tables.open_table(str(out), "videos").count_rows() == 1


def test_compact_command_errors(tmp_path):
    done = run_cli("compact", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "no index at" in done.stderr
    done = run_cli("compact", str(tmp_path), "--retention-days", "-1")
    assert done.returncode == 2 and "--retention-days" in done.stderr


def test_compaction_on_a_bucket(s3_server):
    out = s3_server.uri(f"compact-{uuid.uuid4().hex[:8]}")
    write_history(out)
    expected = views(out)
    done = run_cli("compact", out)
    assert done.returncode == 0, done.stderr
    assert views(out) == expected
    assert tables.file_count(out) == 3
    for command in (["search", out, "--label", "a", "--format", "json"],
                    ["query", out, "SELECT count(*) FROM clips"]):  # fmt: skip
        shown = run_cli(*command)
        assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["count_star()", "14"]


def test_the_job_compacts_past_its_threshold(tmp_path, capsys):
    from beam_pipeline.query_cli import compact_if_many_files

    out = str(tmp_path / "out")
    write_history(out)
    files = tables.file_count(out)
    compact_if_many_files(out, files, "video-index")  # not past it
    assert tables.file_count(out) == files and capsys.readouterr().out == ""
    compact_if_many_files(out, files - 1, "video-index")
    assert tables.file_count(out) == 3
    assert f"compacted {files} small files into 3" in capsys.readouterr().out


@pytest.mark.parametrize("table", ["videos", "clips"])
def test_an_empty_table_is_compacted_to_a_readable_table(tmp_path, table):
    out = str(tmp_path / "out")
    tables.ensure_tables(out)
    tables.compact(out)
    assert tables.open_table(out, table).count_rows() == 0
    assert connect(out).execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
