"""Clip sampling (tier 1, pure): resampling by time, window plans, short videos, caps."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.sampling import (
    ClipSampling,
    clip_windows,
    expected_frame_count,
    pad_short,
    rate_fraction,
    resample,
    sample_clips,
    sliding_windows,
)


def at_rate(num_frames: int, fps: int, start: Fraction = Fraction(0)):
    return [(start + Fraction(i, fps), i) for i in range(num_frames)]


# -- ClipSampling ----------------------------------------------------------------------


def test_clip_sampling_validates_and_rounds_the_stride():
    assert ClipSampling(64, 25.0).stride_frames == 64  # None: one clip length
    assert ClipSampling(64, 25.0, stride_s=1.0).stride_frames == 25
    assert ClipSampling(8, 10.0, stride_s=0.01).stride_frames == 1  # never 0
    assert ClipSampling(8, 30000 / 1001).rate == Fraction(30000, 1001)
    for bad in (
        dict(frames_per_clip=0, fps=25.0),
        dict(frames_per_clip=8, fps=0.0),
        dict(frames_per_clip=8, fps=25.0, stride_s=0.0),
        dict(frames_per_clip=8, fps=25.0, max_clips=0),
        dict(frames_per_clip=8, fps=25.0, short_video="pad"),
    ):
        with pytest.raises(ValueError, match="must be"):
            ClipSampling(**bad)


def test_rates_are_exact_rationals():
    assert rate_fraction(25.0) == 25
    assert rate_fraction(29.97) == Fraction(2997, 100)
    assert rate_fraction(30000 / 1001) == Fraction(30000, 1001)
    with pytest.raises(ValueError, match="fps"):
        rate_fraction(-1)


# -- resample --------------------------------------------------------------------------


def test_same_rate_is_the_identity_and_targets_start_at_the_first_frame():
    frames = at_rate(10, 10, start=Fraction(3, 2))
    out = list(resample(frames, 10))
    assert [(s.t, s.frame) for s in out] == frames
    assert [s.source_index for s in out] == list(range(10))


def test_upsampling_repeats_the_same_source_frame():
    out = list(resample(at_rate(10, 10), 20))
    # 20 samples: the last frame is held for the gap before it (0.1 s).
    assert len(out) == 20
    # A tie (target exactly between two frames) goes to the earlier frame.
    assert [s.frame for s in out][:6] == [0, 0, 1, 1, 2, 2]
    assert all(s.t == Fraction(k, 20) for k, s in enumerate(out))
    # Repeats are the very same source, so a caller can convert it once.
    assert [s.source_index for s in out] == [s.frame for s in out]


def test_downsampling_drops_frames_nearest_in_time():
    out = list(resample(at_rate(30, 30), 10))
    assert [s.frame for s in out] == list(range(0, 30, 3))
    out = list(resample(at_rate(60, 60), 25))
    assert [s.frame for s in out][:5] == [0, 2, 5, 7, 10]  # nearest to k/25 (2.4 -> 2)


def test_variable_frame_rate_and_edge_cases():
    times = [Fraction(0), Fraction(1, 10), Fraction(35, 100), Fraction(4, 10)]
    out = [(s.t, s.frame) for s in resample(zip(times, "abcd"), 10)]
    # 0.2 is nearer 0.1 (b) than 0.35 (c); 0.3 nearer 0.35; the last frame (0.4) is
    # held for the gap before it (0.05), so no target after 0.4.
    assert out == [(Fraction(k, 10), f) for k, f in enumerate("abbcd")]
    assert list(resample([], 10)) == []
    (only,) = resample([(Fraction(7), "x")], 25)  # a lone frame gives one sample
    assert (only.t, only.frame) == (Fraction(7), "x")
    # Equal times: the later frame wins.
    dup = [
        (Fraction(0), "a"),
        (Fraction(1, 10), "b"),
        (Fraction(1, 10), "c"),
        (Fraction(2, 10), "d"),
    ]
    assert [s.frame for s in resample(dup, 10)] == ["a", "c", "d"]
    with pytest.raises(ValueError, match="backwards"):
        list(resample([(Fraction(1), 0), (Fraction(0), 1)], 10))


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=40), min_size=1, max_size=60),
    fps=st.sampled_from([1, 5, 10, 24, 25, 30]),
)
def test_resample_targets_are_even_and_frames_never_go_back(gaps, fps):
    times = list(itertools.accumulate((Fraction(g, 100) for g in gaps), initial=Fraction(0)))
    frames = list(zip(times, range(len(times))))
    out = list(resample(frames, fps))
    assert out, "at least one sample"
    assert [s.t for s in out] == [Fraction(k, fps) for k in range(len(out))]
    picked = [s.frame for s in out]
    assert picked == sorted(picked)
    # Each pick is a frame nearest in time among its neighbours.
    for s in out:
        distance = abs(s.source_t - s.t)
        assert all(distance <= abs(t - s.t) for t, _ in frames if t <= times[-1])
    # The output covers the video: the last sample is within one period of the end.
    end = times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0)
    assert out[-1].t >= end - Fraction(1, fps) or len(out) == 1


# -- window plans ----------------------------------------------------------------------


def test_clip_windows_examples():
    assert clip_windows(0, 4, 4) == []
    assert clip_windows(3, 4, 4) == [(0, 3)]  # short: one clip, padded later
    assert clip_windows(8, 4, 4) == [(0, 4), (4, 8)]
    # The last regular window stops short of the end: one more, aligned to the end.
    assert clip_windows(10, 4, 4) == [(0, 4), (4, 8), (6, 10)]
    assert clip_windows(6, 4, 1) == [(0, 4), (1, 5), (2, 6)]
    # A stride longer than a clip leaves gaps but still ends at the end.
    assert clip_windows(20, 4, 10) == [(0, 4), (10, 14), (16, 20)]
    # Capped: spread evenly from the first to the last frame, one clip in the middle.
    assert clip_windows(100, 10, 10, max_clips=3) == [(0, 10), (45, 55), (90, 100)]
    assert clip_windows(100, 10, 10, max_clips=1) == [(45, 55)]
    assert clip_windows(100, 10, 10, max_clips=10) == clip_windows(100, 10, 10)


def test_short_video_policies():
    assert pad_short([0, 1, 2], 8, "loop") == (0, 1, 2, 0, 1, 2, 0, 1)
    assert pad_short([0, 1, 2], 8, "repeat_last") == (0, 1, 2, 2, 2, 2, 2, 2)
    assert pad_short([5], 3, "loop") == (5, 5, 5)
    (hold,) = sliding_windows(range(2), 5, 5, short_video="repeat_last")
    assert (hold.start, hold.end, hold.frames) == (0, 2, (0, 1, 1, 1, 1))


plans = st.tuples(
    st.integers(min_value=0, max_value=120),  # frames
    st.integers(min_value=1, max_value=16),  # frames per clip
    st.integers(min_value=1, max_value=20),  # stride
    st.one_of(st.none(), st.integers(min_value=1, max_value=8)),  # max clips
)


@settings(max_examples=400, deadline=None)
@given(plan=plans)
def test_streaming_windows_agree_with_the_pure_plan(plan):
    num_frames, per_clip, stride, max_clips = plan
    expected = clip_windows(num_frames, per_clip, stride, max_clips)
    windows = list(
        sliding_windows(
            range(num_frames), per_clip, stride, max_clips=max_clips, expected_frames=num_frames
        )
    )
    assert [(w.start, w.end) for w in windows] == expected
    assert [w.index for w in windows] == list(range(len(windows)))
    for w in windows:
        assert len(w.frames) == per_clip
        if w.end - w.start == per_clip:
            assert w.frames == tuple(range(w.start, w.end))
        else:
            assert num_frames < per_clip and len(windows) == 1
    if num_frames and stride <= per_clip and max_clips is None:
        assert {i for w in windows for i in w.frames} == set(range(num_frames))
    if num_frames >= per_clip and max_clips != 1:
        assert windows[-1].end == num_frames  # the end of the video is always in a clip


@settings(max_examples=400, deadline=None)
@given(plan=plans, guess=st.one_of(st.none(), st.integers(min_value=0, max_value=200)))
def test_a_wrong_length_guess_still_gives_a_valid_capped_plan(plan, guess):
    num_frames, per_clip, stride, max_clips = plan
    pulled = []

    def source():
        for i in range(num_frames):
            pulled.append(i)
            yield i

    windows = list(
        sliding_windows(source(), per_clip, stride, max_clips=max_clips, expected_frames=guess)
    )
    starts = [w.start for w in windows]
    assert starts == sorted(set(starts))
    assert all(0 <= w.start < w.end <= num_frames for w in windows)
    if max_clips is not None:
        assert len(windows) <= max_clips
    if num_frames:
        assert windows, "any frames give at least one clip"
    if max_clips is not None and guess is None and num_frames >= per_clip:
        # Unknown length: the first max_clips windows, and no input read past them.
        regular = clip_windows(num_frames, per_clip, stride)
        assert [(w.start, w.end) for w in windows] == regular[: len(windows)]
        if len(regular) > max_clips:
            assert len(pulled) == windows[-1].end


# -- sample_clips ----------------------------------------------------------------------


def test_clips_are_resampled_frames_with_target_times():
    sampling = ClipSampling(frames_per_clip=4, fps=10.0)
    clips = list(sample_clips(at_rate(30, 30), sampling))
    # 30 frames at 30 fps -> 10 at 10 fps: frames 0, 3, ..., 27; windows (0,4), (4,8), (6,10).
    assert [c.frames for c in clips] == [(0, 3, 6, 9), (12, 15, 18, 21), (18, 21, 24, 27)]
    assert [(c.start_s, c.end_s) for c in clips] == [
        (Fraction(0), Fraction(4, 10)),
        (Fraction(4, 10), Fraction(8, 10)),
        (Fraction(6, 10), Fraction(1)),
    ]
    assert [(c.start_index, c.end_index) for c in clips] == [(0, 4), (4, 8), (6, 10)]


def test_prepare_runs_once_per_kept_source_frame():
    calls = []

    def prepare(frame):
        calls.append(frame)
        return f"rgb{frame}"

    # Downsampling: dropped frames are never prepared.
    list(sample_clips(at_rate(30, 30), ClipSampling(5, 10.0), prepare=prepare))
    assert calls == list(range(0, 30, 3))
    # Upsampling: a repeated frame is prepared once and the result reused.
    calls.clear()
    (clip,) = sample_clips(at_rate(4, 10), ClipSampling(8, 20.0), prepare=prepare)
    assert calls == [0, 1, 2, 3]
    assert clip.frames == ("rgb0", "rgb0", "rgb1", "rgb1", "rgb2", "rgb2", "rgb3", "rgb3")


def test_a_short_video_gives_one_padded_clip_timed_by_its_real_frames():
    (clip,) = sample_clips(at_rate(3, 10), ClipSampling(8, 10.0, short_video="loop"))
    assert clip.frames == (0, 1, 2, 0, 1, 2, 0, 1)
    assert (clip.start_s, clip.end_s) == (Fraction(0), Fraction(3, 10))
    (clip,) = sample_clips(at_rate(3, 10), ClipSampling(8, 10.0, short_video="repeat_last"))
    assert clip.frames == (0, 1, 2, 2, 2, 2, 2, 2)


def test_max_clips_spreads_over_the_expected_length_or_keeps_the_first():
    sampling = ClipSampling(frames_per_clip=10, fps=10.0, max_clips=3)
    spread = list(sample_clips(at_rate(100, 10), sampling, expected_duration_s=10.0))
    assert [(c.start_index, c.end_index) for c in spread] == [(0, 10), (45, 55), (90, 100)]
    first = list(sample_clips(at_rate(100, 10), sampling))
    assert [(c.start_index, c.end_index) for c in first] == [(0, 10), (10, 20), (20, 30)]
    # The container promised 10 s but only 6 s decode: the plan's reachable clips,
    # then one aligned to the real end.
    cut = list(sample_clips(at_rate(60, 10), sampling, expected_duration_s=10.0))
    assert [(c.start_index, c.end_index) for c in cut] == [(0, 10), (45, 55), (50, 60)]


def test_expected_frame_count():
    assert expected_frame_count(10.0, 25) == 250
    assert expected_frame_count(10.01, 30000 / 1001) == 300
    assert expected_frame_count(None, 25) is None
    assert expected_frame_count(0.0, 25) is None
