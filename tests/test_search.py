"""`video-index search`: class matching, ranking, events vs clips, never superseded rows."""

from __future__ import annotations

import json

import pytest

from beam_pipeline.query_cli import hms
from tests.helpers import DEMO_MEDIA, clip_row, run_cli, video_row
from video_index.class_match import match_classes
from transforms.sink import commit

CLASSES = ["playing cricket", "golf putting", "cricket (insect)", "cleaning pool", "Crickets"]


def test_match_classes_by_words():
    assert match_classes("cricket", CLASSES) == ["Crickets", "cricket (insect)", "playing cricket"]
    assert match_classes("CRICKET playing", CLASSES) == ["playing cricket"]
    assert match_classes("play", CLASSES) == ["playing cricket"]  # a stem
    assert match_classes("pla", CLASSES) == []  # not a prefix
    assert match_classes("  ", CLASSES) == []


def test_hms_covers_the_span():
    assert (hms(0.0), hms(3.16, up=True)) == ("0:00:00", "0:00:04")
    assert (hms(3599.5), hms(3600.0, up=True), hms(3725.0)) == ("0:59:59", "1:00:00", "1:02:05")


def clips_of(video: str, run: str, tops: list[tuple[str, float]]) -> list[dict]:
    return [
        {**clip_row(video, run, i), "labels": [label, "other"], "scores": [score, 0.01]}
        for i, (label, score) in enumerate(tops)
    ]


@pytest.fixture
def index(tmp_path):
    out = str(tmp_path / "out")
    cricket, golf = "playing cricket", "golf putting"
    # x was re-indexed by r2: its r1 cricket clips no longer stand.
    commit(out, "clips", clips_of("x", "r1", [(cricket, 0.99)] * 3))
    commit(out, "videos", [video_row("x", "r1", label=cricket)])
    commit(out, "clips", clips_of("x", "r2", [(golf, 0.9)] * 2))
    commit(out, "videos", [video_row("x", "r2", label=golf)])
    # y: a cricket event over clips 0-2 (clip 1 bridged), then a weak clip.
    tops = [(cricket, 0.8), (golf, 0.6), (cricket, 0.7), (cricket, 0.3)]
    commit(out, "clips", clips_of("y", "r1", tops))
    # z: one strong cricket clip.
    commit(out, "clips", clips_of("z", "r1", [(golf, 0.2), (cricket, 0.95)]))
    commit(out, "videos", [video_row("y", "r1", cricket), video_row("z", "r1", golf)])
    # A killed run's orphan clips of z: newer, but z has no row from it.
    commit(out, "clips", clips_of("z", "r3", [(cricket, 1.0)] * 2))
    return out


