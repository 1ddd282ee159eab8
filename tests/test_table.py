"""The Lance tables (video_index.table): idempotent commits, writers at once, damage, upgrade."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import clip_row, failure_row, video_row
from tests.helpers import write_run_file as write_rows
from video_index import table as tables
from video_index.index import current_rows
from video_index.schemas import clips_schema
from video_index.upgrade import upgrade


def _clips(video: str, run: str, count: int) -> pa.Table:
    return pa.Table.from_pylist([clip_row(video, run, i) for i in range(count)])


def _keys(rows: pa.Table, *columns: str) -> list[tuple]:
    return sorted(zip(*(rows.column(c).to_pylist() for c in columns)))


def test_a_bundle_committed_twice_is_in_the_table_once(tmp_path):
    out = str(tmp_path / "out")
    bundle = _clips("a", "r1", 3)
    tables.commit_rows(out, "clips", bundle)
    tables.commit_rows(out, "clips", bundle)  # the runner retried the bundle
    tables.commit_rows(out, "clips", _clips("a", "r2", 2))  # a later run's rows are new
    dataset = tables.open_table(out, "clips")
    assert dataset.count_rows() == 5
    assert dataset.version == 3  # the retry was a commit that inserted nothing
    # Engines with no code of ours read the table as it stands.
    assert duckdb.sql("SELECT count(*) FROM dataset").fetchall() == [(5,)]
    polars = pytest.importorskip("polars")
    assert polars.scan_pyarrow_dataset(dataset).select(polars.len()).collect().item() == 5


def _commit_many(out: str, writer: int, commits: int) -> None:
    for n in range(commits):
        tables.commit_rows(out, "clips", _clips(f"w{writer}-{n}", "r1", 4))


def test_writers_committing_at_once_lose_nothing_and_double_nothing(tmp_path):
    out = str(tmp_path / "out")
    tables.commit_rows(out, "clips", _clips("seed", "r0", 1))
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_commit_many, args=(out, w, 3)) for w in range(3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(120)
        assert process.exitcode == 0
    rows = tables.open_table(out, "clips").to_table(columns=["video_id", "clip_index"])
    keys = _keys(rows, "video_id", "clip_index")
    assert len(keys) == 1 + 3 * 3 * 4 == len(set(keys))


def test_lost_versions_are_an_error_never_an_empty_index(tmp_path):
    out = str(tmp_path / "out")
    tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("a", "r1")]))
    assert tables.open_table(out, "failures") is None  # never written: no table
    versions = Path(tables.table_uri(out, "videos")) / "_versions"
    shutil.rmtree(versions)  # a copy that skipped "_"-prefixed paths
    with pytest.raises(tables.TableDamaged, match="videos table at .*videos.lance"):
        tables.open_table(out, "videos")


def test_a_stray_file_in_a_table_is_not_read(tmp_path):
    out = str(tmp_path / "out")
    tables.commit_rows(out, "clips", _clips("a", "r1", 2))
    data = Path(tables.table_uri(out, "clips")) / "data"
    pq.write_table(pa.table({"x": [1, 2, 3]}), data / "stray.parquet")
    (data / "notes.txt").write_text("not a table file")
    assert tables.open_table(out, "clips").count_rows() == 2


def _old_layout(out: str) -> None:
    """Today's layout after a re-run of a changed video, a killed run and a retried bundle."""
    embedded = [dict(clip_row("a", "r1", i), embedding=np.full(4, i, np.float16)) for i in range(3)]
    write_rows(out, "clips", embedded, "r1-w-0", clips_schema(4))
    write_rows(out, "videos", [video_row("a", "r1"), video_row("b", "r1")], "r1-w-1")
    write_rows(out, "clips", [clip_row("b", "r1", 0)], "r1-w-2")
    write_rows(out, "clips", [clip_row("b", "r1", 0)], "r1-w-3")  # a retried bundle
    write_rows(out, "failures", [failure_row("c", "r1")], "r1-w-4")
    # r2 re-indexes the changed "a" (2 clips now) and "c", which decodes this time.
    write_rows(out, "clips", [clip_row("a", "r2", i) for i in range(2)], "r2-w-0")
    write_rows(out, "videos", [video_row("a", "r2", "b"), video_row("c", "r2")], "r2-w-1")
    # r3 is killed after committing clips of "b" and no video row: orphans.
    write_rows(out, "clips", [clip_row("b", "r3", i) for i in range(4)], "r3-w-0")


COLUMNS = {
    "videos": ("video_id", "uri", "run_id", "labels"),
    "clips": ("video_id", "uri", "clip_index", "run_id"),
    "failures": ("video_id", "uri", "run_id", "stage"),
}


