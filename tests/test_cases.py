"""The files people actually have (../shared/cases): each one's truth, as its README gives it.

The truth is ffprobe's and a full ``ffmpeg -i FILE -f null -`` decode's; each test
names the kind of file it stands for. Decode-tier tests read the files in place; the
end-to-end tests index the folder with the tiny colour model.
"""

from __future__ import annotations

import json
import shutil
from fractions import Fraction

import numpy as np
import pytest

from tests.helpers import SHARED, run_cli, table_rows
from transforms.preprocess import FrameSpec, centre_crop
from transforms.reading import read_clips
from transforms.sampling import ClipSampling
from transforms.video_io import VideoReader, measure_length

CASES = SHARED / "cases"
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"{CASES} not found")

# I3D's clip shape (25 fps, 64 frames = 2.56 s) at a small frame size.
I3D_LIKE = ClipSampling(frames_per_clip=64, fps=25.0)
SMALL = FrameSpec(size=32)


def read(name: str, sampling: ClipSampling = I3D_LIKE):
    with read_clips(str(CASES / name), sampling, SMALL) as reader:
        clips = list(reader)
    return reader, clips


def assert_clips_span(clips, duration_s: float) -> None:
    """Clips in order, from the first frame to the end of the stream."""
    starts = [float(c.start_s) for c in clips]
    assert starts == sorted(starts)
    span = float(clips[-1].end_s - clips[0].start_s)
    assert span == pytest.approx(duration_s, abs=1 / 25 + 1e-9)


@needs_cases
def test_the_stream_a_player_shows_not_the_thumbnail_track():
    """Kind 1: stream 0 is a 1-frame MJPEG still, stream 1 the default H.264 video."""
    reader, clips = read("thumbnail_track_first.mp4")
    assert (reader.info.stream_index, reader.info.codec) == (1, "h264")
    assert reader.num_frames == 240 and float(reader.duration_s) == 8.0
    assert (reader.info.width, reader.info.height) == (455, 256)  # 340x256, SAR 1024:765
    assert_clips_span(clips, 8.0)


@needs_cases
def test_non_square_pixels_are_shown_unsqueezed():
    """Kind 2: 170x256 stored, SAR 2:1, displayed 340x256; the model sees 340x256."""
    spec = FrameSpec(size=224, resize_shorter=256)
    with read_clips(str(CASES / "anamorphic_sar_2_1.mp4"), I3D_LIKE, spec) as reader:
        clips = list(reader)
    assert reader.info.sample_aspect_ratio == Fraction(2)
    assert (reader.info.width, reader.info.height) == (340, 256)
    assert reader.num_frames == 180 and float(reader.duration_s) == 6.0
    assert_clips_span(clips, 6.0)
    # The first clip frame is the stored picture widened 2x, then cropped: compare
    # with widening it by repeating columns (what 2:1 pixels mean), which the squeezed
    # picture cannot match.
    with VideoReader(str(CASES / "anamorphic_sar_2_1.mp4")) as video:
        _, frame = next(iter(video.frames()))
        stored = frame.to_ndarray(format="rgb24")
    widened = centre_crop(np.repeat(stored, 2, axis=1), 224)
    squeezed = centre_crop(np.pad(stored, ((0, 0), (0, 54), (0, 0)), mode="edge"), 224)
    first = clips[0].frames[0].astype(int)
    assert np.abs(first - widened).mean() < 4
    assert np.abs(first - squeezed).mean() > 4 * np.abs(first - widened).mean()


@needs_cases
def test_a_timeline_that_jumps_backwards_is_rebased():
    """Kind 3: two 4 s MPEG-TS recordings appended; ffmpeg plays 8 s, 240 frames."""
    reader, clips = read("ts_two_recordings_concatenated.ts")
    assert reader.num_frames == 240 and float(reader.duration_s) == 8.0
    assert reader.discontinuities == 1
    assert_clips_span(clips, 8.0)
    # Every frame has its own time: none collapsed onto one instant.
    with VideoReader(str(CASES / "ts_two_recordings_concatenated.ts")) as video:
        times = [t for t, _ in video.frames()]
    assert len(set(times)) == 240
    assert all(b - a == Fraction(1, 30) for a, b in zip(times, times[1:]))


@needs_cases
def test_a_track_header_that_lies_about_length():
    """Kind 4: header says 0.52 s, the packets play 8.0 s; the cap spreads clips over 8 s."""
    capped = ClipSampling(frames_per_clip=64, fps=25.0, max_clips=2)
    reader, clips = read("track_header_says_0.52s.mp4", capped)
    assert reader.info.duration_s == pytest.approx(0.52, abs=0.01)  # what the header says
    assert reader.num_frames == 240 and float(reader.duration_s) == 8.0
    assert len(clips) == 2
    assert clips[0].start_s == 0 and float(clips[-1].end_s) == pytest.approx(8.0, abs=1 / 25)
    length = measure_length(str(CASES / "track_header_says_0.52s.mp4"))
    assert (length.num_frames, length.duration_s) == (240, 8)


