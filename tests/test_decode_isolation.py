"""A decoder that crashes or hangs fails its video, not the job (transforms.decode_worker).

The faults are injected through the test-only hook: with VIDEO_INDEX_TEST_FAULTS=1 a
URI containing ``__crash__`` segfaults the decoder process and one containing
``__hang__`` blocks it in a native call.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.helpers import MEDIA, RUNNER_MODES, assert_injected_faults, index_tables, run_cli
from tests.media import COLOURS, write_colour_video
from transforms.decode_worker import (
    TEST_FAULTS_ENV,
    DecoderCrashed,
    DecoderPool,
    DecoderTimedOut,
    IsolatedDecoder,
)
from transforms.preprocess import FrameSpec
from transforms.reading import read_clips, read_frames
from transforms.sampling import ClipSampling
from transforms.video_io import DecodeLimits, UnreadableVideo

SAMPLING = ClipSampling(frames_per_clip=8, fps=10.0)
SPEC = FrameSpec(size=32)


@pytest.fixture
def faults(monkeypatch):
    monkeypatch.setenv(TEST_FAULTS_ENV, "1")


def test_isolated_clips_are_the_in_process_clips(tmp_path):
    path = write_colour_video(tmp_path / "red.mkv", COLOURS["red"], 2.5)
    decoder = IsolatedDecoder()
    try:
        with decoder.read_clips(str(path), SAMPLING, SPEC) as remote:
            got = list(remote)
        with read_clips(str(path), SAMPLING, SPEC) as local:
            want = list(local)
        assert [(c.index, c.start_s, c.end_s) for c in got] == [
            (c.index, c.start_s, c.end_s) for c in want
        ]
        assert all(np.array_equal(a.frames, b.frames) for a, b in zip(got, want))
        facts = ("num_frames", "duration_s", "decode_errors", "discontinuities")
        assert [getattr(remote, f) for f in facts] == [getattr(local, f) for f in facts]
        assert remote.info == local.info
        (tmp_path / "bad.mkv").write_text("not a video")
        with pytest.raises(UnreadableVideo):  # the decoder's own errors, as in process
            with decoder.read_clips(str(tmp_path / "bad.mkv"), SAMPLING, SPEC):
                pass
    finally:
        decoder.close()


def test_a_crash_and_a_hang_fail_their_video_and_the_next_one_decodes(tmp_path, faults):
    ok = write_colour_video(tmp_path / "ok.mkv", COLOURS["blue"], 1.0)
    crash = write_colour_video(tmp_path / "a__crash__.mkv", COLOURS["red"], 1.0)
    hang = write_colour_video(tmp_path / "a__hang__.mkv", COLOURS["red"], 1.0)
    # Generous: a loaded machine must not turn the crash into a time-out.
    limits = DecodeLimits(max_decode_s=5.0)
    decoder = IsolatedDecoder()
    try:
        with pytest.raises(DecoderCrashed, match=r"decoder crashed \(killed by SIGSEGV\)"):
            with decoder.read_clips(str(crash), SAMPLING, SPEC, limits) as reader:
                list(reader)
        with decoder.read_clips(str(ok), SAMPLING, SPEC, limits) as reader:
            assert len(list(reader)) == 2
        with pytest.raises(DecoderTimedOut, match="decoder timed out"):
            with decoder.read_clips(str(hang), SAMPLING, SPEC, limits) as reader:
                list(reader)
        with decoder.read_clips(str(ok), SAMPLING, SPEC, limits) as reader:
            assert len(list(reader)) == 2
    finally:
        decoder.close()


FACTS = ("num_frames", "duration_s", "decode_errors", "discontinuities")


@pytest.mark.skipif(not MEDIA.is_dir(), reason=f"shared media not found at {MEDIA}")
def test_isolated_frames_are_the_in_process_frames_also_when_stopped_early():
    """read_frames through the child: the same (t, frame) pairs and facts, bit for bit;
    a reader that stops early leaves the child for the next video."""
    uri = str(MEDIA / "mmaction2" / "test.mp4")  # 10 s, H.264, non-square pixels
    spec = FrameSpec(size=172)
    decoder = IsolatedDecoder()
    try:
        with decoder.read_frames(uri, 5.0, spec) as remote:
            got = list(remote)
            got_facts = [getattr(remote, f) for f in FACTS]
        with read_frames(uri, 5.0, spec) as local:
            want = list(local)
            want_facts = [getattr(local, f) for f in FACTS]
        assert len(got) == len(want) == 50
        assert [t for t, _ in got] == [t for t, _ in want]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(got, want))
        assert got_facts == want_facts and remote.info == local.info
        child = decoder._proc.pid

        def first_seven(video):
            frames = [frame for _, (_, frame) in zip(range(7), video)]
            return frames, [getattr(video, f) for f in FACTS]

        with decoder.read_frames(uri, 5.0, spec) as remote:
            got_early = first_seven(remote)
        with read_frames(uri, 5.0, spec) as local:
            want_early = first_seven(local)
        assert got_early[1] == want_early[1]  # the facts at that point, as in process
        assert all(np.array_equal(a, b) for a, b in zip(got_early[0], want_early[0]))
        with decoder.read_frames(uri, 5.0, spec) as remote:
            assert len(list(remote)) == 50
        assert decoder._proc.pid == child  # stopping early did not cost a new child
    finally:
        decoder.close()


def test_a_pool_gives_each_open_video_its_own_child(tmp_path, faults):
    red = write_colour_video(tmp_path / "red.mkv", COLOURS["red"], 1.0)
    blue = write_colour_video(tmp_path / "blue.mkv", COLOURS["blue"], 1.5)
    crash = write_colour_video(tmp_path / "a__crash__.mkv", COLOURS["red"], 1.0)
    hang = write_colour_video(tmp_path / "a__hang__.mkv", COLOURS["red"], 1.0)
    limits = DecodeLimits(max_decode_s=5.0)
    pool = DecoderPool()
    try:
        a = pool.read_frames(str(red), 10.0, SPEC, limits)
        b = pool.read_frames(str(blue), 10.0, SPEC, limits)
        with a, b:  # read in lockstep, as a stream model's batch is
            pairs = list(zip(a, b))
            rest = list(b)
        assert len(pairs) == 10 and len(rest) == 5
        assert all(fa[0, 0, 0] > 200 and fb[0, 0, 2] > 200 for (_, fa), (_, fb) in pairs)
        with pytest.raises(DecoderCrashed, match="decoder crashed"):
            with pool.read_frames(str(crash), 10.0, SPEC, limits) as video:
                list(video)
        with pytest.raises(DecoderTimedOut, match="decoder timed out"):
            with pool.read_frames(str(hang), 10.0, SPEC, limits) as video:
                list(video)
        assert len(pool._idle) == 2  # every reader gave its child back
        with pool.read_frames(str(red), 10.0, SPEC, limits) as video:
            assert len(list(video)) == 10
    finally:
        pool.close()


def test_names_are_only_faults_under_the_test_flag(tmp_path, monkeypatch):
    monkeypatch.delenv(TEST_FAULTS_ENV, raising=False)
    crash = write_colour_video(tmp_path / "a__crash__.mkv", COLOURS["red"], 1.0)
    decoder = IsolatedDecoder()
    try:
        with decoder.read_clips(str(crash), SAMPLING, SPEC) as reader:
            assert len(list(reader)) == 2
    finally:
        decoder.close()


@pytest.mark.parametrize("runner_flags", RUNNER_MODES.values(), ids=RUNNER_MODES)
def test_the_job_indexes_everything_else(tmp_path, colour_spec_file, faults, runner_flags):
    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 2.0)
    write_colour_video(archive / "blue.mkv", COLOURS["blue"], 2.0)
    write_colour_video(archive / "x__crash__.mkv", COLOURS["green"], 2.0)
    write_colour_video(archive / "y__hang__.mkv", COLOURS["green"], 2.0)
    out = tmp_path / "out"
    result = run_cli(
        "index",
        "--input",
        str(archive),
        "--output",
        str(out),
        "--model",
        str(colour_spec_file),
        "--max-decode-s",
        "6",  # generous: on a loaded machine a crash must not become a time-out
        *runner_flags,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    videos, failures = index_tables(out)
    assert {v: r["labels"][0] for v, r in videos.items()} == {"red.mkv": "red", "blue.mkv": "blue"}
    assert_injected_faults(failures)


@pytest.mark.parametrize("where", ["in_process", "isolated"])
def test_max_decode_s_leaves_out_the_consumers_time(tmp_path, where):
    """A consumer that holds each frame (a stream model's inference) does not use up the
    video's decode time, in process or in the child."""
    path = write_colour_video(tmp_path / "red.mkv", COLOURS["red"], 0.6)
    limits = DecodeLimits(max_decode_s=0.5)  # the consumer below takes 1.2 s
    decoder = IsolatedDecoder()
    opened = (decoder.read_frames if where == "isolated" else read_frames)(
        str(path), 10.0, SPEC, limits
    )
    try:
        with opened as video:
            count = 0
            for _ in video:
                time.sleep(0.2)
                count += 1
        assert count == 6
    finally:
        decoder.close()
