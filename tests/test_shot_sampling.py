"""Clips placed inside shots (``--clips-per-shot``, transforms.shot_sampling).

The pure plan, the streaming plan against it (boundaries settling late, as the
detector's look-ahead makes them), the held-back buffer staying bounded, then real
decodes: videos the tests make by joining colour shots or real clips with known cuts,
read by ``read_clips`` in process and in the child decoder, and a whole run.
"""

from __future__ import annotations

import gc
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import MEDIA
from tests.media import write_video
from transforms.preprocess import FrameSpec
from transforms.reading import read_clips, video_info
from transforms.records import VideoRef
from transforms.rows import shot_of
from transforms.sampling import ClipSampling, resample, sample_clips
from transforms.shot_sampling import MAX_SETTLE_S, long_shot_starts, shot_clip_windows, shot_windows

SAMPLING = ClipSampling(frames_per_clip=16, fps=8.0, clips_per_shot=2)  # 2 s clips
SPEC = FrameSpec(size=32)

needs_media = pytest.mark.skipif(not MEDIA.is_dir(), reason="../shared/media is absent")


# --- the plan, a pure function of the shots' first frames --------------------------------


def test_the_plan_puts_clips_inside_shots():
    assert shot_clip_windows([], 0, 4, 4, 2) == []
    assert shot_clip_windows([], 3, 4, 4, 2) == [(0, 3)]  # shorter than a clip: one, padded
    assert shot_clip_windows([2], 3, 4, 4, 2) == [(0, 2), (2, 3)]  # one per shot
    # One shot: the plain plan, capped.
    assert shot_clip_windows([], 12, 4, 4, 5) == [(0, 4), (4, 8), (8, 12)]
    # [0, 10) long: its windows, the last at its end; [10, 12) short: one centred on it;
    # [12, 30) long: five windows fit, five allowed.
    assert shot_clip_windows([10, 12], 30, 4, 4, 5) == [
        (0, 4), (4, 8), (6, 10), (9, 13), (12, 16), (16, 20), (20, 24), (24, 28), (26, 30),
    ]  # fmt: skip
    # A short shot at either end: its clip shortened alike on both sides (centred still).
    assert shot_clip_windows([2, 18], 20, 8, 8, 3) == [(0, 2), (2, 10), (10, 18), (18, 20)]
    assert shot_clip_windows([1, 2], 10, 8, 8, 1) == [(0, 1), (0, 3), (2, 10)]
    assert shot_clip_windows([3, 5], 40, 8, 8, 1) == [(0, 3), (0, 8), (21, 29)]


def test_a_long_shot_gets_at_most_n_clips_near_even_spacing():
    # 100 frames, clips of 10 every 10: 10 starts fit (0..90).
    assert long_shot_starts(100, 10, 10, 20) == list(range(0, 91, 10))
    assert long_shot_starts(100, 10, 10, 1) == [40]  # the middle (45) as near as held
    assert long_shot_starts(100, 10, 10, 3) == [0, 40, 90]
    assert long_shot_starts(10, 10, 10, 3) == [0]
    assert long_shot_starts(15, 10, 10, 3) == [0, 5]
    for n in range(1, 9):
        starts = long_shot_starts(1000, 16, 8, n)
        assert len(starts) == n and starts == sorted(set(starts))
        if n > 1:
            assert starts[0] == 0 and starts[-1] == 1000 - 16
            even = [i * 984 / (n - 1) for i in range(n)]
            assert max(abs(a - b) for a, b in zip(starts, even)) <= 984 / (n + 1) / 2 + 8


# --- streaming: boundaries settle late; the buffer is bounded -----------------------------


def _stream(num_frames, fps, firsts, lag, seen):
    """``(t, frame, source_t)`` per sampled frame (``frame`` = its index) and a
    ``settled`` that reports each shot's first frame ``lag`` frames after it was given,
    and, past its horizon (where starts may still change), a start that is none."""
    rate = Fraction(fps)

    def frames():
        for k in range(num_frames):
            seen[0] = k
            yield Fraction(k) / rate, k, Fraction(k) / rate

    def settled(ended):
        if ended:
            return float("inf"), [float(Fraction(f) / rate) for f in firsts]
        horizon = float(Fraction(seen[0] - lag) / rate)
        starts = [float(Fraction(f) / rate) for f in firsts if Fraction(f) / rate < horizon]
        if seen[0] not in firsts:
            starts.append(float(Fraction(seen[0]) / rate))  # unsettled: past the horizon
        return horizon, starts

    return frames(), settled


