"""Shot detection (transforms.shots) on videos made here by joining real clips.

The edited videos (tests.media.shot_corpus) hold hard cuts, fades through black,
one-second cross-dissolves and one-second shots, and one-shot controls: a fast pan and
zoom over a still, white flashes, a fade-in at the start, a hand-held real clip.
Detection runs where the job runs it: inside ``read_clips``, on the frames the decode
makes, in process and in the child decoder.
"""

from __future__ import annotations

import pytest

from tests.helpers import MEDIA
from tests.media import EDIT_FPS, match_boundaries, shot_corpus, write_test_video
from transforms.decode_worker import IsolatedDecoder
from transforms.preprocess import FrameSpec
from transforms.reading import read_clips, video_info
from transforms.records import VideoRef
from transforms.sampling import ClipSampling
from transforms.shots import ShotBoundary, shots_from_boundaries

SAMPLING = ClipSampling(frames_per_clip=16, fps=8.0)
SPEC = FrameSpec(size=64)

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media is absent")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return shot_corpus(tmp_path_factory.mktemp("shots"), MEDIA)


def _shots(path, shots=True):
    with read_clips(str(path), SAMPLING, SPEC, shots=shots) as reader:
        clips = list(reader)
        info = video_info(VideoRef("v", str(path)), reader, len(clips))
    return info


def test_shots_cover_the_video_in_order_without_gaps():
    boundaries = [
        ShotBoundary(0.04, "start", 1.0),
        ShotBoundary(1.0, "cut", 0.9),
        ShotBoundary(2.5, "dissolve", 0.7),
        ShotBoundary(9.0, "cut", 0.8),  # past the end: dropped
    ]
    shots = shots_from_boundaries(boundaries, end_s=4.0)
    assert [(s.index, s.start_s, s.end_s, s.kind) for s in shots] == [
        (0, 0.04, 1.0, "start"),
        (1, 1.0, 2.5, "cut"),
        (2, 2.5, 4.0, "dissolve"),
    ]


@needs_media
def test_every_boundary_found_where_it_is_and_none_in_the_controls(corpus):
    found_total = hits = truth_total = 0
    for video in corpus:
        info = _shots(video.path)
        shots = info.shots
        # Covers the video from its first frame to its end, in order, without gaps.
        assert shots[0].kind == "start" and shots[0].start_s == pytest.approx(0.0, abs=0.05)
        assert shots[-1].end_s == pytest.approx(info.duration_s)
        assert all(a.end_s == b.start_s for a, b in zip(shots, shots[1:]))
        assert all(shot.thumbnail and shot.thumbnail[:2] == b"\xff\xd8" for shot in shots)
        found = [(shot.kind, shot.start_s) for shot in shots[1:]]
        matches = match_boundaries(found, video.boundaries)
        if not video.boundaries:  # a control: one shot
            assert found == [], video.path.name
        for boundary, match in zip(video.boundaries, matches):
            assert match is not None, (video.path.name, boundary, found)
            assert found[match][0] == boundary.kind, (video.path.name, boundary, found)
        found_total += len(found)
        truth_total += len(video.boundaries)
        hits += sum(match is not None for match in matches)
    assert hits / truth_total >= 0.95 and hits / found_total >= 0.90


@needs_media
def test_the_child_decoder_gives_the_same_shots(corpus):
    video = next(v for v in corpus if v.path.name == "dissolves.mp4")
    decoder = IsolatedDecoder()
    try:
        with decoder.read_clips(str(video.path), SAMPLING, SPEC, shots=True) as reader:
            clips = list(reader)
            remote = video_info(VideoRef("v", str(video.path)), reader, len(clips))
    finally:
        decoder.close()
    assert remote.shots == _shots(video.path).shots
    assert [s.kind for s in remote.shots] == ["start", "dissolve", "dissolve"]


def test_without_shots_nothing_is_detected(tmp_path):
    path = write_test_video(tmp_path / "v.mkv", 20, EDIT_FPS)
    assert _shots(path, shots=False).shots == ()
    # Frames that change every frame by a flat colour step: one shot, no cut.
    assert [s.kind for s in _shots(path).shots] == ["start"]


# --- the shots table, clips in shots, events inside shots ---------------------------------


def _edited_colours(path, fps=10):
    """2 s red, a cut, 2 s green, a cut, 2 s blue, each with a white square moving
    across it, then a cut to 3 s of still red (a frozen picture): FFV1."""
    import numpy as np

    from tests.media import COLOURS, write_video

    frames = []
    for name in ("red", "green", "blue"):
        for i in range(2 * fps):
            frame = np.zeros((32, 48, 3), np.uint8)
            frame[...] = COLOURS[name]
            x = (i * 4) % 40
            frame[12:20, x : x + 8] = 255
            frames.append(frame)
    still = np.zeros((32, 48, 3), np.uint8)
    still[...] = COLOURS["red"]
    frames += [still] * (3 * fps)
    return write_video(path, frames, fps, "ffv1", "yuv444p")


