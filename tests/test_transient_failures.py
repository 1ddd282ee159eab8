"""Transient failures are retried by the next run; content failures are not.

A failure row says which kind it was (``transient``): storage and network errors that
outlived the retries, time limits, a killed decoder. The next run retries those;
``--retry-failed`` retries every failure. Seen failing before the fix: every failure
was skipped as "unchanged" on the next run.
"""

from __future__ import annotations

import errno
import json
import pickle

import pytest

from tests.helpers import run_cli, table_rows
from tests.media import COLOURS, write_colour_video
from transforms.decode_worker import TEST_FAULTS_ENV, DecoderCrashed, DecoderTimedOut
from transforms.records import Failure
from transforms.video_io import DecodeLimitExceeded, VideoDecodeError


def _s3_503() -> OSError:
    """What s3fs raises for a 503 that outlived botocore's tries: OSError(EBUSY) from a
    ClientError."""
    from botocore.exceptions import ClientError

    cause = ClientError(
        {"Error": {"Code": "ServiceUnavailable"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
        "GetObject",
    )
    error = OSError(errno.EBUSY, "Service Unavailable")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "error, transient",
    [
        (_s3_503(), True),
        (OSError(errno.EBUSY, "Device or resource busy"), True),  # the cause lost in a pipe
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (DecoderCrashed("decoder crashed (signal 9)"), True),
        (DecoderTimedOut("decoder timed out"), True),
        (VideoDecodeError("Invalid data found when processing input"), False),
        (DecodeLimitExceeded("video is 400000 s, over max_duration_s=14400"), False),
        (FileNotFoundError(errno.ENOENT, "No such file"), False),
        (ValueError("bad"), False),
    ],
)
def test_a_failure_says_whether_it_was_transient(error, transient):
    failure = Failure.from_exception("v", "/v", "decode", error)
    assert failure.transient is transient
    # Across the decoder's pipe (pickled, without its __cause__) it still says so.
    piped = pickle.loads(pickle.dumps(error))
    assert Failure.from_exception("v", "/v", "decode", piped).transient is transient


def test_a_time_limit_is_transient():
    from transforms.video_io import DecodeTimeLimitExceeded

    error = DecodeTimeLimitExceeded("decoding took over max_decode_s=1800")
    assert isinstance(error, DecodeLimitExceeded)
    assert Failure.from_exception("v", "/v", "decode", error).transient


def _index(archive, out, spec, *flags, faults=False, monkeypatch=None):
    if faults:
        monkeypatch.setenv(TEST_FAULTS_ENV, "1")
    else:
        monkeypatch.delenv(TEST_FAULTS_ENV, raising=False)
    done = run_cli("index", "--input", str(archive), "--output", str(out), "--model", str(spec),
                   *flags)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    records = sorted((out / "runs").glob("*.json"))
    return done, json.loads(records[-1].read_text())


def test_rerun_retries_transient_failures_and_retry_failed_any(
    tmp_path, colour_spec_file, monkeypatch
):

    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "a__crash__.mkv", COLOURS["red"], 1.0)  # the decoder is killed
    write_colour_video(archive / "green.mkv", COLOURS["green"], 1.0)
    (archive / "broken.mkv").write_text("not a video")
    out = tmp_path / "out"

    _, first = _index(archive, out, colour_spec_file, faults=True, monkeypatch=monkeypatch)
    assert (first["counts"]["videos"], first["counts"]["failures"]) == (1, 2)
    rows = {r["video_id"]: r for r in table_rows(out, "failures")}
    assert rows["a__crash__.mkv"]["transient"] is True
    assert rows["broken.mkv"]["transient"] is False

    # The fault is gone: the killed decode is retried and indexed; the broken file,
    # unchanged, would fail again and is skipped.
    done, second = _index(archive, out, colour_spec_file, monkeypatch=monkeypatch)
    assert second["counts"]["videos"] == 1 and second["counts"]["failures"] == 0
    assert second["counts"]["skipped_unchanged"] == 2
    assert "--retry-failed" in done.stdout

    _, third = _index(archive, out, colour_spec_file, "--retry-failed", monkeypatch=monkeypatch)
    assert (third["counts"]["failures"], third["counts"]["skipped_unchanged"]) == (1, 2)