@settings(max_examples=300, deadline=None)
@given(
    layout=st.integers(min_value=0, max_value=120).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(min_value=1, max_value=max(1, n - 1)), unique=True).map(sorted),
        )
    ),
    per_clip=st.integers(min_value=1, max_value=12),
    stride=st.integers(min_value=1, max_value=16),
    per_shot=st.integers(min_value=1, max_value=4),
    lag=st.integers(min_value=0, max_value=30),
)
def test_streaming_agrees_with_the_pure_plan(layout, per_clip, stride, per_shot, lag):
    num_frames, firsts = layout
    firsts = [f for f in firsts if f < num_frames]
    fps = 10
    sampling = ClipSampling(per_clip, fps, stride_s=stride / fps, clips_per_shot=per_shot)
    frames, settled = _stream(num_frames, fps, firsts, lag, [0])
    windows = list(shot_windows(frames, sampling, settled))
    expected = shot_clip_windows(firsts, num_frames, per_clip, sampling.stride_frames, per_shot)
    assert [(w.start, w.end) for w in windows] == expected
    assert [w.index for w in windows] == list(range(len(windows)))
    for w in windows:
        assert len(w.frames) == per_clip
        real = [k for _, k, _ in w.frames[: w.end - w.start]]
        assert real == list(range(w.start, w.end))  # then padded, where shorter
    # Every shot at least a clip long holds 1 to `per_shot` clips inside it.
    bounds = [0] + firsts + [num_frames]
    for first, end in zip(bounds, bounds[1:]):
        if num_frames >= per_clip and end - first >= per_clip:
            inside = [w for w in windows if first <= w.start and w.end <= end]
            assert 1 <= len(inside) <= per_shot


class _Tracked:
    """A frame that counts how many of its kind are alive (CPython frees at once)."""

    alive = 0

    def __init__(self):
        _Tracked.alive += 1

    def __del__(self):
        _Tracked.alive -= 1


@pytest.mark.parametrize("lag", [5, None])  # settled 0.5 s late, or never before the end
def test_the_held_back_frames_stay_bounded_however_long_the_video(lag):
    fps, per_clip, per_shot = 10, 16, 2
    sampling = ClipSampling(per_clip, fps, stride_s=0.4, clips_per_shot=per_shot)
    # A 5-minute shot, then a minute of 0.7 s shots, then another long one.
    firsts = [3000 + 7 * i for i in range(86)] + [3700]
    num_frames = 6000
    rate = Fraction(fps)
    made, peak = [0], [0]

    def frames():
        for k in range(num_frames):
            peak[0] = max(peak[0], _Tracked.alive)
            made[0] = k + 1
            t = Fraction(k) / rate
            yield t, _Tracked(), t

    def settled(ended):
        starts = [float(f / rate) for f in firsts]
        if ended:
            return float("inf"), starts
        if lag is None:
            return float("-inf"), starts
        return float(Fraction(made[0] - lag) / rate), starts

    count = 0
    for window in shot_windows(frames(), sampling, settled):
        count += 1
        assert len(window.frames) == per_clip
    held_at_most = (MAX_SETTLE_S * fps + 1) + 3 * per_clip + (2 * per_shot + 2) * per_clip
    assert peak[0] <= held_at_most < num_frames / 30, peak[0]
    assert count >= 86  # a clip for each short shot, and the long shots'
    del window
    gc.collect()
    assert _Tracked.alive == 0  # nothing is kept past the video


