"""A decoder that crashes or hangs fails its video, not the job (transforms.decode_worker).

The faults are injected through the test-only hook: with VIDEO_INDEX_TEST_FAULTS=1 a
URI containing ``__crash__`` segfaults the decoder process and one containing
``__hang__`` blocks it in a native call.
"""

from __future__ import annotations

import numpy as np
import pyarrow.dataset as ds
import pytest

from tests.helpers import run_cli
from tests.media import COLOURS, write_colour_video
from transforms.decode_worker import (
    TEST_FAULTS_ENV,
    DecoderCrashed,
    DecoderTimedOut,
    IsolatedDecoder,
)
from transforms.preprocess import FrameSpec
from transforms.reading import read_clips
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


def test_names_are_only_faults_under_the_test_flag(tmp_path, monkeypatch):
    monkeypatch.delenv(TEST_FAULTS_ENV, raising=False)
    crash = write_colour_video(tmp_path / "a__crash__.mkv", COLOURS["red"], 1.0)
    decoder = IsolatedDecoder()
    try:
        with decoder.read_clips(str(crash), SAMPLING, SPEC) as reader:
            assert len(list(reader)) == 2
    finally:
        decoder.close()


@pytest.mark.parametrize(
    "runner_flags",
    [[], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]],
    ids=["local", "multi_processing"],
)
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
    videos = {r["video_id"]: r for r in ds.dataset(out / "videos").to_table().to_pylist()}
    failures = {r["video_id"]: r for r in ds.dataset(out / "failures").to_table().to_pylist()}
    assert {v: r["labels"][0] for v, r in videos.items()} == {"red.mkv": "red", "blue.mkv": "blue"}
    assert set(failures) == {"x__crash__.mkv", "y__hang__.mkv"}
    crash, hang = failures["x__crash__.mkv"], failures["y__hang__.mkv"]
    assert (crash["stage"], crash["error_type"]) == ("decode", "DecoderCrashed")
    assert "decoder crashed" in crash["message"]
    assert (hang["stage"], hang["error_type"]) == ("decode", "DecoderTimedOut")
    assert "decoder timed out" in hang["message"]