def test_search_events_best_first_without_superseded_rows(index):
    done = run_cli("search", index, "cricket", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "classes matched: playing cricket" in done.stderr
    rows = json.loads(done.stdout)
    assert [(r["video_id"], r["start_s"], r["end_s"]) for r in rows] == [
        ("z", 1.0, 2.0),
        ("y", 0.0, 3.0),
    ]
    assert rows[0]["score"] == pytest.approx(0.95)
    assert set(rows[0]) == {"video_id", "uri", "label", "start_s", "end_s", "score"}


def test_search_clips_min_score_limit_and_table(index):
    done = run_cli("search", index, "Cricket", "--clips", "--min-score", "0.5", "--format", "csv")
    lines = done.stdout.splitlines()
    assert lines[0] == "video_id,uri,label,start_s,end_s,score"
    assert [line.split(",")[0] for line in lines[1:]] == ["z", "y", "y"]
    table = run_cli("search", index, "--label", "golf putting", "--limit", "1")
    assert table.returncode == 0, table.stderr
    out = table.stdout.splitlines()
    assert out[0] == "classes matched: golf putting" and out[1].startswith("events")
    assert out[2].split() == ["video", "time", "label", "score"]
    assert out[3].split() == ["x", "0:00:00-0:00:02", "golf", "putting", "0.900"]
    assert len(out) == 4


def test_search_in_the_users_words(index):
    done = run_cli("search", index, "a batsman hitting the ball at the crease", "--clips")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("classes nearest in meaning (cosine similarity): playing cricket (")
    assert "golf putting" not in lines[0]
    assert [line.split()[0] for line in lines[3:]] == ["z", "y", "y"]


def test_search_without_a_match_or_words(index):
    none = run_cli("search", index, "zebra")
    assert none.returncode == 1 and "no class matches 'zebra'" in none.stdout
    bad = run_cli("search", index)
    assert bad.returncode == 2 and "give words of what to find" in bad.stderr
    ignored = run_cli("search", index, "cricket", "--segment-min-score=0.9")
    assert ignored.returncode == 2 and "give --min-score" in ignored.stderr


@pytest.mark.slow
def test_acceptance_on_the_demo_clips(tmp_path):
    """The issue's acceptance run with the real I3D: search, segments, a changed file."""
    import os
    import shutil

    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ["v_CricketShot_g04_c01_rgb.gif", "test.mp4", "chaplin.mp4"]:
        shutil.copy(DEMO_MEDIA / name, archive / name)
    out = str(tmp_path / "out")
    first = run_cli("index", "--input", str(archive), "--output", out)
    assert first.returncode == 0, first.stderr[-3000:]

    found = run_cli("search", out, "cricket", "--format", "json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["video_id"] == "v_CricketShot_g04_c01_rgb.gif"
    # A --label that is no class of the model is an error, not "no moments".
    typo = run_cli("search", out, "--label", "Playing Crickett")
    assert typo.returncode == 2 and "did you mean 'playing cricket'" in typo.stderr
    sql = ("SELECT s.start_s, s.end_s, v.duration_s FROM segments s JOIN videos v USING "
           "(video_id) WHERE video_id = 'test.mp4' AND label = 'cleaning pool'")  # fmt: skip
    events = json.loads(run_cli("query", out, sql, "--format", "json").stdout)
    assert len(events) == 1 and events[0]["start_s"] == 0.0
    assert events[0]["end_s"] == pytest.approx(events[0]["duration_s"], abs=0.05)

    counts = ("SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM clips) "
              "AS clips, (SELECT sum(num_clips) FROM videos) AS expected, "
              "(SELECT count(*) FROM raw_videos) AS raw_videos")  # fmt: skip
    before = json.loads(run_cli("query", out, counts, "--format", "json").stdout)[0]
    gif = archive / "v_CricketShot_g04_c01_rgb.gif"
    os.utime(gif, (gif.stat().st_atime, gif.stat().st_mtime + 60))  # a changed file
    again = run_cli("index", "--input", str(archive), "--output", out)
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads(run_cli("query", out, counts, "--format", "json").stdout)[0]
    # The changed file's older rows left the table with the run: any reader counts 3.
    assert after["raw_videos"] == before["raw_videos"] == 3
    assert (after["videos"], after["clips"]) == (3, after["expected"]) == (3, before["clips"])
    assert run_cli("compact", out).returncode == 0
    assert json.loads(run_cli("query", out, counts, "--format", "json").stdout)[0] == after


@pytest.fixture
def shot_index(tmp_path):
    """Video s in three shots, [0, 3), [3, 6), [6, 8); its last two clips lie in colour bars."""
    from video_index.schemas import clips_schema

    out = str(tmp_path / "shots_out")
    cricket, golf = "playing cricket", "golf putting"
    tops = [(cricket, 0.6), (cricket, 0.7), (cricket, 0.8), (cricket, 0.9), (golf, 0.9),
            (cricket, 0.55), (cricket, 0.99), (cricket, 0.99)]  # fmt: skip
    shot_of = [0, 0, 0, 1, 1, 1, 2, 2]
    clips = [
        {**row, "shot_index": shot_of[i], "cue": "bars" if i >= 6 else None}
        for i, row in enumerate(clips_of("s", "r1", tops))
    ]
    commit(out, "clips", clips, clips_schema(shots=True))
    spans = [(0.0, 3.0, "start"), (3.0, 6.0, "cut"), (6.0, 8.0, "cut")]
    shots = [
        {"video_id": "s", "uri": clips[0]["uri"], "shot_index": i, "start_s": a, "end_s": b,
         "kind": kind, "confidence": 1.0, "thumbnail": b"\xff\xd8", "model": "m", "run_id": "r1"}
        for i, (a, b, kind) in enumerate(spans)
    ]  # fmt: skip
    commit(out, "shots", shots)
    commit(out, "videos", [video_row("s", "r1", cricket)])
    return out


def test_search_keeps_events_inside_shots_and_skips_technical_cues(shot_index):
    events = run_cli("search", shot_index, "cricket", "--format", "json")
    assert events.returncode == 0, events.stderr
    found = [(r["start_s"], r["end_s"], r["score"]) for r in json.loads(events.stdout)]
    # One event per shot (clip 4, golf, bridged), none from the clips in the bars.
    assert found == [(3.0, 6.0, pytest.approx(0.9)), (0.0, 3.0, pytest.approx(0.8))]
    clips = run_cli("search", shot_index, "cricket", "--clips", "--format", "json")
    assert [r["score"] for r in json.loads(clips.stdout)][:1] == [pytest.approx(0.9)]


def test_search_ranks_shots_by_their_best_clip(shot_index, index):
    done = run_cli("search", shot_index, "cricket", "--shots", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert "shots, best first" in done.stderr
    rows = json.loads(done.stdout)
    assert [(r["shot_index"], r["kind"], r["start_s"], r["end_s"], r["score"]) for r in rows] == [
        (1, "cut", 3.0, 6.0, pytest.approx(0.9)),
        (0, "start", 0.0, 3.0, pytest.approx(0.8)),
    ]  # shot 2's only cricket clips are colour bars
    assert rows[0]["label"] == "playing cricket" and rows[0]["video_id"] == "s"
    table = run_cli("search", shot_index, "cricket", "--shots", "--limit", "1")
    assert [line.split() for line in table.stdout.splitlines()[2:]] == [
        ["video", "shot", "time", "kind", "label", "score"],
        ["s", "1", "0:00:03-0:00:06", "cut", "playing", "cricket", "0.900"],
    ]
    both = run_cli("search", shot_index, "cricket", "--shots", "--clips")
    assert both.returncode == 2 and "--clips or --shots" in both.stderr
    old = run_cli("search", index, "cricket", "--shots")  # clips without shot_index
    assert old.returncode == 2 and "no shots" in old.stderr and "\n" not in old.stderr.strip()
