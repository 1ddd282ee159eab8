"""Kinds of file from public reports (``../shared/open-cases``): each kind, not the file.

Recordings with a pause in their timestamps (screen recorders, motion-triggered CCTV,
dash-cams), at several pause lengths and frame rates. Every test here was seen
failing before its fix.
"""

from __future__ import annotations

from fractions import Fraction

import pytest

from tests.helpers import SHARED
from tests.media import frame_index, write_vfr_test_video
from transforms.sampling import ClipSampling, sample_clips

OPEN_CASES = SHARED / "open-cases"


def _paused(fps: int, before_s: float, pause_s: float, after_s: float) -> list[Fraction]:
    """Frame times of a recording at ``fps`` paused for ``pause_s`` after ``before_s``."""
    period = Fraction(1, fps)
    before = [k * period for k in range(round(before_s * fps))]
    resume = before[-1] + period + Fraction(pause_s).limit_denominator(1000)
    return before + [resume + k * period for k in range(round(after_s * fps))]


def _assert_no_clip_in_the_gap(clips, times, n_before):
    """No clip spans the pause after frame ``n_before - 1``; each takes one side's frames."""
    last_before, first_after = times[n_before - 1], times[n_before]
    for clip in clips:
        assert clip.end_s <= last_before + Fraction(1, 2) or clip.start_s >= first_after, (
            f"clip {clip.index} {float(clip.start_s):.2f}-{float(clip.end_s):.2f} s lies in "
            f"the pause {float(last_before):.2f}-{float(first_after):.2f} s"
        )
        assert len({f >= n_before for f in clip.frames}) == 1, clip.index


@pytest.mark.parametrize("fps, pause_s", [(30, 60.0), (15, 5.0), (25, 20.0), (60, 3.0)])
def test_a_pause_in_the_timestamps_gets_no_clip(fps, pause_s):
    times = _paused(fps, 3.0, pause_s, 3.0)
    sampling = ClipSampling(frames_per_clip=16, fps=10)
    clips = list(sample_clips(((t, i) for i, t in enumerate(times)), sampling))
    _assert_no_clip_in_the_gap(clips, times, 3 * fps)
    # As many clips as the two recorded stretches give on their own.
    alone = [
        len(list(sample_clips(((t, i) for i, t in enumerate(part)), sampling)))
        for part in (times[: 3 * fps], times[3 * fps :])
    ]
    assert len(clips) == sum(alone)
    # Clip numbers leave the pause's slots empty, so no event is merged across it.
    indices = [c.index for c in clips]
    assert indices == sorted(set(indices))
    missing = max(b - a for a, b in zip(indices, indices[1:])) - 1
    assert missing >= int(pause_s / 1.6) - 1  # 1.6 s: one clip


def test_slow_even_frames_are_not_pauses():
    # A slideshow (a GIF whose frames each last 3 s): long frames, no pause.
    times = [Fraction(3 * k) for k in range(6)]
    sampling = ClipSampling(frames_per_clip=8, fps=2)
    clips = list(sample_clips(((t, i) for i, t in enumerate(times)), sampling))
    covered = {f for clip in clips for f in clip.frames}
    assert covered == set(range(6)) and [c.index for c in clips] == list(range(len(clips)))


def test_a_paused_recording_read_through_the_clip_path(tmp_path):
    from transforms.preprocess import FrameSpec
    from transforms.reading import read_clips

    times = _paused(25, 2.0, 30.0, 2.0)
    path = write_vfr_test_video(tmp_path / "paused.mkv", times)
    sampling = ClipSampling(frames_per_clip=8, fps=10)
    with read_clips(str(path), sampling, FrameSpec(size=16)) as reader:
        clips = list(reader)
    assert clips
    for clip in clips:
        assert clip.end_s <= 2.1 or clip.start_s >= 32.0, (clip.start_s, clip.end_s)


def test_the_open_case_paused_recording(tmp_path):
    from transforms.preprocess import FrameSpec
    from transforms.reading import read_clips

    path = OPEN_CASES / "vfr_recording_paused_60s.mp4"
    if not path.exists():
        pytest.skip("../shared/open-cases is not here")
    sampling = ClipSampling(frames_per_clip=64, fps=25, stride_s=None)
    with read_clips(str(path), sampling, FrameSpec(size=32)) as reader:
        clips = list(reader)
    # 0.000-2.967 s and 63.000-65.967 s hold picture; the minute between holds none.
    assert clips and all(c.end_s <= 3.1 or c.start_s >= 63.0 for c in clips), [
        (float(c.start_s), float(c.end_s)) for c in clips
    ]
    assert len(clips) <= 4