@needs_cases
def test_a_local_name_with_url_characters_is_opened_as_that_name():
    """Kind 5: ``double_colon_a::b.mp4`` is a file name, not an fsspec URL chain."""
    reader, clips = read("double_colon_a::b.mp4")
    assert reader.num_frames == 90 and float(reader.duration_s) == 3.0
    assert_clips_span(clips, 3.0)


@needs_cases
def test_indexing_the_cases_folder(tmp_path, colour_spec_file):
    """Every case file indexed with its truth in videos/, exit 0, all tables readable."""
    out = tmp_path / "out"
    result = run_cli(
        "index",
        "--input",
        str(CASES),
        "--output",
        str(out),
        "--model",
        str(colour_spec_file),
        "--max-clips-per-video",
        "2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    videos = {r["video_id"]: r for r in table_rows(out, "videos")}
    truth = {  # duration_s, num_frames, width, height, stream_index, discontinuities
        "thumbnail_track_first.mp4": (8.0, 240, 455, 256, 1, 0),
        "anamorphic_sar_2_1.mp4": (6.0, 180, 340, 256, 0, 0),
        "ts_two_recordings_concatenated.ts": (8.0, 240, 455, 256, 0, 1),
        "track_header_says_0.52s.mp4": (8.0, 240, 455, 256, 0, 0),
        "double_colon_a::b.mp4": (3.0, 90, 455, 256, 0, 0),
    }
    assert set(videos) == set(truth)
    for name, expected in truth.items():
        row = videos[name]
        got = tuple(
            row[c]
            for c in ("duration_s", "num_frames", "width", "height")
            + ("stream_index", "discontinuities")
        )
        assert got == expected, name
        assert row["codec"] == "h264"
    assert videos["anamorphic_sar_2_1.mp4"]["sample_aspect_ratio"] == "2:1"
    clips = table_rows(out, "clips")
    for name, (duration, *_) in truth.items():
        ends = sorted(c["end_s"] for c in clips if c["video_id"] == name)
        starts = sorted(c["start_s"] for c in clips if c["video_id"] == name)
        # Times are on the file's own timeline (the TS starts at 1.47 s).
        assert ends[-1] - starts[0] == pytest.approx(duration, abs=1 / 10), name
    # Nothing failed, and failures/ is still a table every reader opens.
    assert len(table_rows(out, "failures")) == 0
    # The README is not a video: left out by the folder filter, and said so.
    record = json.loads(next((out / "runs").glob("*.json")).read_text())
    assert record["counts"]["left_out_by_extension"] == 1
    assert record["left_out_examples"] == ["README.md"]
    assert "1 file in the folder was left out by --extensions (e.g. README.md)" in result.stdout


@needs_cases
def test_a_name_that_is_not_utf8_is_indexed_beside_a_normal_one(tmp_path, colour_spec_file):
    """Kind 5: Latin-1 ``caf\\xe9_pool.mp4`` (old cameras, Windows archives) in a folder."""
    archive = tmp_path / "archive"
    archive.mkdir()
    latin1 = bytes(archive) + b"/caf\xe9_pool.mp4"
    shutil.copyfile(CASES / "double_colon_a::b.mp4", latin1)
    shutil.copyfile(CASES / "double_colon_a::b.mp4", archive / "normal.mp4")
    out = tmp_path / "out"
    result = run_cli(
        "index", "--input", str(archive), "--output", str(out), "--model", str(colour_spec_file)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    videos = {r["video_id"]: r for r in table_rows(out, "videos")}
    assert set(videos) == {"normal.mp4", "caf%E9_pool.mp4"}
    escaped = videos["caf%E9_pool.mp4"]
    assert escaped["uri"] == "file://" + str(archive) + "/caf%E9_pool.mp4"
    assert (
        escaped["num_frames"] == 90 and escaped["size"] == (archive / "normal.mp4").stat().st_size
    )
    # The escaped uri round-trips to the real path.
    from video_index.storage import local_path

    assert local_path(escaped["uri"]).encode("utf-8", "surrogateescape") == latin1

    # Given as --input itself: indexed too, no traceback.
    out2 = tmp_path / "out2"
    result = run_cli(
        "index",
        "--input",
        latin1.decode("utf-8", "surrogateescape"),
        "--output",
        str(out2),
        "--model",
        str(colour_spec_file),
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (row,) = table_rows(out2, "videos")
    assert row["video_id"] == "caf%E9_pool.mp4" and row["num_frames"] == 90