def test_shot_of_is_the_shot_holding_the_middle():
    from transforms.records import Shot
    from transforms.rows import shot_of

    shots = [Shot(0, 0.0, 2.0, "start", 1.0), Shot(1, 2.0, 4.0, "cut", 0.9)]
    assert shot_of(shots, 1.6, 2.4) == 1  # middle 2.0: the shot that starts there
    assert shot_of(shots, 1.2, 2.0) == 0
    assert shot_of(shots, 3.9, 4.7) == 1  # past the end: the last
    assert shot_of((), 0.0, 1.0) is None


def test_merge_events_never_cross_a_shot():
    from video_index.segments import ClipTop, Event, merge_events

    clips = [ClipTop(i, i * 1.0, i + 1.0, "x", 0.9, 0 if i < 2 else 1) for i in range(4)]
    shots = {0: (0.0, 1.8), 1: (1.8, 4.0)}
    assert merge_events(clips, shots=shots) == [
        Event("x", 0.0, 1.8, 2, 0.9, pytest.approx(0.9)),
        Event("x", 2.0, 4.0, 2, 0.9, pytest.approx(0.9)),  # cut to its shot, never grown
    ]
    # A clip in a technical cue is no member.
    cued = clips[:3] + [clips[3]._replace(cue="bars")]
    assert [e.num_clips for e in merge_events(cued, shots=shots)] == [2, 1]
    unshot = [c._replace(shot_index=None) for c in clips]
    assert merge_events(unshot) == [Event("x", 0.0, 4.0, 4, 0.9, pytest.approx(0.9))]


def _index_edited_colours(colour_spec, tmp_path, **overrides):
    """A run over ``_edited_colours`` with the colour model; a connection to its index."""
    from apache_beam.testing.test_pipeline import TestPipeline

    from beam_pipeline.pipeline import build_pipeline
    from tests.helpers import make_config
    from video_index.query import connect

    archive = tmp_path / "archive"
    archive.mkdir()
    _edited_colours(archive / "rgb.mkv")
    out = tmp_path / "out"
    with TestPipeline() as p:
        build_pipeline(p, make_config(colour_spec, str(archive), str(out), **overrides))
    return connect(str(out))


def test_timecodes_count_whole_frames():
    from beam_pipeline.shots_cli import timecode

    assert timecode(0.0, 25.0) == "00:00:00:00"
    assert timecode(3723.48, 25.0) == "01:02:03:12"
    assert timecode(1.0, 29.97) == "00:00:01:00"  # counted at 30, non-drop-frame
    assert timecode(-0.1, 25.0) == "00:00:00:00"


def test_a_run_writes_shots_and_events_stay_inside_them(colour_spec, tmp_path):
    con = _index_edited_colours(colour_spec, tmp_path, shots=True)
    shots = con.execute(
        "SELECT shot_index, start_s, end_s, kind, thumbnail FROM shots ORDER BY shot_index"
    ).fetchall()
    assert [(i, round(a, 2), round(b, 2), k) for i, a, b, k, _ in shots] == [
        (0, 0.0, 2.0, "start"),
        (1, 2.0, 4.0, "cut"),
        (2, 4.0, 6.0, "cut"),
        (3, 6.0, 9.0, "cut"),
    ]
    assert all(thumbnail[:2] == b"\xff\xd8" for *_, thumbnail in shots)
    cues = con.execute("SELECT kind, start_s, end_s FROM cues").fetchall()
    assert [(k, round(a, 1), round(b, 1)) for k, a, b in cues] == [("still", 6.0, 9.0)]
    clips = con.execute("SELECT start_s, end_s, shot_index, cue FROM clips").fetchall()
    for start_s, end_s, shot_index, cue in clips:
        assert shots[shot_index][1] <= (start_s + end_s) / 2 < shots[shot_index][2] + 1e-9
        # A clip at least half inside the still picture is marked; no other is.
        inside = min(end_s, 9.0) - max(start_s, 6.0) >= (end_s - start_s) / 2
        assert cue == ("still" if inside else None), (start_s, end_s, cue)
    assert any(cue for *_, cue in clips)
    events = con.execute("SELECT label, start_s, end_s FROM segments").fetchall()
    bounds = [s[1] for s in shots[1:]]
    for _, start_s, end_s in events:
        assert not any(start_s < b < end_s for b in bounds), (events, bounds)
        assert end_s <= 6.0 + 0.8, events  # none made of the still picture's clips
    assert {"red", "green", "blue"} <= {label for label, *_ in events}


