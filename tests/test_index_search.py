"""Search indexes inside the Lance tables (video_index.indexes): `search` by label
through the label index gives exactly what a full scan gives, rows committed after the
index build and after a supersede included."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from beam_pipeline.query_cli import search_command, search_sql
from tests.helpers import clip_row, video_row
from video_index import indexes, query
from video_index import table as tables

CLASSES = ["playing cricket", "golf putting", "massaging person's head", "abseiling", "yoga"]


def _commit_video(out: str, video: str, run: str, rng: random.Random, clips: int = 6) -> None:
    """A run's commits for one video: clips with random top-2 labels (scores 0.2-0.9),
    then its row."""
    rows = []
    for i in range(clips):
        top = rng.sample(CLASSES, 2)
        score = round(rng.uniform(0.2, 0.9), 3)
        rows.append({**clip_row(video, run, i), "labels": top, "scores": [score, 0.01]})
    tables.commit_rows(out, "clips", pa.Table.from_pylist(rows))
    row = video_row(video, run, rows[0]["labels"][0])
    tables.commit_rows(out, "videos", pa.Table.from_pylist([row]))


def _search(capsys, out: str, *args: str) -> list[tuple]:
    argv = [out, *args, "--min-score", "0", "--limit", "100000", "--format", "json"]
    assert search_command(argv, "video-index") == 0
    return [tuple(r.values()) for r in json.loads(capsys.readouterr().out)]


def _scanned(out: str, labels: list[str], kind: str) -> list[tuple]:
    """The same search's SQL over every clip (no prefilter)."""
    con = query.connect(out, min_score=0.0)
    return con.execute(search_sql(labels, kind), {"min_score": 0.0, "limit": 100000}).fetchall()


@pytest.fixture
def index(tmp_path):
    out = str(tmp_path / "out")
    rng = random.Random(7)
    for v in range(30):
        _commit_video(out, f"v{v:02d}", "r1", rng)
    built = indexes.ensure_indexes(out, min_rows=0)
    assert built["clips.labels"] == "LABEL_LIST built"
    # After the build: new videos, a re-run of v03 (its r1 rows deleted by supersede),
    # and a killed run's orphan clips of v04 (no videos row: they do not stand).
    for v in range(30, 36):
        _commit_video(out, f"v{v:02d}", "r2", rng)
    # v03's re-run: one clip of each class, scored 0.95; its r1 clips scored below 0.9.
    rerun = [
        {**clip_row("v03", "r2", i), "labels": [label, "other"], "scores": [0.95, 0.0]}
        for i, label in enumerate(CLASSES)
    ]
    tables.commit_rows(out, "clips", pa.Table.from_pylist(rerun))
    tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("v03", "r2")]))
    tables.supersede(out, "r2", [("v03", "/v03")])
    killed = [
        {**clip_row("v04", "r3", i), "labels": CLASSES, "scores": [1.0] + [0.0] * 4}
        for i in range(3)
    ]
    tables.commit_rows(out, "clips", pa.Table.from_pylist(killed))
    return out


def test_the_label_index_answers_the_search_filter(index):
    clips = tables.open_table(index, "clips")
    plan = clips.scanner(columns=["video_id"], filter=indexes.label_filter(["yoga"])).explain_plan()
    assert "ScalarIndexQuery" in plan and "LabelList" in plan
    stats = clips.stats.index_stats("labels_idx")
    assert stats["num_unindexed_rows"] > 0  # the rows committed after the build


@pytest.mark.parametrize("labels", [["playing cricket"], ["massaging person's head", "yoga"]])
@pytest.mark.parametrize("kind", ["clips", "events"])
def test_search_through_the_index_gives_exactly_the_full_scans_rows(
    capsys, index, labels, kind, video_rows_by
):
    flags = [a for label in labels for a in ("--label", label)]
    found = _search(capsys, index, *flags, *(["--clips"] if kind == "clips" else []))
    assert found == _scanned(index, labels, kind)
    assert {row[0] for row in found} & {f"v{v}" for v in range(30, 36)}  # after the build
    # v03: its re-run's clips of these labels, none of its superseded r1 clips.
    starts = sorted(float(CLASSES.index(label)) for label in labels)
    assert sorted(row[3] for row in found if row[0] == "v03") == starts
    assert all(row[-1] == pytest.approx(0.95) for row in found if row[0] == "v03")
    assert all(row[-1] < 1.0 for row in found)  # the killed run's orphans do not stand


