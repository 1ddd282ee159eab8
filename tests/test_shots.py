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