def _views(out: str) -> dict:
    from video_index.query import connect

    con = connect(out)
    return {
        name: con.sql(f"SELECT {', '.join(columns)} FROM {name} ORDER BY ALL").fetchall()
        for name, columns in COLUMNS.items()
    }


def test_upgrade_keeps_exactly_the_standing_rows(tmp_path):
    out = str(tmp_path / "out")
    _old_layout(out)
    standing = current_rows(out)  # the Python reference of the old rule
    assert standing["clips"].num_rows == 3 and standing["failures"].num_rows == 0

    before = _views(out)
    written = upgrade(out)

    # The old layout here has no shots or cues: their tables are made, empty.
    assert written == {t: standing[t].num_rows if t in standing else 0 for t in tables.SPECS}
    con = duckdb.connect()
    for name, columns in COLUMNS.items():
        dataset = tables.open_table(out, name)
        upgraded = dataset.to_table()
        assert upgraded.schema.names[: len(tables.SPECS[name].schema)] == (
            tables.SPECS[name].schema.names
        )
        assert _keys(upgraded, *columns) == _keys(standing[name], *columns), name
        # DuckDB counts the standing rows with no rule of ours (over the columns it can
        # bind: it cannot take the float16 embedding, see the test below).
        con.register(name, dataset.scanner(columns=list(COLUMNS[name])))
        assert con.sql(f"SELECT count(*) FROM {name}").fetchall() == [(written[name],)]
    # The query layer reads the tables (its standing views over one snapshot) and finds
    # the rows it found in the Parquet files before, with those files gone.
    for name in COLUMNS:
        shutil.rmtree(Path(out) / name)
    assert _views(out) == before
    # The optional columns keep their types: float16 embeddings stay fixed-size float16.
    embedding = tables.open_table(out, "clips").schema.field("embedding").type
    assert embedding == pa.list_(pa.float16(), 4)
    with pytest.raises(FileExistsError, match="already upgraded"):
        upgrade(out)


def test_format_version_names_the_format():
    assert tables.format_version().startswith("lance ")


def _run(out: str, run: str, video: str, clips: int, kind: str = "video") -> None:
    """What a run's writer commits for one video: clips, then the row, then supersede."""
    if clips:
        tables.commit_rows(out, "clips", _clips(video, run, clips))
    if kind == "killed":
        return
    row = video_row(video, run) if kind == "video" else failure_row(video, run)
    tables.commit_rows(
        out, "videos" if kind == "video" else "failures", pa.Table.from_pylist([row])
    )
    tables.supersede(out, run, [(row["video_id"], row["uri"])])


def _counts_by_engines(out: str) -> dict[str, tuple[int, int, int]]:
    polars = pytest.importorskip("polars")
    datasets = [tables.open_table(out, t) for t in ("videos", "clips", "failures")]
    con = duckdb.connect()
    by_duckdb, by_polars = [], []
    for dataset in datasets:
        if dataset is None:
            by_duckdb.append(0)
            by_polars.append(0)
            continue
        by_duckdb.append(con.sql("SELECT count(*) FROM dataset").fetchall()[0][0])
        by_polars.append(polars.scan_pyarrow_dataset(dataset).select(polars.len()).collect().item())
    return {"duckdb": tuple(by_duckdb), "polars": tuple(by_polars)}


def test_plain_readers_count_the_standing_rows_after_a_rerun_and_a_killed_run(tmp_path):
    out = str(tmp_path / "out")
    _run(out, "r1", "a", 3)
    _run(out, "r1", "b", 2)
    _run(out, "r1", "c", 0, kind="failure")
    after_r1 = tables.open_table(out, "videos").version
    _run(out, "r2", "a", 2)  # "a" changed: 2 clips now, its 3 old clips and row go
    _run(out, "r2", "c", 4)  # "c" decodes this time: its failure row goes
    _run(out, "r3", "b", 5, kind="killed")  # killed after 5 clips of "b", no row
    assert tables.remove_orphans(out, running=frozenset({"r3"})) == 0  # still running
    assert tables.remove_orphans(out) == 5

    standing = {"videos": 3, "clips": 2 + 2 + 4, "failures": 0}
    expected = (standing["videos"], standing["clips"], standing["failures"])
    assert _counts_by_engines(out) == {"duckdb": expected, "polars": expected}
    videos = tables.open_table(out, "videos").to_table()
    assert _keys(videos, "video_id", "run_id") == [("a", "r2"), ("b", "r1"), ("c", "r2")]
    clips = tables.open_table(out, "clips").to_table()
    assert {(v, r) for v, r in _keys(clips, "video_id", "run_id")} == {
        ("a", "r2"),
        ("b", "r1"),
        ("c", "r2"),
    }
    # The index as it stood before the re-run is one version back, by time travel.
    first = tables.open_table(out, "videos", version=after_r1)
    assert _keys(first.to_table(), "video_id", "run_id") == [("a", "r1"), ("b", "r1")]


