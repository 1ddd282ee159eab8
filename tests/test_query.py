"""The DuckDB query layer: views over the standing rows, segments, and `video-index query`."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import clip_row, failure_row, run_cli, video_row
from transforms.sink import commit
from video_index.index import current_rows
from video_index.query import connect
from video_index.schemas import clips_schema
from video_index.segments import ClipTop, Event, merge_events


def rows_of(con, sql: str) -> list[dict]:
    result = con.execute(sql)
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row)) for row in result.fetchall()]


def key_set(rows, *columns) -> set:
    return {tuple(json.dumps(r[c]) for c in columns) for r in rows}


VIDEO_COLUMNS = ("video_id", "uri", "run_id", "labels", "num_clips")
CLIP_COLUMNS = ("video_id", "uri", "clip_index", "run_id", "labels", "scores")


def assert_views_match_reference(out: str) -> None:
    reference = current_rows(out)
    con = connect(out)
    for table, columns in (
        ("videos", VIDEO_COLUMNS),
        ("failures", ("video_id", "uri", "run_id", "stage")),
        ("clips", CLIP_COLUMNS),
    ):
        sql_rows = rows_of(con, f"SELECT * FROM {table}")
        assert len(sql_rows) == reference[table].num_rows, table
        assert key_set(sql_rows, *columns) == key_set(reference[table].to_pylist(), *columns)


# --- the standing rule in SQL agrees with the Python reference ---------------------------

# A run writes, per video it touches: a video row, a failure row, or nothing (killed
# before the row), and some of the video's clips; a retried bundle repeats a file.
run_action = st.tuples(
    st.sampled_from(["video", "failure", "killed"]),
    st.integers(0, 4),  # clips committed
    st.booleans(),  # a repeated commit
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(
        st.dictionaries(st.sampled_from(["a", "b", "c"]), run_action, max_size=3),
        min_size=1,
        max_size=4,
    )
)
def test_views_agree_with_the_python_rule(tmp_path, history):
    out = str(tmp_path / uuid.uuid4().hex)
    for run_number, actions in enumerate(history):
        run = f"r{run_number}"
        for video, (kind, num_clips, repeated) in actions.items():
            clips = [clip_row(video, run, i) for i in range(num_clips)]
            commits = 2 if repeated else 1
            for n in range(commits):
                stem = f"{run}-{video}-{n}"
                if clips:
                    commit(out, "clips", clips)
                if kind == "video":
                    commit(out, "videos", [video_row(video, run, label=run)])
                elif kind == "failure":
                    commit(out, "failures", [failure_row(video, run)])
    if not os.path.exists(out):  # every run was killed before committing anything
        with pytest.raises(FileNotFoundError):
            connect(out)
        return
    assert_views_match_reference(out)
    shutil.rmtree(out)


def test_views_exist_when_tables_are_missing_or_empty(tmp_path):
    out = tmp_path / "out"
    (out / "failures").mkdir(parents=True)  # an empty table folder, and no clips/ at all
    commit(str(out), "videos", [video_row("x", "r1")])
    con = connect(str(out))
    assert rows_of(con, "SELECT video_id FROM videos") == [{"video_id": "x"}]
    for view in ("clips", "failures", "segments", "raw_clips"):
        assert con.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
    columns = [d[0] for d in con.execute("SELECT * FROM clips").description]
    assert columns[:4] == ["video_id", "uri", "clip_index", "start_s"]
    with pytest.raises(FileNotFoundError):
        connect(str(tmp_path / "nothing"))


def test_standing_rows_after_a_change_and_a_killed_run(tmp_path):
    out = str(tmp_path)
    commit(out, "clips", [clip_row("x", "r1", i) for i in range(2)])
    commit(out, "videos", [video_row("x", "r1")])
    commit(out, "clips", [clip_row("x", "r2", i) for i in range(3)])  # killed
    commit(out, "clips", [clip_row("x", "r3", i) for i in range(4)])  # changed
    commit(out, "videos", [video_row("x", "r3")])
    con = connect(out)
    assert rows_of(con, "SELECT run_id, count(*) AS n FROM clips GROUP BY 1") == [
        {"run_id": "r3", "n": 4}
    ]
    assert con.execute("SELECT count(*) FROM raw_clips").fetchone() == (9,)
    assert rows_of(con, "SELECT video_id, run_id FROM videos") == [
        {"video_id": "x", "run_id": "r3"}
    ]


def test_a_run_without_embeddings_between_two_with(tmp_path):
    """The first and last clips files agree on their columns, one between lacks one:
    `query` matches columns by name rather than fail or drop the rows."""
    out = str(tmp_path)
    with_embedding = clips_schema(embedding_dim=2)
    for run, schema in (("r1", with_embedding), ("r2", None), ("r3", with_embedding)):
        rows = [clip_row(run, run, i) for i in range(2)]
        if schema is not None:
            rows = [{**r, "embedding": [0.5, 0.5]} for r in rows]
        commit(out, "clips", rows, schema=schema)
        commit(out, "videos", [video_row(run, run)])
    sql = "SELECT video_id, count(embedding) AS embedded, count(*) AS n FROM clips GROUP BY 1"
    done = run_cli("query", out, sql + " ORDER BY 1", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"video_id": "r1", "embedded": 2, "n": 2},
        {"video_id": "r2", "embedded": 0, "n": 2},
        {"video_id": "r3", "embedded": 2, "n": 2},
    ]


# --- segments ------------------------------------------------------------------------------


def top(i: int, label: str, score: float, length: float = 1.0) -> ClipTop:
    return ClipTop(i, float(i), i + length, label, score)


def test_merge_events_joins_neighbours_and_bridges_one_clip():
    clips = [
        top(0, "a", 0.9),
        top(1, "a", 0.8),
        top(2, "b", 0.9),  # bridged for a; an event of its own
        top(3, "a", 0.6),
        top(4, "a", 0.2),  # below the threshold
        top(5, "b", 0.1),
        top(6, "a", 0.7),  # two clips after the last member: a new event
    ]
    assert merge_events(clips, min_score=0.5, max_gap_clips=1) == [
        Event("a", 0.0, 4.0, 3, pytest.approx(0.9), pytest.approx(2.3 / 3)),
        Event("b", 2.0, 3.0, 1, 0.9, 0.9),
        Event("a", 6.0, 7.0, 1, 0.7, 0.7),
    ]
    no_gap = merge_events(clips, min_score=0.5, max_gap_clips=0)
    assert [(e.label, e.start_s, e.end_s) for e in no_gap] == [
        ("a", 0.0, 2.0), ("b", 2.0, 3.0), ("a", 3.0, 4.0), ("a", 6.0, 7.0),
    ]  # fmt: skip
    assert merge_events(clips, min_score=0.95) == []


def test_merge_events_overlapping_clips_and_order():
    # Stride 1 s, clip 2.56 s: overlapping clips, given in any order.
    clips = [ClipTop(i, float(i), i + 2.56, "x", 0.9) for i in (3, 0, 2, 1)]
    assert merge_events(clips) == [Event("x", 0.0, 3 + 2.56, 4, 0.9, pytest.approx(0.9))]
    with pytest.raises(ValueError):
        merge_events(clips, min_score=1.5)
    with pytest.raises(ValueError):
        merge_events(clips, max_gap_clips=-1)


clip_tops = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.floats(0, 1, width=32),
        st.floats(0.5, 3.0),
    ),
    max_size=14,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    videos=st.lists(clip_tops, min_size=1, max_size=3),
    min_score=st.sampled_from([0.0, 0.3, 0.5, 0.8]),
    max_gap=st.integers(0, 3),
    dropped=st.sets(st.integers(0, 13), max_size=3),
)
def test_segments_view_agrees_with_merge_events(tmp_path, videos, min_score, max_gap, dropped):
    out = str(tmp_path / uuid.uuid4().hex)
    expected = {}
    rows = []
    for v, tops in enumerate(videos):
        clips = []
        for i, (label, score, length) in enumerate(tops):
            if i in dropped:  # clip indexes need not be contiguous
                continue
            clips.append(ClipTop(i, i * 1.5, i * 1.5 + length, label, score))
            rows.append(
                {**clip_row(f"v{v}", "r1", i), "start_s": i * 1.5, "end_s": i * 1.5 + length,
                 "labels": [label], "scores": [score]}  # fmt: skip
            )
        expected[f"v{v}"] = merge_events(clips, min_score, max_gap)
        commit(out, "videos", [video_row(f"v{v}", "r1")])
    if rows:
        commit(out, "clips", rows)
    con = connect(out, min_score=min_score, max_gap_clips=max_gap)
    got = {}
    for r in rows_of(con, "SELECT * FROM segments"):
        got.setdefault(r["video_id"], []).append(
            Event(r["label"], r["start_s"], r["end_s"], r["num_clips"], r["max_score"],
                  r["mean_score"])  # fmt: skip
        )
    for video, events in expected.items():
        found = sorted(got.get(video, []), key=lambda e: (e.start_s, e.label, e.end_s))
        assert [e[:5] for e in found] == [e[:5] for e in events]
        assert [e.mean_score for e in found] == pytest.approx([e.mean_score for e in events])
    shutil.rmtree(out)


def test_segment_thresholds_are_variables_of_the_connection(tmp_path):
    out = str(tmp_path)
    scores = [0.9, 0.4, 0.9]
    commit(out, "clips", [{**clip_row("x", "r1", i), "scores": [s]}
                              for i, s in enumerate(scores)])  # fmt: skip
    commit(out, "videos", [video_row("x", "r1")])
    con = connect(out)
    assert con.execute("SELECT count(*), max(num_clips) FROM segments").fetchone() == (1, 2)
    con.execute("SET VARIABLE segment_max_gap = 0")
    assert con.execute("SELECT count(*) FROM segments").fetchone() == (2,)
    con.execute("SET VARIABLE segment_min_score = 0.3")
    assert con.execute("SELECT count(*), max(num_clips) FROM segments").fetchone() == (1, 3)


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def small_index(tmp_path):
    out = tmp_path / "out"
    commit(str(out), "clips", [clip_row("x", "r1", i) for i in range(3)])
    commit(str(out), "videos", [video_row("x", "r1"), video_row("y", "r1")])
    commit(str(out), "videos", [video_row("y", "r2", label="b")])
    return out


def test_query_formats(small_index, tmp_path):
    sql = "SELECT video_id, labels[1] AS top1, run_id FROM videos ORDER BY video_id"
    table = run_cli("query", str(small_index), sql)
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[0].split() == ["video_id", "top1", "run_id"]
    assert table.stdout.split("\n")[2].split() == ["y", "b", "r2"]
    as_json = json.loads(run_cli("query", str(small_index), sql, "--format", "json").stdout)
    assert as_json == [
        {"video_id": "x", "top1": "a", "run_id": "r1"},
        {"video_id": "y", "top1": "b", "run_id": "r2"},
    ]
    as_csv = run_cli("query", str(small_index), sql, "--format", "csv").stdout
    assert as_csv == "video_id,top1,run_id\nx,a,r1\ny,b,r2\n"
    empty = run_cli("query", str(small_index), "SELECT * FROM failures", "--format", "json")
    assert json.loads(empty.stdout) == []


def test_query_output_files(small_index, tmp_path):
    dest = tmp_path / "clips.parquet"
    done = run_cli("query", str(small_index), "SELECT * FROM clips", "--output", str(dest))
    assert done.returncode == 0, done.stderr
    assert pq.read_table(dest).num_rows == 3
    dest = tmp_path / "segments.csv"
    done = run_cli("query", str(small_index), "SELECT * FROM segments", "--output", str(dest))
    assert done.returncode == 0, done.stderr
    assert dest.read_text().splitlines()[1].startswith("x,/x,a,0.0,3.0,3,")


@pytest.mark.parametrize(
    "args, message",
    [
        (["SELECT * FROM nope"], "Table with name nope does not exist"),
        (["SELEC 1"], "syntax error"),
        (["SELECT 1", "--output", "x.txt"], "--output must end in .parquet or .csv"),
        (["SELECT 1", "--format", "xml"], "invalid choice: 'xml'"),
        (["SELECT 1", "--segment-min-score", "2"], "min score must be in [0, 1]"),
    ],
)
def test_query_errors_are_one_line(small_index, args, message):
    done = run_cli("query", str(small_index), *args)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], done.stderr


def test_query_without_an_index(tmp_path):
    done = run_cli("query", str(tmp_path / "nothing"), "SELECT 1")
    assert done.returncode == 2 and "no index at" in done.stderr


# --- buckets -----------------------------------------------------------------------------------


def test_views_over_a_bucket(s3_server, tmp_path):
    store = s3_server  # gs:// indexes: on real GCS only (tests/test_storage.py index_store)
    out = store.uri(f"query-{uuid.uuid4().hex[:8]}")
    commit(out, "clips", [clip_row("x", "r1", i) for i in range(3)])
    commit(out, "clips", [clip_row("x", "r0", i) for i in range(5)])  # orphans
    commit(out, "videos", [video_row("x", "r1")])
    assert_views_match_reference(out)
    con = connect(out)
    assert con.execute("SELECT count(*) FROM clips").fetchone() == (3,)
    assert con.execute("SELECT num_clips FROM segments").fetchone() == (3,)
    done = run_cli("query", out, "SELECT count(*) AS n FROM clips", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"n": 3}]