def test_a_pause_splits_the_video_and_clips_stay_in_shots():
    """Through ``sample_clips``: each stretch between pauses is placed on its own."""
    rate = 10
    times = [Fraction(i, rate) for i in range(40)] + [Fraction(100 + i, rate) for i in range(40)]
    firsts_s = [2.0, 11.5]  # one shot start in each stretch

    def settled(ended):
        return float("inf"), firsts_s

    sampling = ClipSampling(8, rate, clips_per_shot=1)
    clips = list(
        sample_clips(
            [(t, i) for i, t in enumerate(times)],
            sampling,
            windows=lambda frames: shot_windows(frames, sampling, settled),
        )
    )
    spans = [(float(c.start_s), float(c.end_s)) for c in clips]
    # Stretch one: [0, 2) and [2, 4); stretch two: [10, 11.5) and [11.5, 14).
    assert spans == [(0.8, 1.6), (2.8, 3.6), (10.0, 10.8), (12.3, 13.1)]
    assert [c.index for c in clips] == [0, 1, 12, 13]  # the pause's clip slots stay empty


# --- real decodes ------------------------------------------------------------------------

CUTS_S = [3.0, 3.6, 8.6, 9.8]  # red 3 s, green 0.6 s, blue 5 s, yellow 1.2 s, cyan 2.5 s


def _coloured_shots(path, fps=10):
    """Five solid-colour shots, each with a white square moving across it, hard cuts at
    ``CUTS_S``: FFV1."""
    colours = [(230, 10, 10), (10, 230, 10), (10, 10, 230), (230, 230, 10), (10, 230, 230)]
    lengths = [3.0, 0.6, 5.0, 1.2, 2.5]
    frames = []
    for colour, seconds in zip(colours, lengths):
        for i in range(round(seconds * fps)):
            frame = np.zeros((32, 48, 3), np.uint8)
            frame[...] = colour
            x = (i * 4) % 40
            frame[12:20, x : x + 8] = 255
            frames.append(frame)
    return write_video(path, frames, fps, "ffv1", "yuv444p")


def _read(path, sampling, read=read_clips):
    with read(str(path), sampling, SPEC, shots=True) as reader:
        clips = [(c.start_s, c.end_s, c.frames.shape) for c in reader]
        info = video_info(VideoRef("v", str(path)), reader, len(clips))
    return clips, info