@pytest.mark.parametrize("order", ["older first", "newer first"])
def test_two_runs_on_one_video_end_with_the_later_runs_rows(tmp_path, order):
    out = str(tmp_path / "out")
    runs = [("r1", 3), ("r2", 2)]
    if order == "newer first":
        runs.reverse()
    for run, clips in runs:  # each run's commits, in either order
        _run(out, run, "a", clips)
    tables.remove_orphans(out)
    videos = tables.open_table(out, "videos").to_table()
    clips = tables.open_table(out, "clips").to_table()
    assert _keys(videos, "video_id", "run_id") == [("a", "r2")]
    assert _keys(clips, "clip_index", "run_id") == [(0, "r2"), (1, "r2")]


def _many_commits(out: str, count: int) -> None:
    for n in range(count):
        tables.commit_rows(out, "clips", _clips(f"v{n}", "r1", 5))


def test_a_reader_keeps_its_snapshot_while_a_compaction_commits(tmp_path):
    out = str(tmp_path / "out")
    _many_commits(out, 8)
    con = tables.connect(tables.snapshot(out))
    assert con.sql("SELECT count(*) FROM clips").fetchall() == [(40,)]
    assert len(tables.open_table(out, "clips").get_fragments()) == 8
    tables.commit_rows(out, "clips", _clips("late", "r2", 2))  # a run commits meanwhile
    assert tables.compact(out) == {"clips": 1}
    # The reader still reads its version (inside the retention window): same rows.
    assert con.sql("SELECT count(*), count(DISTINCT video_id) FROM clips").fetchall() == [(40, 8)]
    assert con.sql("SELECT count(*) FROM videos").fetchall() == [(0,)]  # no table: empty
    assert tables.open_table(out, "clips").count_rows() == 42
    # Past the window the old versions' files go, and with them time travel.
    tables.compact(out, retention_s=0)
    assert [v["version"] for v in tables.open_table(out, "clips").versions()][-1] > 1
    with pytest.raises(Exception):  # noqa: B017 - Lance's own error for a removed version
        tables.open_table(out, "clips", version=1).count_rows()


_COMPACT = """
import sys
from video_index import table
table.compact(sys.argv[1], retention_s=0)
"""


def test_a_compaction_killed_at_any_moment_loses_and_doubles_nothing(tmp_path):
    import subprocess
    import sys
    import time

    out = str(tmp_path / "out")
    for moment in range(10):
        _many_commits(out, 4)  # new small files each round (the keys repeat: no new rows)
        tables.commit_rows(out, "clips", _clips(f"round{moment}", "r1", 3))
        child = subprocess.Popen([sys.executable, "-c", _COMPACT, out])
        time.sleep(0.05 * moment)  # from before it starts to after it ends
        child.kill()
        child.wait()
        rows = tables.open_table(out, "clips").to_table(columns=["video_id", "clip_index"])
        keys = _keys(rows, "video_id", "clip_index")
        assert len(keys) == len(set(keys)) == 4 * 5 + 3 * (moment + 1), moment


def test_duckdb_reads_a_table_holding_float16_embeddings(tmp_path):
    import numpy as np

    out = str(tmp_path / "out")
    rows = _clips("a", "r1", 3)
    vectors = np.arange(12, dtype=np.float16)
    rows = rows.append_column("embedding", pa.FixedSizeListArray.from_arrays(pa.array(vectors), 4))
    tables.commit_rows(out, "clips", rows)
    with pytest.raises(duckdb.Error, match="Unsupported"):  # DuckDB's own limit
        duckdb.connect().register("whole", tables.open_table(out, "clips"))
    con = tables.connect(tables.snapshot(out))
    assert con.sql("SELECT count(*) FROM clips").fetchall() == [(3,)]


def _shots(video: str, run: str, count: int) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {"video_id": video, "uri": f"/{video}", "shot_index": i, "run_id": run}
            for i in range(count)
        ]
    )


