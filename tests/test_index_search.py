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


def _search(
    capsys, out: str, *args: str, min_score: float = 0.0, limit: int = 100000
) -> list[tuple]:
    argv = [out, *args, "--min-score", str(min_score), "--limit", str(limit), "--format", "json"]
    assert search_command(argv, "video-index") == 0
    return [tuple(r.values()) for r in json.loads(capsys.readouterr().out)]


def _scanned(
    out: str, labels: list[str], kind: str, min_score: float = 0.0, limit: int = 100000
) -> list[tuple]:
    """The same search's SQL over every clip (no prefilter)."""
    con = query.connect(out, min_score=min_score)
    params = {"min_score": min_score, "limit": limit}
    return con.execute(search_sql(labels, kind), params).fetchall()


@pytest.fixture
def index(tmp_path):
    out = str(tmp_path / "out")
    rng = random.Random(7)
    for v in range(30):
        _commit_video(out, f"v{v:02d}", "r1", rng)
    built = indexes.ensure_indexes(out, min_rows=0)
    assert built["clips.top_label"] == "BITMAP built"
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
    assert "ScalarIndexQuery" in plan and "top_label_idx(Bitmap)" in plan
    stats = clips.stats.index_stats("top_label_idx")
    assert stats["num_unindexed_rows"] > 0  # the rows committed after the build


@pytest.mark.parametrize("labels", [["playing cricket"], ["massaging person's head", "yoga"]])
@pytest.mark.parametrize("kind", ["clips", "events"])
def test_search_through_the_index_gives_exactly_the_full_scans_rows(
    capsys, index, labels, kind, video_rows_by
):
    flags = [a for label in labels for a in ("--label", label)]
    found = _search(capsys, index, *flags, *(["--clips"] if kind == "clips" else []))
    assert found == _scanned(index, labels, kind)
    # A threshold is pushed into the table's scan too; 0.7 is no float32 value, the
    # stored scores are: the rows at the threshold's edge stay the SQL's to decide.
    for min_score in (0.5, 0.7, 0.95):
        kept = _search(capsys, index, *flags, *(["--clips"] if kind == "clips" else []),
                       min_score=min_score)  # fmt: skip
        assert kept == _scanned(index, labels, kind, min_score)
        assert len(kept) < len(found) or min_score == 0.5
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
    assert done["clips.top_label"] == "BITMAP updated"
    clips = tables.open_table(index, "clips")
    assert clips.stats.index_stats("top_label_idx")["num_unindexed_rows"] == 0
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
    assert "clips.top_label BITMAP built" in capsys.readouterr().out
    _commit_video(out, "v9", "r2", rng)
    assert compact_command([out], "video-index") == 0
    clips = tables.open_table(out, "clips")
    assert clips.stats.index_stats("top_label_idx")["num_unindexed_rows"] == 0
    assert {i.name for i in clips.describe_indices()} == {"top_label_idx", "video_id_idx"}


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


def test_first_elements_of_lists_empty_and_null_ones_included():
    strings = pa.list_(pa.string())
    lists = pa.chunked_array([pa.array([["a", "b"], []], strings), pa.array([None, ["c"]], strings)])
    assert tables.first_elements(lists).to_pylist() == ["a", None, None, "c"]
    scores = pa.array([[0.5, 0.1], None, []], pa.list_(pa.float32()))
    assert tables.first_elements(scores).type == pa.float32()
    assert tables.first_elements(scores).to_pylist() == [0.5, None, None]


def test_committed_clips_carry_their_top1(tmp_path):
    out = str(tmp_path / "out")
    rows = [
        {**clip_row("v0", "r1", 0), "labels": ["yoga", "abseiling"], "scores": [0.75, 0.25]},
        {**clip_row("v0", "r1", 1), "labels": [], "scores": []},
    ]
    tables.commit_rows(out, "clips", pa.Table.from_pylist(rows))
    got = tables.open_table(out, "clips").to_table(columns=["clip_index", "top_label", "top_score"])
    assert got.sort_by("clip_index").to_pylist() == [
        {"clip_index": 0, "top_label": "yoga", "top_score": 0.75},
        {"clip_index": 1, "top_label": None, "top_score": None},
    ]