@pytest.fixture(params=["lookup", "pass"])
def video_rows_by(request, monkeypatch):
    """Both ways ``rows_of_videos`` finds a video's rows: index lookups, or a pass."""
    if request.param == "pass":
        monkeypatch.setattr(indexes, "_IN_LOOKUP_MAX", 0)
    return request.param


def test_candidates_are_the_rows_of_the_label_and_of_their_videos(index, video_rows_by):
    narrowed = indexes.label_candidates(tables.snapshot(index), ["abseiling"])
    con = query.connect(index, narrow=lambda tables_at: narrowed)
    keys = "SELECT video_id, clip_index, run_id FROM raw_clips"
    candidates = con.execute(f"{keys} ORDER BY ALL").fetchall()
    full = query.connect(index).execute(f"{keys} WHERE labels[1] = 'abseiling' ORDER BY ALL")
    assert candidates == full.fetchall() and any(run == "r2" for _, _, run in candidates)
    # The videos rows of exactly the candidates' videos (v04's killed-run clips included).
    videos = sorted({video for video, _, _ in candidates})
    rows = query.connect(index).execute(
        "SELECT video_id, run_id FROM raw_videos WHERE list_contains(?, video_id) ORDER BY ALL",
        [videos],
    )
    got = narrowed["videos"].select(["video_id", "run_id"]).to_pylist()
    assert sorted(tuple(row.values()) for row in got) == rows.fetchall()


def test_ensure_indexes_folds_rows_added_since_the_build(index):
    done = indexes.ensure_indexes(index, min_rows=0)
    assert done["clips.labels"] == "LABEL_LIST updated"
    clips = tables.open_table(index, "clips")
    assert clips.stats.index_stats("labels_idx")["num_unindexed_rows"] == 0
    assert indexes.ensure_indexes(index, min_rows=0) == {}


def test_compact_and_a_runs_end_keep_the_indexes(tmp_path, capsys, monkeypatch):
    from beam_pipeline.query_cli import compact_command, refresh_similar_index

    out = str(tmp_path / "out")
    rng = random.Random(1)
    for v in range(3):
        _commit_video(out, f"v{v}", "r1", rng)
    refresh_similar_index(out, "video-index")  # what a run's end calls
    assert capsys.readouterr().out == ""  # 18 clips: below the size worth an index
    monkeypatch.setattr(indexes, "SCALAR_MIN_ROWS", 18)
    refresh_similar_index(out, "video-index")
    assert "clips.labels LABEL_LIST built" in capsys.readouterr().out
    _commit_video(out, "v9", "r2", rng)
    assert compact_command([out], "video-index") == 0
    clips = tables.open_table(out, "clips")
    assert clips.stats.index_stats("labels_idx")["num_unindexed_rows"] == 0
    assert {i.name for i in clips.describe_indices()} == {"labels_idx", "video_id_idx"}


def test_candidates_leave_the_thumbnails_out(tmp_path, capsys):
    out = str(tmp_path / "out")
    rows = [{**clip_row("v", "r1", i), "labels": ["yoga"], "scores": [0.8], "thumbnail": b"jpeg"}
            for i in range(3)]  # fmt: skip
    tables.commit_rows(out, "clips", pa.Table.from_pylist(rows))
    tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("v", "r1")]))
    indexes.ensure_indexes(out, min_rows=0)
    narrowed = indexes.label_candidates(tables.snapshot(out), ["yoga"])
    assert narrowed["clips"].num_rows == 3 and "thumbnail" not in narrowed["clips"].column_names
    assert _search(capsys, out, "--label", "yoga", "--clips") == _scanned(out, ["yoga"], "clips")