def test_settle_applies_the_standing_rule_to_every_table_at_a_runs_end(tmp_path):
    out = str(tmp_path / "out")
    for run, clips, shots in (("r1", 3, 2), ("r3", 2, 1)):  # r3 re-indexes "a"
        tables.commit_rows(out, "clips", _clips("a", run, clips))
        tables.commit_rows(out, "shots", _shots("a", run, shots))
        tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("a", run)]))
    for run in ("r2", "r4"):  # killed after their clips and shots of "b" (r4 may run on)
        tables.commit_rows(out, "clips", _clips("b", run, 4))
        tables.commit_rows(out, "shots", _shots("b", run, 1))

    assert tables.settle(out, "r3", ended=frozenset({"r1", "r2"})) == 4 + 1

    con = duckdb.connect()
    counts = {}
    for name in ("videos", "clips", "shots"):
        dataset = tables.open_table(out, name)
        by_run = "SELECT run_id, count(*) FROM dataset GROUP BY 1 ORDER BY 1"
        counts[name] = con.sql(by_run).fetchall()
    assert counts == {
        "videos": [("r3", 1)],
        "clips": [("r3", 2), ("r4", 4)],
        "shots": [("r3", 1), ("r4", 1)],
    }


def test_a_run_with_an_optional_column_the_table_lacks_adds_it(tmp_path):
    # A run with thumbnails after one without: the older rows read the column as null.
    out = str(tmp_path / "out")
    tables.commit_rows(out, "clips", _clips("a", "r1", 2))
    with_thumbnails = pa.Table.from_pylist(
        [{**clip_row("b", "r2", 0), "thumbnail": b"jpeg"}],
        schema=clips_schema(thumbnails=True),
    )
    tables.commit_rows(out, "clips", with_thumbnails)
    rows = tables.open_table(out, "clips").to_table()
    assert _keys(rows, "video_id", "thumbnail") == [("a", None), ("a", None), ("b", b"jpeg")]


def test_the_compact_command_compacts_an_index_in_lance_tables(tmp_path):
    from tests.helpers import run_cli

    out = str(tmp_path / "out")
    for run in ("r1", "r2", "r3"):  # three commits: three data files of clips
        tables.commit_rows(out, "clips", _clips(run, run, 2))
        tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row(run, run)]))
    assert len(tables.open_table(out, "clips").get_fragments()) == 3
    done = run_cli("compact", out)
    assert done.returncode == 0, done.stderr
    assert "clips 1" in done.stdout
    assert tables.open_table(out, "clips").count_rows() == 6


# A run's writer as the sink commits: per video its clips, then its row; then settle.
_RUN = """
import sys
from tests.helpers import clip_row, video_row
from transforms.sink import commit
from video_index import table
out, run = sys.argv[1], sys.argv[2]
done = set(sys.argv[3].split(",")) if sys.argv[3] else set()
for i in range(8):
    video = f"v{i}"
    if video in done:
        continue
    commit(out, "clips", [clip_row(video, run, j) for j in range(3)])
    commit(out, "videos", [{**video_row(video, run), "num_clips": 3}])
table.settle(out, run)
"""


def test_a_run_killed_at_any_moment_then_resumed_counts_every_row_once(tmp_path):
    """Killed at ten moments (one more commit each time), then resumed as a run does:
    it redoes the videos with no row and settles. A plain reader then counts exactly
    the standing rows."""
    import subprocess
    import sys
    import time

    from tests.helpers import REPO

    for moment in range(10):
        out = str(tmp_path / f"out{moment}")
        tables.commit_rows(out, "clips", _clips("v0", "r0", 5))  # an older run's rows
        tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("v0", "r0")]))
        child = subprocess.Popen([sys.executable, "-c", _RUN, out, "r1", ""], cwd=REPO)
        # Wait for this moment's commit (each adds a version to one table), then kill.
        while child.poll() is None:
            versions = sum(
                t.version for t in tables.snapshot(out).values() if t is not None
            )
            if versions >= 2 + moment * 2:
                break
            time.sleep(0.01)
        child.kill()
        child.wait()
        done = tables.open_table(out, "videos").to_table(filter="run_id = 'r1'")
        indexed = ",".join(done.column("video_id").to_pylist())
        resumed = subprocess.run(
            [sys.executable, "-c", _RUN, out, "r2", indexed], cwd=REPO, timeout=300
        )
        assert resumed.returncode == 0
        videos = tables.open_table(out, "videos").to_table()
        clips = tables.open_table(out, "clips").to_table(columns=["video_id", "run_id"])
        assert sorted(videos.column("video_id").to_pylist()) == [f"v{i}" for i in range(8)]
        assert clips.num_rows == 8 * 3, moment
        runs = dict(zip(videos.column("video_id").to_pylist(), videos.column("run_id").to_pylist()))
        assert all(runs[v] == r for v, r in zip(*(c.to_pylist() for c in clips.columns))), moment
