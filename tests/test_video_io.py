"""Decode (tier 1): timestamps, sampling, rotation, limits and the shared media."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from transforms.clips import read_clips, read_frames
from transforms.preprocess import FrameSpec, centre_crop, preprocess_frame, resize_dims
from transforms.sampling import ClipSampling, clip_windows, resample, sliding_windows
from transforms.video_io import (
    DecodeLimitExceeded,
    DecodeLimits,
    NoVideoStream,
    UnreadableVideo,
    VideoReader,
)


def write_indexed_video(path: Path, times: list[Fraction], size=(64, 48)) -> Path:
    """Lossless frames whose grey level is their index x 8, at the given pts (VFR ok)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=1000)
        stream.time_base = Fraction(1, 1000)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv444p"
        for index, t in enumerate(times):
            rgb = np.full((size[1], size[0], 3), (index * 8) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = int(t * 1000)
            frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / 8))


def test_real_timestamps_of_a_variable_rate_video(tmp_path):
    times = [Fraction(0), Fraction(1, 10), Fraction(3, 10), Fraction(7, 10), Fraction(8, 10)]
    video = write_indexed_video(tmp_path / "vfr.mkv", times)
    with VideoReader(str(video)) as reader:
        decoded = [(t, frame_index(reader.to_rgb(f))) for t, f in reader.frames()]
    assert decoded == list(zip(times, range(5)))


def test_resampling_picks_the_nearest_frame_by_time(tmp_path):
    times = [Fraction(0), Fraction(1, 10), Fraction(3, 10), Fraction(7, 10), Fraction(8, 10)]
    video = write_indexed_video(tmp_path / "vfr.mkv", times)
    spec = FrameSpec(size=16)
    with VideoReader(str(video)) as reader:
        sampled = [(t, frame_index(f)) for t, f in read_frames(reader, 10, spec)]
    # Targets every 0.1 s; 0.2 s is equally near 0.1 and 0.3 (the earlier wins);
    # 0.4 is nearest 0.3, 0.5 is a tie (0.3), 0.6 is nearest 0.7.
    assert sampled == [
        (Fraction(k, 10), index) for k, index in enumerate([0, 1, 1, 2, 2, 2, 3, 3, 4])
    ]


def test_resample_is_pure_and_rejects_time_going_backwards():
    frames = [(Fraction(i, 30), i) for i in range(30)]
    expected = [0, 3, 6, 9, 12, 15, 18, 21, 24, 27]
    assert [s.frame for s in resample(frames, 10)] == expected
    assert [s.frame for s in resample(frames, 10)] == expected  # no hidden state
    # 30 -> 25 fps: the nearest source frame to each k/25.
    assert [s.frame for s in resample(frames, 25)][:6] == [0, 1, 2, 4, 5, 6]
    with pytest.raises(ValueError, match="backwards"):
        list(resample([(Fraction(1), 0), (Fraction(0), 1)], 10))


@pytest.mark.parametrize("num_frames", [1, 5, 8, 9, 16, 17, 30, 64])
@pytest.mark.parametrize("stride", [1, 3, 8])
def test_streaming_windows_agree_with_the_plan_and_cover_every_frame(num_frames, stride):
    windows = list(sliding_windows(range(num_frames), 8, stride))
    plan = clip_windows(num_frames, 8, stride)
    assert [(w.start, w.end) for w in windows] == plan
    covered = {i for w in windows for i in w.frames}
    assert covered == set(range(num_frames))
    assert all(len(w.frames) == 8 for w in windows)


def test_short_video_policies():
    (loop,) = sliding_windows(range(3), 8, 8, short_video="loop")
    (hold,) = sliding_windows(range(3), 8, 8, short_video="repeat_last")
    assert loop.frames == (0, 1, 2, 0, 1, 2, 0, 1)
    assert hold.frames == (0, 1, 2, 2, 2, 2, 2, 2)


def test_clips_hold_the_right_frames_and_times(tmp_path):
    times = [Fraction(i, 10) for i in range(20)]
    video = write_indexed_video(tmp_path / "cfr.mkv", times)
    sampling = ClipSampling(frames_per_clip=8, fps=10.0, stride_s=0.6)
    with read_clips(str(video), sampling, FrameSpec(size=16)) as reader:
        clips = list(reader)
        assert reader.num_frames_decoded == 20 and reader.decode_errors == 0
        assert reader.duration_s == 2
    assert [(c.start_s, c.end_s) for c in clips] == [
        (Fraction(0), Fraction(8, 10)),
        (Fraction(6, 10), Fraction(14, 10)),
        (Fraction(12, 10), Fraction(2)),
    ]
    assert [frame_index(f) for f in clips[1].frames] == list(range(6, 14))
    assert clips[0].frames.dtype == np.uint8 and clips[0].frames.shape == (8, 16, 16, 3)
    assert clips[0].frames.flags.c_contiguous


