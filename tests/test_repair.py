"""A damaged index: one line naming the file, `repair` back to working order without the
other rows lost, and `upgrade` of an index in the old layout."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import clip_row, run_cli, video_row, write_run_file
from transforms.sink import commit
from video_index import table as tables
from video_index.query import connect, indexed_versions


def three_videos(out: str) -> None:
    """Videos a, b, c of run r1, each with 4 clips, one commit per video's clips."""
    for video in ("a", "b", "c"):
        commit(out, "clips", [clip_row(video, "r1", i) for i in range(4)])
    commit(out, "videos", [{**video_row(v, "r1"), "num_clips": 4} for v in ("a", "b", "c")])
    tables.settle(out, "r1")


def truncate_clips_of(out: str, video: str) -> Path:
    """Cut the data file holding ``video``'s clips to 100 bytes; returns its path."""
    dataset = tables.open_table(out, "clips")
    for fragment in dataset.get_fragments():
        if video in fragment.to_table(columns=["video_id"]).column("video_id").to_pylist():
            path = Path(tables.table_uri(out, "clips")) / "data" / fragment.data_files()[0].path
            with open(path, "r+b") as f:
                f.truncate(100)
            return path
    raise AssertionError(f"no clips of {video}")


def test_a_damaged_data_file_is_named_in_one_line_and_repair_restores_the_index(tmp_path):
    out = str(tmp_path / "out")
    three_videos(out)
    broken = truncate_clips_of(out, "b")
    for command in (["show", out], ["query", out, "SELECT count(*) FROM clips"],
                    ["search", out, "--label", "a"]):  # fmt: skip
        done = run_cli(*command)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert str(broken) in lines[0] and f"video-index repair {out}" in lines[0]

    done = run_cli("repair", out)
    assert done.returncode == 0, done.stderr
    assert f"removed {broken}" in done.stdout and "1 videos lost rows" in done.stdout
    shown = run_cli("show", out)
    assert shown.returncode == 0, shown.stderr
    con = connect(out)
    assert con.execute("SELECT video_id, count(*) FROM clips GROUP BY 1 ORDER BY 1").fetchall() == [
        ("a", 4),
        ("c", 4),
    ]
    # b lost its clips: its row went too, so the next run indexes it again.
    assert set(indexed_versions(out, "m")) == {"/a", "/c"}
    again = run_cli("repair", out)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    nothing = run_cli("repair", str(Path(out).parent / "nope"))
    assert nothing.returncode == 2 and "no index at" in nothing.stderr


def test_upgrade_converts_an_old_index_with_the_same_standing_rows(tmp_path):
    out = tmp_path / "out"
    write_run_file(str(out), "clips", [clip_row("a", "r1", i) for i in range(3)], "r1-a")
    write_run_file(str(out), "videos", [video_row("a", "r1")], "r1-b")
    write_run_file(str(out), "clips", [clip_row("a", "r2", i) for i in range(2)], "r2-a")
    write_run_file(str(out), "videos", [video_row("a", "r2", label="b")], "r2-b")
    sql = ("SELECT video_id, run_id, labels FROM videos UNION ALL "
           "SELECT video_id, run_id, labels FROM clips ORDER BY ALL")  # fmt: skip
    before = connect(str(out)).execute(sql).fetchall()
    done = run_cli("upgrade", str(out))
    assert done.returncode == 0, done.stderr
    assert "upgraded" in done.stdout and "1 videos, 2 clips" in done.stdout
    assert connect(str(out)).execute(sql).fetchall() == before
    # A reader with no code of ours counts the standing rows only.
    assert tables.open_table(str(out), "clips").count_rows() == 2
    again = run_cli("upgrade", str(out))
    assert again.returncode == 0 and "already in lance" in again.stdout
    done = run_cli("upgrade", str(tmp_path / "none"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_a_table_whose_versions_are_lost_is_an_error_never_an_empty_index(tmp_path):
    """A copy or sync that skipped ``_versions/``: every command says which table in one
    line, nothing reads as empty, and compaction deletes nothing."""
    import shutil

    out = str(tmp_path / "out")
    three_videos(out)
    data = sorted((Path(tables.table_uri(out, "clips")) / "data").iterdir())
    shutil.rmtree(Path(tables.table_uri(out, "clips")) / "_versions")
    for command in (["show", out], ["query", out, "SELECT count(*) FROM clips"],
                    ["compact", out], ["search", out, "--label", "a"]):  # fmt: skip
        done = run_cli(*command)
        assert done.returncode in (1, 2), done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "clips table" in lines[0] and "cannot open" in lines[0]
    assert sorted((Path(tables.table_uri(out, "clips")) / "data").iterdir()) == data