def test_an_index_written_before_the_top1_columns_is_searched_then_upgraded(capsys, index):
    """A clips table of the version before (top-k lists, a LABEL_LIST index, no
    ``label``/``score``): search reads it through the lists; ``upgrade`` adds the columns
    from every row's lists, and the next index update trades the old index for BITMAP."""
    import lance

    from beam_pipeline.query_cli import upgrade_command

    clips = tables.open_table(index, "clips")
    before = clips.to_table().drop_columns(["top_label", "top_score"])
    lance.write_dataset(before, tables.table_uri(index, "clips"), mode="overwrite")
    old = tables.open_table(index, "clips")
    old.create_scalar_index("labels", "LABEL_LIST", name="labels_idx")
    expected = {label: _scanned(index, [label], "events") for label in CLASSES}
    for label in CLASSES:
        assert _search(capsys, index, "--label", label) == expected[label]

    assert upgrade_command([index], "video-index") == 0
    assert "added clips.top_label, clips.top_score" in capsys.readouterr().out
    upgraded = tables.open_table(index, "clips").to_table()
    assert upgraded.column("top_label").to_pylist() == [
        labels[0] if labels else None for labels in upgraded.column("labels").to_pylist()
    ]
    done = indexes.ensure_indexes(index, min_rows=0)
    assert done["clips.labels"].startswith("index dropped")
    assert done["clips.top_label"] == "BITMAP built"
    for label in CLASSES:
        assert _search(capsys, index, "--label", label) == expected[label]
    assert upgrade_command([index], "video-index") == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_run_adds_the_top1_columns_to_an_older_table(index):
    import lance

    clips = tables.open_table(index, "clips").to_table().drop_columns(["top_label", "top_score"])
    lance.write_dataset(clips, tables.table_uri(index, "clips"), mode="overwrite")
    tables.ensure_tables(index)  # what a run's launcher calls
    after = tables.open_table(index, "clips").to_table()
    assert after.column("top_label").null_count == 0
    for top, lists in (("top_label", "labels"), ("top_score", "scores")):
        assert after.column(top).to_pylist() == [x[0] for x in after.column(lists).to_pylist()]


@pytest.mark.parametrize("kind", ["clips", "events"])
def test_a_short_list_reads_only_the_videos_that_can_reach_it(capsys, index, kind):
    """--limit N: the best N moments are the full scan's, read from the videos whose
    best clip can still reach them. v04's killed-run clips score 1.0 for every class
    and do not stand: they raise v04's bound, never its moments."""
    for labels in (["playing cricket"], ["yoga", "abseiling"], CLASSES):
        flags = [a for label in labels for a in ("--label", label)]
        for limit in (1, 2, 3, 5, 8, 13):
            for min_score in (0.0, 0.5):
                got = _search(capsys, index, *flags, *(["--clips"] if kind == "clips" else []),
                              min_score=min_score, limit=limit)  # fmt: skip
                assert got == _scanned(index, labels, kind, min_score, limit), (labels, limit)
    rounds = []

    def kth_score(narrowed):
        con = query.connect_tables(narrowed)
        params = {"min_score": 0.0, "limit": 2}
        rows = con.execute(search_sql(["playing cricket"], kind), params).fetchall()
        rounds.append(narrowed["clips"].column("video_id").unique().to_pylist())
        return rows[-1][-1] if len(rows) >= 2 else None

    narrowed = indexes.label_candidates(
        tables.snapshot(index), ["playing cricket"], 0.0, 2, kth_score
    )
    every = indexes.label_candidates(tables.snapshot(index), ["playing cricket"], 0.0)
    read = set(narrowed["clips"].column("video_id").to_pylist())
    assert rounds and rounds[0][0] == "v04"  # the best bound comes first
    assert len(read) < len(set(every["clips"].column("video_id").to_pylist()))
    assert set(narrowed["videos"].column("video_id").to_pylist()) <= read


def test_tied_scores_keep_the_searchs_order(capsys, tmp_path):
    """Ten videos, each one clip of yoga at the same score, and z: the same score where
    it stands and a killed run's higher one (its bound): the first by video_id win,
    though z is read first."""
    out = str(tmp_path / "out")
    for v in range(10):
        row = {**clip_row(f"t{9 - v}", "r1", 0), "labels": ["yoga"], "scores": [0.9]}
        tables.commit_rows(out, "clips", pa.Table.from_pylist([row]))
        tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row(f"t{9 - v}", "r1")]))
    z = [
        {**clip_row("z", "r1", 0), "labels": ["yoga"], "scores": [0.9]},
        {**clip_row("z", "r3", 0), "labels": ["yoga"], "scores": [0.95]},  # no videos row
    ]
    tables.commit_rows(out, "clips", pa.Table.from_pylist(z))
    tables.commit_rows(out, "videos", pa.Table.from_pylist([video_row("z", "r1")]))
    for kind in ("clips", "events"):
        for limit in (1, 3):
            got = _search(capsys, out, "--label", "yoga", *(["--clips"] if kind == "clips" else []),
                          limit=limit)  # fmt: skip
            assert [row[0] for row in got] == ["t0", "t1", "t2"][:limit]
            assert got == _scanned(out, ["yoga"], kind, 0.0, limit)
