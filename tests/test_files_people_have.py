"""Kinds of file from public reports (``../shared/open-cases``): each kind, not the file.

Recordings with a pause in their timestamps (screen recorders, motion-triggered CCTV,
dash-cams), at several pause lengths and frame rates; HDR video (PQ and HLG, HEVC and
H.264 10-bit) as phones record it. Every test here was seen
failing before its fix.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tests.helpers import SHARED
from tests.media import write_hdr_video, write_vfr_test_video
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


# --- HDR ---------------------------------------------------------------------------------


def _sdr_scene(height=96, width=128, frames=3) -> np.ndarray:
    """A picture with dark, mid and bright areas and saturated patches (uint8 RGB)."""
    y, x = np.mgrid[0:height, 0:width]
    scene = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), 255 - x * 200 // width], -1)
    scene[8:40, 8:40] = (200, 40, 30)
    scene[56:88, 80:120] = (30, 160, 60)
    scene[8:40, 88:120] = (250, 250, 250)
    return np.repeat(scene[None].astype(np.uint8), frames, axis=0)


@pytest.mark.parametrize(
    "transfer, codec",
    [("pq", "libx265"), ("hlg", "libx265"), ("pq", "libx264"), ("hlg", "libx264")],
)
def test_hdr_is_tone_mapped_to_the_sdr_picture(tmp_path, transfer, codec):
    from transforms.video_io import VideoReader

    scene = _sdr_scene()
    path = write_hdr_video(tmp_path / f"{transfer}.mp4", scene, transfer, codec)
    with VideoReader(str(path)) as reader:
        info = reader.info
        frame = next(reader.frames()).frame
        shown = reader.to_rgb(frame).astype(int)
    assert info.color_transfer == {"pq": "smpte2084", "hlg": "arib-std-b67"}[transfer]
    truth = scene[0].astype(int)
    # Mid tones as the SDR source has them; highlights compressed, never washed out.
    assert np.abs(shown.mean((0, 1)) - truth.mean((0, 1))).max() < 20, shown.mean((0, 1))
    assert shown.std() > 0.8 * truth.std()
    assert np.corrcoef(shown.ravel(), truth.ravel())[0, 1] > 0.97


def test_the_open_case_hdr10_file():
    from transforms.video_io import VideoReader

    path = OPEN_CASES / "hdr10_pq_bt2020_hevc10.mp4"
    source = SHARED / "media" / "mmaction2" / "test.mp4"
    if not path.exists() or not source.exists():
        pytest.skip("../shared/open-cases or ../shared/media is not here")
    with VideoReader(str(source)) as reader:
        truth = reader.to_rgb(next(reader.frames()).frame).astype(int)
    with VideoReader(str(path)) as reader:
        assert reader.info.color_transfer == "smpte2084"
        shown = reader.to_rgb(next(reader.frames()).frame).astype(int)
    # Washed out untreated: mean RGB 85.7, 92.1, 96.9 against the source's 90.8, 126.3, 132.3.
    assert np.abs(shown.mean((0, 1)) - truth.mean((0, 1))).max() < 15, shown.mean((0, 1))
    assert shown.std() > 0.85 * truth.std()


# --- limits that measure what decodes ----------------------------------------------------


def _lying_mkv(path, claimed_s: float):
    """A 3 s FFV1 Matroska whose Segment Info says it lasts ``claimed_s``."""
    import struct

    from tests.media import write_test_video

    write_test_video(path, 75, 25, codec="ffv1")
    data = bytearray(path.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Duration, an 8-byte float in TimecodeScale (1 ms) units
    assert at > 0
    data[at + 3 : at + 11] = struct.pack(">d", claimed_s * 1000)
    path.write_bytes(bytes(data))
    return path


def test_a_container_that_lies_about_its_length_is_judged_by_what_decodes(tmp_path):
    import av

    from transforms.video_io import DecodeLimits, VideoReader

    path = _lying_mkv(tmp_path / "lying.mkv", 400_000.0)
    with av.open(str(path)) as container:
        assert container.duration / av.time_base > 399_000  # the lie is there
    with VideoReader(str(path), limits=DecodeLimits()) as reader:
        frames = sum(1 for _ in reader.frames())
        assert frames == 75 and float(reader.duration_s) == pytest.approx(3.0, abs=0.05)


def test_decoding_time_is_bounded_by_the_videos_own_length(tmp_path, monkeypatch):
    import itertools
    import types

    import transforms.video_io as video_io
    from tests.media import write_test_video
    from transforms.video_io import DecodeLimits, DecodeTimeLimitExceeded, VideoReader

    path = write_test_video(tmp_path / "v.mkv", 75, 25, codec="ffv1")  # 3 s
    # A slow machine, simulated: every clock reading is one second later.
    clock = itertools.count()
    monkeypatch.setattr(video_io, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    # The default bound: max(min_decode_s, max_decode_ratio x the length decoded so far).
    limits = DecodeLimits(min_decode_s=10.0)
    assert limits.max_decode_ratio == 10.0 and limits.max_decode_s == 1800.0
    with pytest.raises(DecodeTimeLimitExceeded, match="s of video, over max_decode_ratio=10"):
        with VideoReader(str(path), limits=limits) as reader:
            sum(1 for _ in reader.frames())
    roomy = DecodeLimits(min_decode_s=10.0, max_decode_ratio=1000.0)
    with VideoReader(str(path), limits=roomy) as reader:
        assert sum(1 for _ in reader.frames()) == 75