def _planned(path, sampling, shots):
    """The pure plan's clips for the decoded video's frame times and its final shots:
    ``[(start_s, end_s)]`` as Fractions."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = sorted(Fraction(f.pts) * stream.time_base for f in container.decode(stream))
    sampled = list(resample([(t, None) for t in times], sampling.rate))
    firsts = [
        next(s.index for s in sampled if float(s.source_t) >= shot.start_s) for shot in shots[1:]
    ]
    plan = shot_clip_windows(
        firsts,
        len(sampled),
        sampling.frames_per_clip,
        sampling.stride_frames,
        sampling.clips_per_shot,
    )
    period = 1 / sampling.rate
    t0 = sampled[0].t
    return [(t0 + a * period, t0 + b * period) for a, b in plan]


def _check_clips_in_shots(clips, shots, sampling):
    clip_s = sampling.frames_per_clip / sampling.fps
    per_shot: dict[int, list] = {}
    for start_s, end_s, _ in clips:
        per_shot.setdefault(shot_of(shots, float(start_s), float(end_s)), []).append(
            (float(start_s), float(end_s))
        )
    assert sorted(per_shot) == [shot.index for shot in shots]  # every shot has a clip
    period = 1 / sampling.fps
    for shot in shots:
        spans = per_shot[shot.index]
        assert len(spans) <= sampling.clips_per_shot
        if shot.end_s - shot.start_s >= clip_s:
            # Inside the shot, to a sampled frame (one that holds the frame nearest a
            # boundary; the last, as long as the video's last frame is held).
            assert all(shot.start_s - period <= a and b <= shot.end_s + period for a, b in spans)
        else:  # one clip centred on the shot
            (a, b), middle = spans[0], (shot.start_s + shot.end_s) / 2
            assert len(spans) == 1 and abs((a + b) / 2 - middle) <= 1 / sampling.fps


def test_clips_are_placed_inside_the_shots_of_an_edited_video(tmp_path):
    path = _coloured_shots(tmp_path / "shots.mkv")
    clips, info = _read(path, SAMPLING)
    assert [(s.kind, round(s.start_s, 2)) for s in info.shots] == [("start", 0.0)] + [
        ("cut", t) for t in CUTS_S
    ]
    assert all(shape == (16, 32, 32, 3) for *_, shape in clips)
    # The boundaries the held-back frames were placed with are the final ones.
    assert [(a, b) for a, b, _ in clips] == _planned(path, SAMPLING, info.shots)
    _check_clips_in_shots(clips, info.shots, SAMPLING)
    # One clip per shot: one each, the long ones' in their middle.
    one, one_info = _read(path, ClipSampling(16, 8.0, clips_per_shot=1))
    assert [shot_of(one_info.shots, float(a), float(b)) for a, b, _ in one] == [0, 1, 2, 3, 4]
    # Blue, 3.6-8.6 s: candidates a clip apart, the one nearest the middle.
    assert [(float(a), float(b)) for a, b, _ in one][2] == (5.625, 7.625)
    # The plain plan's clips straddle cuts; the shots are the same.
    plain, plain_info = _read(path, ClipSampling(16, 8.0))
    assert plain_info.shots == info.shots
    assert any(a < t < b for a, b, _ in plain for t in CUTS_S)


def test_the_child_decoder_places_the_same_clips(tmp_path):
    from transforms.decode_worker import IsolatedDecoder

    path = _coloured_shots(tmp_path / "shots.mkv")
    decoder = IsolatedDecoder()
    try:
        remote = _read(path, SAMPLING, decoder.read_clips)
    finally:
        decoder.close()
    assert remote == _read(path, SAMPLING)


def test_clips_per_shot_needs_shot_detection(tmp_path):
    path = _coloured_shots(tmp_path / "shots.mkv")
    with pytest.raises(ValueError, match="needs shots=True"):
        read_clips(str(path), SAMPLING, SPEC)
    with pytest.raises(ValueError, match="clips_per_shot must be >= 1"):
        ClipSampling(16, 8.0, clips_per_shot=0)
    with pytest.raises(ValueError, match="cannot be combined with max_clips"):
        ClipSampling(16, 8.0, max_clips=3, clips_per_shot=1)


def test_a_long_dark_run_is_placed_with_what_is_known_and_stays_bounded(tmp_path):
    """10 s of black between two shots: its fade boundary (its middle, 8 s) is known
    only at its end, past ``MAX_SETTLE_S``; the frames are placed before that, so the
    dark run is one piece there, and its clip lies in the black cue, which events and
    search skip."""
    from transforms.rows import cue_of

    frames = []
    for colour, seconds in [((230, 10, 10), 3.0), ((0, 0, 0), 10.0), ((10, 230, 10), 3.0)]:
        for i in range(round(seconds * 10)):
            frame = np.zeros((32, 48, 3), np.uint8)
            frame[...] = colour
            if any(colour):
                frame[12:20, (i * 4) % 40 : (i * 4) % 40 + 8] = 255
            frames.append(frame)
    path = write_video(tmp_path / "dark.mkv", frames, 10, "ffv1", "yuv444p")
    sampling = ClipSampling(16, 8.0, clips_per_shot=1)
    clips, info = _read(path, sampling)
    assert [(s.kind, s.start_s) for s in info.shots] == [
        ("start", 0.0), ("cut", 3.0), ("fade", 8.0), ("cut", 13.0)
    ]  # fmt: skip
    spans = [(float(a), float(b)) for a, b, _ in clips]
    assert spans == [(0.0, 2.0), (7.0, 9.0), (13.0, 15.0)]  # the plan afterwards: 4 clips
    assert [cue_of(info.cues, a, b) for a, b in spans] == [None, "black", None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tests.media import shot_corpus

    return shot_corpus(tmp_path_factory.mktemp("shots"), MEDIA)


@needs_media
def test_boundaries_before_the_horizon_are_final(corpus):
    """What ``ShotDetector.settled_starts`` says is settled is what the video ends with."""
    import av
    import cv2

    from transforms.shots import ShotDetector, detect_size

    for video in corpus:
        with av.open(str(video.path)) as container:
            stream = container.streams.video[0]
            detector = ShotDetector(float(stream.average_rate))
            said = []
            for frame in container.decode(stream):
                bgr = frame.to_ndarray(format="bgr24")
                small = cv2.resize(bgr, detect_size(frame.width, frame.height))
                detector.push(float(frame.time), small)
                horizon, starts = detector.settled_starts()
                said.append((float(frame.time), horizon, [t for t in starts if t < horizon]))
        final = [b.t for b in detector.boundaries()[1:]]
        for _, horizon, settled in said:
            assert settled == [t for t in final if t < horizon], video.path.name
        # The horizon trails the newest frame by 1.44 s here (36 frames at 25 fps: the
        # next dissolve centre, 12 frames back, less twice min_shot_s), more in a dissolve.
        lags = sorted(t - horizon for t, horizon, _ in said[30:])
        assert lags[len(lags) // 2] <= 1.5 and lags[-1] <= 2.0, video.path.name


@needs_media
def test_clips_in_the_shots_of_real_clips_joined_by_cuts_fades_and_dissolves(corpus):
    """The edited videos shot detection is measured on (``tests.media.shot_corpus``)."""
    sampling = ClipSampling(16, 8.0, clips_per_shot=2)
    for video in corpus:
        clips, info = _read(video.path, sampling)
        assert [s.kind for s in info.shots[1:]] == [b.kind for b in video.boundaries]
        assert [(a, b) for a, b, _ in clips] == _planned(video.path, sampling, info.shots)
        _check_clips_in_shots(clips, info.shots, sampling)


# --- the flag and a whole run ------------------------------------------------------------


def _config(*flags):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.options import IndexConfig

    args = ["--input", "x", "--output", "y", "--model", "movinet-a0-base", *flags]
    return IndexConfig.from_options(PipelineOptions(args), check_input=False)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--clips-per-shot", "0"], "--clips-per-shot must be >= 1, got 0"),
        (
            ["--clips-per-shot", "2", "--no-shots"],
            "--clips-per-shot places clips in shots: drop --no-shots",
        ),
        (
            ["--clips-per-shot", "2", "--max-clips-per-video", "4"],
            "--clips-per-shot and --max-clips-per-video: give one of them",
        ),
        (
            ["--clips-per-shot", "2", "--model", "movinet-a0-stream"],
            "--clips-per-shot: only for clip models; movinet-a0-stream is a stream model",
        ),
    ],
)
def test_bad_clips_per_shot_gives_one_line(flags, message):
    from beam_pipeline.options import ConfigError

    with pytest.raises(ConfigError) as error:
        _config(*flags)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_flag_reaches_the_sampling():
    config = _config("--clips-per-shot", "3", "--clip-stride-s", "1.0")
    assert config.sampling.clips_per_shot == 3 and config.sampling.stride_s == 1.0
    assert _config().sampling.clips_per_shot is None


def test_a_run_indexes_one_clip_per_shot(colour_spec_file, tmp_path):
    """``video-index index --clips-per-shot 1`` with the colour model (0.8 s clips)."""
    from tests.helpers import run_cli
    from video_index.query import connect

    archive = tmp_path / "archive"
    archive.mkdir()
    _coloured_shots(archive / "shots.mkv")
    out = tmp_path / "out"
    args = ["index", "--input", str(archive), "--output", str(out)]
    result = run_cli(*args, "--model", str(colour_spec_file), "--clips-per-shot", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    con = connect(str(out))
    shots = con.execute("SELECT shot_index, start_s, end_s FROM shots ORDER BY 1").fetchall()
    clips = con.execute("SELECT start_s, end_s, shot_index FROM clips ORDER BY 1").fetchall()
    assert [s[0] for s in shots] == [0, 1, 2, 3, 4]
    assert [c[2] for c in clips] == [0, 1, 2, 3, 4]  # one clip per shot, in order
    for start_s, end_s, index in clips:  # 0.8 s clips: inside a longer shot, else centred
        _, first_s, end_shot_s = shots[index]
        if end_shot_s - first_s >= 0.8:
            assert first_s - 0.05 <= start_s and end_s <= end_shot_s + 0.05
        else:
            assert abs((start_s + end_s) / 2 - (first_s + end_shot_s) / 2) <= 0.1
    assert con.execute("SELECT num_clips FROM videos").fetchone() == (5,)
