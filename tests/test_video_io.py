"""Decode (tier 1): timestamps, sampling, rotation, limits and the shared media."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import preprocess
from transforms.preprocess import FrameSpec, centre_crop, resize_dims
from transforms.reading import read_clips, read_frames
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
    with read_frames(str(video), 10, spec) as frames:
        sampled = [(t, frame_index(f)) for t, f in frames]
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
        assert reader.num_frames == 20 and reader.decode_errors == 0
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
    out = preprocess(frame, spec)
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
                outcomes[name] = (
                    sum(1 for _ in reader),
                    reader.decode_errors,
                    (reader.info.width, reader.info.height),
                )
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
    # The derived files declare SAR 64:51 (ffprobe): 340 stored columns show as 427.
    assert decoded["derived/rotated_meta_90.mp4"][2] == (256, 427)


def test_rotation_turns_the_pixels_upright(media_dir):
    """The 90-degree file shows the unrotated file's content turned a quarter.

    Its pixels are not square (SAR 64:51, ffprobe): 340x256 stored shows as 427x256
    before the turn, so the stored picture is widened first, then turned.
    """
    with VideoReader(str(media_dir / "derived/rotated_meta_90.mp4")) as reader:
        _, frame = next(iter(reader.frames()))
        shown = reader.to_rgb(frame)
        widened = frame.reformat(427, 256, "rgb24", interpolation="BILINEAR").to_ndarray()
    assert reader.info.sample_aspect_ratio == Fraction(64, 51)
    assert shown.shape == (427, 256, 3)
    np.testing.assert_array_equal(shown, np.rot90(widened, k=1))


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


# -- lossless fixtures from tests/media.py: frames that say which frame they are -------

from tests.media import (  # noqa: E402 - grouped with the tests that use them
    frame_index as index_of,
)
from tests.media import (  # noqa: E402
    write_raw_h264,
    write_test_video,
    write_vfr_test_video,
)


@pytest.mark.parametrize(
    "codec, suffix, pix_fmt, codec_name",
    [
        ("ffv1", ".mkv", "bgr0", "ffv1"),
        ("png", ".mov", "rgb24", "png"),
        ("qtrle", ".mov", "rgb24", "qtrle"),
        ("libx264", ".mp4", "yuv444p", "h264"),
    ],
)
def test_lossless_fixture_reads_back_exactly(tmp_path, codec, suffix, pix_fmt, codec_name):
    video = write_test_video(tmp_path / f"v{suffix}", 30, 10, size=(33, 17), codec=codec)
    with VideoReader(str(video)) as reader:
        info = reader.info
        decoded = [(t, index_of(reader.to_rgb(f))) for t, f in reader.frames()]
        assert reader.duration_s == 3 and reader.decode_errors == 0
    assert (info.width, info.height, info.fps, info.rotation) == (33, 17, 10.0, 0)
    assert (info.codec, info.pix_fmt, info.duration_s) == (codec_name, pix_fmt, 3.0)
    assert decoded == [(Fraction(i, 10), i) for i in range(30)]


@pytest.mark.parametrize(
    "fps, per_clip, expected",
    [
        # Downsampling 10 -> 5 fps: every other frame; 20 frames -> 10 -> (0,4) (4,8) (6,10).
        (5.0, 4, [[0, 2, 4, 6], [8, 10, 12, 14], [12, 14, 16, 18]]),
        # Upsampling 10 -> 20 fps: each frame twice (a tie goes to the earlier frame).
        (20.0, 8, [[0, 0, 1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6, 7, 7]]),
    ],
)
def test_clips_hold_the_resampled_source_frames(tmp_path, fps, per_clip, expected):
    video = write_test_video(tmp_path / "v.mkv", 20, 10)
    sampling = ClipSampling(frames_per_clip=per_clip, fps=fps)
    with read_clips(str(video), sampling, FrameSpec(size=24, resize_shorter=30)) as reader:
        clips = list(reader)
        sampled = reader.num_frames_sampled
    assert [[index_of(f) for f in clip.frames] for clip in clips][: len(expected)] == expected
    assert clips[0].start_s == 0 and clips[0].end_s == Fraction(per_clip) / Fraction(fps)
    assert sampled == clips[-1].end_s * Fraction(fps)
    # Each clip a fresh contiguous array: downstream keeps it while later ones decode.
    for a, b in zip(clips, clips[1:]):
        assert not np.shares_memory(a.frames, b.frames)
    assert all(c.frames.flags.c_contiguous and c.frames.flags.owndata for c in clips)
    assert clips[0].frames.shape == (per_clip, 24, 24, 3)


def test_variable_frame_rate_clip_times_are_target_times(tmp_path):
    times = [Fraction(0), Fraction(1, 10), Fraction(35, 100), Fraction(4, 10), Fraction(1)]
    video = write_vfr_test_video(tmp_path / "vfr.mkv", times)
    with read_clips(str(video), ClipSampling(4, 10.0), FrameSpec(16)) as reader:
        clips = list(reader)
        assert reader.duration_s == Fraction(16, 10)  # the last frame lasts its gap, 0.6 s
    # Targets 0, 0.1, ..., 1.5: nearest frames 0 1 1 2 3 3 3 3 4 4 4 4 4 4 4 4.
    assert [[index_of(f) for f in c.frames] for c in clips] == [
        [0, 1, 1, 2],
        [3, 3, 3, 3],
        [4, 4, 4, 4],
        [4, 4, 4, 4],
    ]
    assert [(c.start_s, c.end_s) for c in clips][-1] == (Fraction(12, 10), Fraction(16, 10))


@pytest.mark.parametrize(
    "rotation, shown_size, marker_corner",
    [
        (0, (64, 48), "top-left"),
        (90, (48, 64), "bottom-left"),  # a quarter turn counter-clockwise
        (-90, (48, 64), "top-right"),  # clockwise: a phone held upright
        (180, (64, 48), "bottom-right"),
    ],
)
def test_display_rotation_is_applied_to_the_pixels(tmp_path, rotation, shown_size, marker_corner):
    video = write_test_video(
        tmp_path / "r.mkv", 3, 10, size=(64, 48), rotation=rotation, marker=True
    )
    with VideoReader(str(video)) as reader:
        assert (reader.info.width, reader.info.height) == shown_size
        assert reader.info.rotation % 360 == rotation % 360  # FFmpeg says -180 for 180
        _, frame = next(iter(reader.frames()))
        shown = reader.to_rgb(frame)
        resized = reader.to_rgb(frame, shown_size[0] // 2, shown_size[1] // 2)
    for image in (shown, resized):
        height, width = image.shape[:2]
        assert (width, height) in (shown_size, (shown_size[0] // 2, shown_size[1] // 2))
        corners = {
            "top-left": image[0, 0],
            "top-right": image[0, -1],
            "bottom-left": image[-1, 0],
            "bottom-right": image[-1, -1],
        }
        assert {name for name, pixel in corners.items() if pixel.min() > 200} == {marker_corner}
        assert index_of(image) == 0


def test_decord_rotation_files_come_out_upright(media_dir):
    """Phone clips with -90/180/90 display matrices (different shots of a keyboard,
    so not pixel-comparable to video_0; checked by eye: the key labels read upright)."""
    expected = {"video_0.mov": 0, "video_90.mov": -90, "video_180.mov": -180, "video_270.mov": 90}
    for name, rotation in expected.items():
        with VideoReader(str(media_dir / "decord" / name)) as reader:
            _, frame = next(iter(reader.frames()))
            shown = reader.to_rgb(frame)
            stored = frame.to_ndarray(format="rgb24")
            info = reader.info
        assert info.rotation == rotation
        quarter = rotation // 90
        np.testing.assert_array_equal(shown, np.rot90(stored, k=quarter))
        assert (info.width, info.height) == (shown.shape[1], shown.shape[0])
        assert (info.width, info.height) == ((320, 568) if quarter % 2 else (568, 320))


def test_frames_without_pts_get_one_nominal_frame_each(tmp_path):
    video = write_raw_h264(tmp_path / "raw.h264", 50)
    with VideoReader(str(video)) as reader:
        assert reader.info.duration_s is None and reader.info.fps == 25.0  # demuxer default
        decoded = [(t, index_of(reader.to_rgb(f))) for t, f in reader.frames()]
    assert decoded == [(Fraction(i, 25), i) for i in range(50)]
    # Without a container duration, max_duration_s is checked on the decoded times.
    with pytest.raises(DecodeLimitExceeded, match="max_duration_s"):
        with VideoReader(str(video), DecodeLimits(max_duration_s=1.0)) as reader:
            list(reader.frames())


def test_not_a_video_fails_at_open_with_the_right_class(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    with pytest.raises(UnreadableVideo, match=r"^empty file \(0 bytes\)$"):
        VideoReader(str(empty)).__enter__()
    with pytest.raises(UnreadableVideo, match="Invalid data found when processing input"):
        VideoReader(str(text)).__enter__()
    # A video stream whose every packet is garbage: nothing decodable is unreadable.
    video = write_test_video(tmp_path / "v.mkv", 5, 10)
    with av.open(str(video)) as container:
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    data = bytearray(video.read_bytes())
    for pos, size in packets:
        data[pos : pos + size] = b"\xff" * size
    video.write_bytes(bytes(data))
    with pytest.raises(UnreadableVideo, match="no decodable video frames"):
        VideoReader(str(video)).__enter__()


def test_cover_art_is_not_a_video_stream(tmp_path):
    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as container:
        audio = container.add_stream("aac", rate=44100)
        cover = container.add_stream("png", rate=1)
        cover.width, cover.height, cover.pix_fmt = 16, 16, "rgb24"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        container.mux(cover.encode(picture))
        container.mux(cover.encode())
        for i in range(3):
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = 44100, i * 1024
            container.mux(audio.encode(samples))
        container.mux(audio.encode())
    with pytest.raises(NoVideoStream, match=r"streams: audio, video \(attached picture\)"):
        VideoReader(str(path)).__enter__()


# -- the shared media, file by file ----------------------------------------------------


def read_all(path, sampling=None, spec=None):
    sampling = sampling or ClipSampling(frames_per_clip=8, fps=10.0)
    with read_clips(str(path), sampling, spec or FrameSpec(32)) as reader:
        clips = list(reader)
        return reader, clips


def test_corrupt_and_truncated_files_keep_their_decodable_frames(media_dir):
    reader, clips = read_all(media_dir / "decord/corrupted.mp4")
    assert reader.num_frames == 49 and reader.decode_errors >= 1 and clips
    reader, clips = read_all(media_dir / "derived/truncated_faststart.mp4")
    assert reader.info.duration_s == 6.0  # what the container promised
    assert 80 <= reader.num_frames <= 90 and reader.decode_errors >= 1
    assert 2.8 < reader.duration_s < 3.3  # what was there
    assert clips[-1].end_s <= reader.duration_s + Fraction(1, 10)
    reader, _ = read_all(media_dir / "derived/untruncated_faststart_ref.mp4")
    assert reader.num_frames == 168 and reader.decode_errors == 0


def test_gif_frame_times_and_rate(media_dir):
    with VideoReader(str(media_dir / "moviepy/pigs_in_a_polka.gif")) as reader:
        times = [t for t, _ in reader.frames()]
        info = reader.info
    assert (info.fps, info.width, info.height, info.pix_fmt) == (10.0, 314, 273, "bgra")
    assert times == [Fraction(i, 10) for i in range(30)]
    _, clips = read_all(media_dir / "moviepy/pigs_in_a_polka.gif", spec=FrameSpec(64))
    assert len(clips) == 4 and clips[0].frames.shape == (8, 64, 64, 3)


def test_grayscale_comes_out_as_equal_rgb_channels(media_dir):
    _, clips = read_all(media_dir / "derived/gray_h264.mp4")
    frames = clips[0].frames.astype(int)
    assert np.abs(frames[..., 0] - frames[..., 1]).max() <= 1
    assert np.abs(frames[..., 1] - frames[..., 2]).max() <= 1
    assert frames.std() > 10  # a picture, not a flat grey


def test_alpha_is_dropped_not_composited(media_dir):
    # VP9 alpha: FFmpeg's native decoder ignores the alpha layer; under it is black.
    with VideoReader(str(media_dir / "moviepy/transparent.webm")) as reader:
        _, frame = next(iter(reader.frames()))
        rgb = reader.to_rgb(frame)
    assert rgb.shape == (200, 200, 3) and rgb[:20, :20].max() < 16
    assert np.median(rgb[95:105, 95:105, 0]) > 150  # the red dot in the middle
    # GIF transparency: the colour the decoder keeps under transparent pixels (white).
    with VideoReader(str(media_dir / "moviepy/pigs_in_a_polka.gif")) as reader:
        _, frame = next(iter(reader.frames()))
        alpha = frame.to_ndarray(format="rgba")[..., 3]
        rgb = reader.to_rgb(frame)
    assert (alpha == 0).any() and (rgb[alpha == 0] == 255).all()


@pytest.mark.parametrize(
    "name, stored, sar, frames, clip_frames",
    [
        # Sample aspect ratios as ffprobe gives them: the derived files were scaled
        # from a 1024:765 source keeping its display aspect, so their pixels are not
        # square; the displayed width is the stored one times the SAR, rounded.
        ("derived/extreme_aspect_640x64.mp4", (640, 64), Fraction(1, 6), 84, None),
        ("derived/single_frame.mp4", (340, 256), Fraction(64, 51), 1, [0] * 8),
        ("derived/two_frames_mjpeg.avi", (340, 256), Fraction(64, 51), 2, None),
        ("moviepy/-video-with-dash-.mp4", (1, 1), Fraction(1), 5, None),
        ("derived/odd_171x97.webm", (171, 97), Fraction(18, 19), 84, None),
        ("derived/portrait_144x256.mp4", (144, 256), Fraction(16, 15), 84, None),
    ],
)
def test_odd_shapes_and_tiny_videos(media_dir, name, stored, sar, frames, clip_frames):
    reader, clips = read_all(media_dir / name)
    assert reader.info.sample_aspect_ratio == sar
    assert (reader.info.width, reader.info.height) == (round(stored[0] * sar), stored[1])
    assert reader.num_frames == frames
    assert all(c.frames.shape == (8, 32, 32, 3) and c.frames.dtype == np.uint8 for c in clips)
    if frames * 10 / (reader.info.fps or 10) < 8:
        assert len(clips) == 1  # shorter than one clip: one looped clip


def test_short_videos_loop_their_frames(media_dir):
    (clip,) = read_all(media_dir / "derived/two_frames_mjpeg.avi", ClipSampling(8, 28.0))[1]
    frames = clip.frames.astype(int)
    first, second = frames[0], frames[1]
    assert np.abs(first - second).mean() > 0.5  # two different pictures...
    for i in range(8):  # ...alternating: 0 1 0 1 0 1 0 1
        np.testing.assert_array_equal(frames[i], first if i % 2 == 0 else second)
    (clip,) = read_all(media_dir / "moviepy/-video-with-dash-.mp4", ClipSampling(8, 1.0))[1]
    assert clip.start_s == 0 and clip.end_s == 5  # five 1-second frames, looped to 8


def opencv_preprocess(frame: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """An independent resize to hold swscale's against: OpenCV's ``INTER_AREA`` when
    shrinking (it averages, as swscale's widened bilinear kernel does), ``INTER_LINEAR``
    when enlarging, then the centre crop."""
    import cv2

    height, width = frame.shape[:2]
    new_w, new_h = resize_dims(width, height, spec)
    interpolation = cv2.INTER_AREA if new_w < width else cv2.INTER_LINEAR
    return centre_crop(cv2.resize(frame, (new_w, new_h), interpolation=interpolation), spec.size)


def test_resize_in_the_decoder_matches_the_numpy_path(media_dir):
    spec = FrameSpec(size=224, resize_shorter=256)
    with VideoReader(str(media_dir / "moviepy/chaplin.mp4")) as reader:
        _, frame = next(iter(reader.frames()))
        width, height = resize_dims(reader.info.width, reader.info.height, spec)
        in_decoder = centre_crop(reader.to_rgb(frame, width, height), spec.size)
        after = opencv_preprocess(reader.to_rgb(frame), spec)
    difference = np.abs(in_decoder.astype(int) - after.astype(int))
    assert difference.mean() < 3.0, difference.mean()


def test_rss_stays_flat_over_ten_minutes_of_video(tmp_path):
    """Peak RSS (decoder buffers included, which tracemalloc cannot see) of reading
    every clip of a 10-minute video is that of reading a 30-second one."""
    import subprocess
    import sys

    child = (
        "import resource, sys\n"
        "from transforms.reading import read_clips\n"
        "from transforms.preprocess import FrameSpec\n"
        "from transforms.sampling import ClipSampling\n"
        "with read_clips(sys.argv[1], ClipSampling(16, 10.0), FrameSpec(32)) as reader:\n"
        "    clips = sum(1 for _ in reader)\n"
        "print(clips, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    repo = Path(__file__).resolve().parents[1]

    def peak_kib(seconds: int) -> int:
        video = write_test_video(tmp_path / f"{seconds}.mp4", seconds * 10, 10, codec="mpeg4")
        out = subprocess.run(
            [sys.executable, "-c", child, str(video)],
            capture_output=True,
            text=True,
            cwd=repo,
            check=True,
        )
        clips, rss = map(int, out.stdout.split())
        assert clips == seconds * 10 // 16 + (seconds * 10 % 16 > 0)
        return rss

    short, long = peak_kib(30), peak_kib(600)
    # Holding the decoded frames would add ~55 MB, the clips ~18 MB.
    assert long < short + 10 * 1024, (short, long)