def test_preprocess_any_aspect():
    spec = FrameSpec(size=224, resize_shorter=256)
    assert resize_dims(640, 64, spec) == (2560, 256)
    assert resize_dims(1, 1, spec) == (256, 256)
    assert resize_dims(144, 256, FrameSpec(size=172)) == (172, 306)
    frame = np.zeros((64, 640, 3), np.uint8)
    frame[:, 310:330] = 255  # a bright bar in the middle survives the centre crop
    out = preprocess_frame(frame, spec)
    assert out.shape == (224, 224, 3) and out[:, 112].min() == 255 and out[:, 0].max() == 0
    assert centre_crop(np.arange(5 * 5 * 3, dtype=np.uint8).reshape(5, 5, 3), 1)[0, 0, 0] == 36


def test_limits_fail_the_video(tmp_path):
    video = write_indexed_video(tmp_path / "v.mkv", [Fraction(i, 10) for i in range(30)])
    with pytest.raises(DecodeLimitExceeded, match="max_pixels_per_frame"):
        with VideoReader(str(video), DecodeLimits(max_pixels_per_frame=100)):
            pass
    sampling = ClipSampling(frames_per_clip=4, fps=10.0)
    with pytest.raises(DecodeLimitExceeded, match="max_duration_s"):
        with read_clips(str(video), sampling, FrameSpec(8), DecodeLimits(max_duration_s=1.5)) as r:
            list(r)
    with pytest.raises(DecodeLimitExceeded, match="max_decode_s"):
        with read_clips(str(video), sampling, FrameSpec(8), DecodeLimits(max_decode_s=1e-9)) as r:
            list(r)


SHARED_FAILURES = {
    "moviepy/result.webm": (UnreadableVideo, "empty file"),
    "derived/not_a_video.mp4": (UnreadableVideo, "Invalid data"),
    "derived/audio_only.mp4": (NoVideoStream, "no video stream (streams: audio)"),
    "derived/truncated_moov_at_end.mp4": (UnreadableVideo, "moov atom not found"),
}


def test_every_shared_file_decodes_or_fails_clearly(media_dir):
    sampling = ClipSampling(frames_per_clip=16, fps=25.0)
    outcomes = {}
    for path in sorted(media_dir.rglob("*")):
        if not path.is_file() or path.suffix == ".tsv":
            continue
        name = str(path.relative_to(media_dir))
        try:
            with read_clips(str(path), sampling, FrameSpec(size=32)) as reader:
                outcomes[name] = (sum(1 for _ in reader), reader.decode_errors, reader.display_size)
        except Exception as error:  # noqa: BLE001 - collected and checked below
            outcomes[name] = error
    for name, (kind, text) in SHARED_FAILURES.items():
        assert isinstance(outcomes[name], kind) and text in str(outcomes[name]), (
            name,
            outcomes[name],
        )
    decoded = {n: o for n, o in outcomes.items() if n not in SHARED_FAILURES}
    assert all(isinstance(o, tuple) and o[0] >= 1 for o in decoded.values()), decoded
    # Corrupt and truncated files keep their decodable frames.
    assert decoded["decord/corrupted.mp4"][1] >= 1
    # Rotation metadata: 90 and 270 degrees swap the displayed width and height.
    assert decoded["decord/video_90.mov"][2] == (320, 568)
    assert decoded["decord/video_270.mov"][2] == (320, 568)
    assert decoded["decord/video_180.mov"][2] == (568, 320)
    assert decoded["derived/rotated_meta_90.mp4"][2] == (256, 340)


def test_rotation_turns_the_pixels_upright(media_dir):
    """The 90-degree file shows the unrotated file's content turned a quarter."""
    with VideoReader(str(media_dir / "derived/rotated_meta_90.mp4")) as reader:
        _, frame = next(iter(reader.frames()))
        shown = reader.to_rgb(frame)
        stored = frame.to_ndarray(format="rgb24")
    assert shown.shape == (340, 256, 3)
    np.testing.assert_array_equal(shown, np.rot90(stored, k=1))


def test_avi_with_out_of_order_pts_gets_monotonic_times(media_dir):
    with VideoReader(str(media_dir / "mmaction2/test.avi")) as reader:
        times = [t for t, _ in reader.frames()]
    # The pts go 1 2 4 3 5 7 6 ...; past the first inversion the dts (in display
    # order) are used, as ffmpeg's best-effort timestamps do: one frame early, one
    # repeat, then even steps to the end.
    steps = [b - a for a, b in zip(times, times[1:])]
    assert steps.count(Fraction(0)) == 1 and steps.count(Fraction(2, 25)) == 1
    assert times[-1] - times[0] == Fraction(len(times) - 1, 25)


def test_memory_is_flat_in_video_length(tmp_path):
    """Reading clips of a long video holds no more than reading a short one."""
    import tracemalloc

    def peak(seconds: int) -> int:
        video = write_indexed_video(
            tmp_path / f"{seconds}.mkv",
            [Fraction(i, 25) for i in range(seconds * 25)],
            size=(32, 24),
        )
        tracemalloc.start()
        with read_clips(str(video), ClipSampling(16, 25.0), FrameSpec(16)) as reader:
            count = sum(1 for _ in reader)
        peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert count >= seconds * 25 // 16
        return peak_bytes

    short, long = peak(4), peak(60)
    assert long < short * 1.5 + 200_000, (short, long)
