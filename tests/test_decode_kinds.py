"""The kinds of file behind ../shared/cases, in their general form (files made here).

Other containers and codecs than the handed files: several video streams in Matroska,
non-square pixels in MPEG-PS and MP4, MPEG-PS and -TS recordings appended, a
transport stream cut mid-GOP, names and URIs, folder filters, empty tables.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from transforms.manifest import ALL_FILES, list_input
from transforms.records import Failure, VideoRef
from transforms.video_io import VideoReader, measure_length
from video_index.storage import escape_local_path, escape_name, filesystem, local_path
from video_index.table import SPECS, ensure_tables


def _encode(container, stream, num_frames: int, first_value: int = 0) -> None:
    for i in range(num_frames):
        picture = np.full((stream.height, stream.width, 3), (first_value + 7 * i) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = i
        frame.time_base = Fraction(1, 25)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _video(path: Path, codec: str, num_frames: int, fmt=None, sar=None, options=None) -> Path:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25, options=options or {})
        stream.width, stream.height = 64, 48
        stream.pix_fmt = "yuv420p"
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        _encode(container, stream, num_frames)
    return path


def _read(path: Path) -> VideoReader:
    with VideoReader(str(path)) as reader:
        times = [t for t, _ in reader.frames()]
    reader.times = times
    return reader


# -- kind 1: which video stream ---------------------------------------------------------


def test_a_moving_default_stream_wins_over_a_still_listed_first(tmp_path):
    path = tmp_path / "two.mkv"
    with av.open(str(path), "w") as container:
        still = container.add_stream("ffv1", rate=25)
        still.width, still.height = 32, 24
        video = container.add_stream("ffv1", rate=25)
        video.width, video.height = 64, 48
        for stream in (still, video):
            stream.pix_fmt = "yuv420p"
        still.disposition, video.disposition = 0, av.stream.Disposition.default
        _encode(container, still, 1)
        _encode(container, video, 20)
    reader = _read(path)
    assert (reader.info.stream_index, reader.info.codec) == (1, "ffv1")
    assert reader.frames_decoded == 20 and (reader.info.width, reader.info.height) == (64, 48)


def test_a_moving_stream_wins_over_a_default_still(tmp_path):
    """A 1-frame still never over a moving stream, whatever the flags say."""
    path = tmp_path / "poster_default.mkv"
    with av.open(str(path), "w") as container:
        still = container.add_stream("ffv1", rate=25)
        video = container.add_stream("ffv1", rate=25)
        for stream, size in ((still, (64, 48)), (video, (32, 24))):
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
        still.disposition, video.disposition = av.stream.Disposition.default, 0
        _encode(container, still, 1)
        _encode(container, video, 12)
    assert measure_length(str(path)).num_frames == 12
    # Matroska keeps no frame count: the still is known from its one-frame length.
    reader = _read(path)
    assert reader.info.stream_index == 1 and reader.frames_decoded == 12


# -- kind 2: non-square pixels ----------------------------------------------------------


@pytest.mark.parametrize(
    "name, codec, fmt",
    [("sar.mp4", "libx264", None), ("sar.mpg", "mpeg2video", "mpeg")],
)
def test_non_square_pixels_are_widened(tmp_path, name, codec, fmt):
    reader = _read(_video(tmp_path / name, codec, 10, fmt=fmt, sar=Fraction(4, 3)))
    assert reader.info.sample_aspect_ratio == Fraction(4, 3)
    assert (reader.info.width, reader.info.height) == (85, 48)  # 64 * 4/3 = 85.3
    with VideoReader(str(tmp_path / name)) as again:
        _, frame = next(iter(again.frames()))
        assert again.to_rgb(frame).shape == (48, 85, 3)


# -- kind 3: timelines that jump backwards --------------------------------------------


@pytest.mark.parametrize(
    "name, codec, fmt",
    [("appended.ts", "libx264", "mpegts"), ("appended.mpg", "mpeg2video", "mpeg")],
)
def test_appended_recordings_play_in_order(tmp_path, name, codec, fmt):
    one = _video(tmp_path / f"one{Path(name).suffix}", codec, 50, fmt=fmt)
    two = _video(tmp_path / f"two{Path(name).suffix}", codec, 25, fmt=fmt)
    joined = tmp_path / name
    joined.write_bytes(one.read_bytes() + two.read_bytes())
    reader = _read(joined)
    assert reader.info.ts_discont
    assert reader.frames_decoded == 75 and reader.discontinuities == 1
    assert reader.duration_s == 3  # 75 frames at 25 fps
    steps = {b - a for a, b in zip(reader.times, reader.times[1:])}
    assert steps == {Fraction(1, 25)}
    assert measure_length(str(joined)) == (75, 3)


def test_a_file_without_declared_discontinuities_keeps_its_times(tmp_path):
    reader = _read(_video(tmp_path / "plain.mkv", "ffv1", 10))
    assert not reader.info.ts_discont and reader.discontinuities == 0
    assert reader.times == [Fraction(i, 25) for i in range(10)]


# -- kind 9: undecodable packets before the first keyframe -------------------------------


def test_packets_before_the_first_keyframe_are_counted(tmp_path):
    """A transport stream cut mid-GOP: ffmpeg decodes 50 of its 65 packets."""
    full = _video(
        tmp_path / "full.ts",
        "libx264",
        75,
        fmt="mpegts",
        options={"g": "25", "bf": "0", "preset": "ultrafast"},
    )
    with av.open(str(full)) as container:
        positions = [p.pos for p in container.demux(container.streams.video[0]) if p.size]
    cut = tmp_path / "cut.ts"
    cut.write_bytes(full.read_bytes()[positions[10] // 188 * 188 :])  # a TS packet boundary
    reader = _read(cut)
    assert reader.frames_decoded == 50
    assert reader.decode_errors == 15  # the packets of frames 10-24, before the keyframe


# -- kind 5: names and URIs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a::b.mp4", "x#1?.mp4", "100%.mp4", "[1] {2} *.mp4", "file:x.mp4", "sp ace.mp4"],
)
def test_a_local_name_is_that_name(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"x")
    fs, resolved = filesystem(str(path))
    assert resolved == str(path) and fs.cat_file(resolved) == b"x"
    (ref,) = list_input(str(tmp_path), extensions=[ALL_FILES])
    assert ref == VideoRef(name, str(path), 1, ref.version)
    (ref,) = list_input(str(path))  # given itself as the input: a file, not a glob
    assert ref.uri == str(path)


def test_names_that_are_not_utf8_are_escaped_and_round_trip(tmp_path):
    raw = bytes(tmp_path) + b"/caf\xe9 100%.mp4"
    Path(raw.decode("utf-8", "surrogateescape")).write_bytes(b"x")
    (ref,) = list_input(str(tmp_path), extensions=[".mp4"])
    assert ref.video_id == "caf%E9 100%.mp4"
    assert ref.uri == "file://" + str(tmp_path) + "/caf%E9%20100%25.mp4"
    assert os_bytes(local_path(ref.uri)) == raw
    assert escape_local_path(local_path(ref.uri)) == ref.uri
    assert escape_name("plain") == "plain"


def os_bytes(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def test_manifest_file_uris_are_percent_decoded_and_bad_text_fails_rows(tmp_path):
    (tmp_path / "a b#.mp4").write_bytes(b"x")
    manifest = tmp_path / "list.txt"
    manifest.write_bytes(
        b"file://"
        + str(tmp_path).encode()
        + b"/a%20b%23.mp4\n"
        + b"caf\xe9.mp4\n"
        + b"file://elsewhere/x.mp4\n"
        + b"relative::name.mp4\n"
    )
    items = list(list_input(str(manifest)))
    assert items[0] == VideoRef(items[0].video_id, str(tmp_path / "a b#.mp4"))
    assert isinstance(items[1], Failure) and items[1].stage == "manifest"
    assert items[1].uri == "caf%E9.mp4" and "not UTF-8" in items[1].message
    assert isinstance(items[2], Failure) and "another host" in items[2].message
    assert items[3].uri == str(tmp_path / "relative::name.mp4")


# -- kind 6: folder filters say what they left out -------------------------------------


def test_a_folder_filter_reports_what_it_leaves_out(tmp_path):
    for name in ("a.mp4", "b.mod", "c.m2t", "notes.txt", "d.ogg"):
        (tmp_path / name).write_bytes(b"x")
    left_out = []
    refs = list(list_input(str(tmp_path), on_skip=left_out.append))
    assert [r.video_id for r in refs] == ["a.mp4", "b.mod", "c.m2t", "d.ogg"]
    assert left_out == ["notes.txt"]
    assert len(list(list_input(str(tmp_path), extensions=[ALL_FILES]))) == 5


# -- kind 7: every table exists after every run ----------------------------------------------


def test_every_table_is_readable_when_empty(tmp_path):
    import duckdb
    import lance

    out = tmp_path / "out"
    ensure_tables(str(out))
    ensure_tables(str(out))  # idempotent: one empty version per table
    for table, spec in SPECS.items():
        dataset = lance.dataset(str(out / f"{table}.lance"))
        assert dataset.schema == spec.schema
        assert dataset.count_rows() == 0 and dataset.version == 1
        assert duckdb.sql("SELECT count(*) FROM dataset").fetchall() == [(0,)]