def test_a_run_without_shots_keeps_the_old_clips_columns(colour_spec, tmp_path):
    con = _index_edited_colours(colour_spec, tmp_path)
    assert con.execute("SELECT count(*) FROM shots").fetchone() == (0,)
    columns = {row[0] for row in con.execute("DESCRIBE clips").fetchall()}
    assert "shot_index" not in columns
    # Without shots, one event per colour still (the old rule).
    assert con.execute("SELECT count(*) FROM segments").fetchone()[0] >= 3


def test_shot_lists_for_editors(colour_spec, tmp_path, capsys):
    import csv
    import io
    import json

    from beam_pipeline.cli import main

    _index_edited_colours(colour_spec, tmp_path, shots=True)
    out = str(tmp_path / "out")
    capsys.readouterr()  # what the run printed
    assert main(["shots", out, "--video", "rgb.mkv", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["kind"], s["start_tc"], s["end_tc"]) for s in listed] == [
        ("start", "00:00:00:00", "00:00:02:00"),
        ("cut", "00:00:02:00", "00:00:04:00"),
        ("cut", "00:00:04:00", "00:00:06:00"),
        ("cut", "00:00:06:00", "00:00:09:00"),
    ]
    assert main(["shots", out, "--video", "rgb.mkv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["shot_index"], r["kind"]) for r in rows] == [
        ("0", "start"),
        ("1", "cut"),
        ("2", "cut"),
        ("3", "cut"),
    ]
    assert main(["shots", out, "--video", "rgb.mkv", "--format", "edl"]) == 0
    edl = capsys.readouterr().out.splitlines()
    assert edl[:2] == ["TITLE: rgb.mkv", "FCM: NON-DROP FRAME"]
    events = [line for line in edl if line[:3].isdigit()]
    assert events[:3] == [
        "001  AX       V     C        00:00:00:00 00:00:02:00 00:00:00:00 00:00:02:00",
        "002  AX       V     C        00:00:02:00 00:00:04:00 00:00:02:00 00:00:04:00",
        "003  AX       V     C        00:00:04:00 00:00:06:00 00:00:04:00 00:00:06:00",
    ]
    assert len(events) == 4
    assert "* FROM CLIP NAME: rgb.mkv" in edl and "* SHOT: 1 cut confidence 1.000" in edl
    assert main(["shots", out, "--video", "nope"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("video-index shots: error: no indexed video 'nope'")
    assert "\n" not in error


@needs_media
def test_technical_cues_on_lavfi_sources_joined_to_real_clips(tmp_path):
    """SMPTE bars, black (lavfi ``color=black``) and a still image between real clips."""
    import av

    from tests.media import EDIT_SIZE, clip_frames, write_edited_video

    def lavfi(source: str, seconds: float):
        width, height = EDIT_SIZE
        joiner = ":" if "=" in source else "="
        graph = f"{source}{joiner}size={width}x{height}:rate={EDIT_FPS}"
        with av.open(graph, format="lavfi") as container:
            frames = container.decode(video=0)
            return [next(frames).to_ndarray(format="rgb24") for _ in range(int(seconds * EDIT_FPS))]

    pool = clip_frames(MEDIA / "mmaction2" / "test.mp4", 3)
    street = clip_frames(MEDIA / "mmaction2" / "test_video_structuralize.mp4", 3)
    still = [clip_frames(MEDIA / "moviepy" / "chaplin.mp4", 0.04, 3)[0]] * (3 * EDIT_FPS)
    video = write_edited_video(
        tmp_path / "tape.mp4",
        [lavfi("smptebars", 2), pool, lavfi("color=c=black", 1.2), street, still, pool],
        ["cut"] * 5,
    )
    info = _shots(video.path)
    cues = [(cue.kind, round(cue.start_s, 1), round(cue.end_s, 1)) for cue in info.cues]
    assert cues == [("bars", 0.0, 2.0), ("black", 5.0, 6.2), ("still", 9.2, 12.2)], cues


def test_the_html_report_draws_each_videos_shots(tmp_path):
    from beam_pipeline.report import load_summary, write_html
    from tests.helpers import video_row
    from transforms.sink import commit

    out = str(tmp_path / "out")
    row = video_row("v", "r1")
    spans = [(0.0, 0.25, "start"), (0.25, 0.75, "dissolve"), (0.75, 1.0, "cut")]
    shots = [
        {"video_id": "v", "uri": row["uri"], "shot_index": i, "start_s": a, "end_s": b,
         "kind": kind, "confidence": 1.0, "thumbnail": None, "model": "m", "run_id": "r1"}
        for i, (a, b, kind) in enumerate(spans)
    ]  # fmt: skip
    commit(out, "shots", shots)
    commit(out, "videos", [row])
    commit(out, "videos", [video_row("w", "r1")])  # a video without shots
    write_html(load_summary(out), out, str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert page.count("class=shot ") == 3 and page.count("class='bar shots'") == 1
    assert "width:50.00%" in page and "0.2s dissolve" in page and "shot 2: cut 0.75-1.00s" in page
