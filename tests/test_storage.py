"""video_index.storage retries, and gs:// / s3:// I/O against local emulators."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import textwrap
import uuid

import fsspec
import pytest

from beam_pipeline.report import current_rows
from tests.helpers import RUN
from transforms.manifest import ReadManifest, list_input, stat
from transforms.records import VideoRef
from transforms.sink import WriteIndex, commit
from video_index import storage
from video_index.storage import is_transient, open_input, retrying

# --- errors as the libraries raise them ------------------------------------------


def gcs_error(code: int, message: str = "backend error"):
    from gcsfs.retry import HttpError

    return HttpError({"code": code, "message": message})


def aws_client_error(status: int, code: str, operation: str = "HeadObject"):
    from botocore.exceptions import ClientError

    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def s3fs_error(status: int, code: str):
    """What s3fs raises once its own retries give up: an OSError caused by ClientError."""
    from s3fs.errors import translate_boto_error

    return translate_boto_error(aws_client_error(status, code))


def aiohttp_error(kind: str):
    import aiohttp
    import yarl

    if kind == "disconnected":
        return aiohttp.ServerDisconnectedError()
    url = yarl.URL("http://h/o")
    info = aiohttp.RequestInfo(url=url, method="GET", headers={}, real_url=url)
    return aiohttp.ClientResponseError(info, (), status=int(kind))


def fs_timeout():
    from fsspec.exceptions import FSTimeoutError

    return FSTimeoutError()


def requests_proxy_error():
    import requests

    return requests.exceptions.ProxyError()  # what gcsfs raises for a 502


TRANSIENT = {
    "gcs 503": lambda: gcs_error(503),
    "gcs 500": lambda: gcs_error(500),
    "gcs 429": lambda: gcs_error(429),
    "gcs 502 (requests ProxyError)": requests_proxy_error,
    "aws 503 SlowDown": lambda: aws_client_error(503, "SlowDown"),
    "aws 400 Throttling": lambda: aws_client_error(400, "Throttling"),
    "aws 500 InternalError": lambda: aws_client_error(500, "InternalError"),
    "s3fs 503 (OSError from ClientError)": lambda: s3fs_error(503, "ServiceUnavailable"),
    "aiohttp ServerDisconnected": lambda: aiohttp_error("disconnected"),
    "aiohttp 502": lambda: aiohttp_error("502"),
    "fsspec FSTimeoutError": fs_timeout,
    "TimeoutError": TimeoutError,
    "ConnectionResetError": ConnectionResetError,
}
PERMANENT = {
    "FileNotFoundError": FileNotFoundError,
    "PermissionError": PermissionError,
    "gcs 404": lambda: gcs_error(404),
    "gcs 403": lambda: gcs_error(403),
    "gcs 400": lambda: gcs_error(400),
    "aws 403 AccessDenied": lambda: aws_client_error(403, "AccessDenied"),
    "s3fs NoSuchKey": lambda: s3fs_error(404, "NoSuchKey"),
    "s3fs AccessDenied": lambda: s3fs_error(403, "AccessDenied"),
    "aiohttp 404": lambda: aiohttp_error("404"),
    "plain OSError": lambda: OSError("Forbidden: bucket/x"),
    "ValueError": ValueError,
}


@pytest.mark.parametrize("make", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_errors_are_recognised(make):
    assert is_transient(make())


@pytest.mark.parametrize("make", PERMANENT.values(), ids=PERMANENT.keys())
def test_permanent_errors_are_not(make):
    assert not is_transient(make())


# --- retrying ---------------------------------------------------------------------


class Flaky:
    """A stand-in fs method: raises the given errors in turn, then returns ``value``."""

    def __init__(self, errors, value="ok"):
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


@pytest.fixture
def sleeps(monkeypatch):
    """Record sleeps instead of sleeping; jitter draws its upper bound."""
    slept: list[float] = []
    monkeypatch.setattr(storage, "_sleep", slept.append)
    monkeypatch.setattr(storage, "_uniform", lambda low, high: high)
    return slept


def test_transient_errors_are_retried_with_growing_delays(sleeps):
    info = Flaky([gcs_error(503), gcs_error(503)], value={"size": 3})
    assert retrying(info, "bucket/key", attempts=5, base_delay_s=0.5) == {"size": 3}
    assert info.calls == 3
    assert sleeps == [0.5, 1.0]


def test_delays_are_capped(sleeps):
    retrying(Flaky([ConnectionResetError()] * 6), attempts=7, base_delay_s=1, max_delay_s=3)
    assert sleeps == [1, 2, 3, 3, 3, 3]


def test_full_jitter_stays_within_the_cap(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(storage, "_sleep", slept.append)
    retrying(Flaky([TimeoutError()] * 4), attempts=5, base_delay_s=0.5, max_delay_s=8)
    assert len(slept) == 4
    assert all(0 <= s <= cap for s, cap in zip(slept, [0.5, 1, 2, 4], strict=True))


@pytest.mark.parametrize(
    "error",
    [FileNotFoundError("b/x"), PermissionError("b/x"), ValueError("bad"), "gcs404", "aws403"],
)
def test_permanent_error_is_raised_after_one_attempt(sleeps, error):
    error = {"gcs404": gcs_error(404), "aws403": s3fs_error(403, "AccessDenied")}.get(error, error)
    fn = Flaky([error])
    with pytest.raises(type(error)):
        retrying(fn, "b/x")
    assert fn.calls == 1
    assert sleeps == []


def test_gives_up_after_attempts(sleeps):
    fn = Flaky([gcs_error(503)] * 10)
    with pytest.raises(Exception) as raised:
        retrying(fn, "b/x", attempts=3)
    assert getattr(raised.value, "code", None) == 503
    assert fn.calls == 3
    assert len(sleeps) == 2


def test_retry_log_names_the_call_but_no_credentials(sleeps, caplog):
    message = (
        "503 from https://user:pw@storage.googleapis.com/b/o?X-Goog-Signature=SECRET1&alt=media "
        "Authorization: Bearer SECRET2 access_token=SECRET3"
    )
    fn = Flaky([gcs_error(503, message)])
    with caplog.at_level(logging.WARNING, logger="video_index.storage"):
        retrying(fn, "gs://bucket/videos/a.mp4")
    text = caplog.text
    assert "retry 1/4" in text and "gs://bucket/videos/a.mp4" in text and "HttpError" in text
    for secret in ("SECRET1", "SECRET2", "SECRET3", "user:pw"):
        assert secret not in text


def test_open_input_on_local_files(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    with open_input(str(tmp_path / "a.txt")) as f:
        assert f.read() == b"abc"
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        open_input(str(tmp_path / "missing.txt"))


# --- against the emulators ----------------------------------------------------------


@pytest.fixture(params=["gcs", "s3"])
def store(request):
    return request.getfixturevalue({"gcs": "gcs_emulator", "s3": "s3_server"}[request.param])


@pytest.fixture(params=["gcs", "s3"])
def index_store(request):
    """Each store an index can be written to, as ``store``: Lance writes its tables with
    its own object store (Rust ``object_store``), which speaks GCS's XML API; the GCS
    emulator has only the JSON API, so ``gs://`` indexes are tested on real GCS only."""
    if request.param == "gcs":
        pytest.skip("the GCS emulator lacks the XML API Lance's object store uses")
    return request.getfixturevalue("s3_server")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def video_row(video_id: str, uri: str) -> dict:
    return {
        "video_id": video_id,
        "uri": uri,
        "size": 1234,
        "version": "7",
        "duration_s": 2.5,
        "fps": 25.0,
        "width": 64,
        "height": 48,
        "num_frames": 62,
        "decode_errors": 0,
        "discontinuities": 0,
        "stream_index": 0,
        "codec": "h264",
        "sample_aspect_ratio": "1:1",
        "color_transfer": None,
        "num_clips": 1,
        "labels": ["red", "blue"],
        "scores": [0.75, 0.25],
        "model": "colour",
        "run_id": "run-1",
    }


def test_plain_fsspec_reaches_the_emulator(store):
    uri = store.uri(unique("plain") + "/hello.txt")
    with fsspec.open(uri, "wb") as f:  # no storage_options
        f.write(b"hello")
    fs, path = fsspec.core.url_to_fs(uri)
    assert fs is store.fs  # the cached instance: patches on store.fs reach the code
    assert store.fs.cat_file(path) == b"hello"
    with open_input(uri) as f:
        assert f.read() == b"hello"
    # Keywords go to fs.open: through fsspec.open, s3fs handed block_size to its
    # aiobotocore session (TypeError), which failed every video read from s3://.
    with open_input(uri, block_size=2) as f:
        assert f.read() == b"hello"


def test_commit_then_current_rows(index_store):
    out = index_store.uri(unique("index"))
    row = video_row("clip/a.mp4", index_store.uri("in/a.mp4"))
    commit(out, "videos", [row])
    index_store.fs.invalidate_cache()
    names = index_store.fs.ls(out.split("://", 1)[1], detail=False)
    assert [name.rsplit("/", 1)[-1] for name in names] == ["videos.lance"]
    tables = current_rows(out)
    assert tables["videos"].to_pylist() == [row]
    assert tables["failures"].num_rows == 0 and tables["clips"].num_rows == 0


def test_list_input_gives_sizes_and_versions(store):
    fs = store.fs
    root = unique("videos")
    files = {"a.mp4": b"a" * 10, "sub/b.MKV": b"bb" * 7, "notes.txt": b"not a video"}
    for name, data in files.items():
        fs.pipe_file(f"{store.bucket}/{root}/{name}", data)
    fs.invalidate_cache()

    refs = list(list_input(store.uri(root)))
    assert [(r.video_id, r.uri, r.size) for r in refs] == [
        ("a.mp4", store.uri(f"{root}/a.mp4"), 10),
        ("sub/b.MKV", store.uri(f"{root}/sub/b.MKV"), 14),
    ]
    info = fs.info(f"{store.bucket}/{root}/a.mp4")
    if store.scheme == "gs":
        assert refs[0].version == str(info["generation"])  # GCS: the object generation
    else:
        assert refs[0].version == hashlib.md5(files["a.mp4"]).hexdigest()  # S3: ETag, unquoted

    # The version changes when the object does; stat() finds it for a bare ref.
    fs.pipe_file(f"{store.bucket}/{root}/a.mp4", b"A" * 11)
    fs.invalidate_cache()
    fresh = stat(VideoRef("a.mp4", store.uri(f"{root}/a.mp4")))
    assert fresh.size == 11 and fresh.version and fresh.version != refs[0].version
    (single,) = list_input(store.uri(f"{root}/a.mp4"))
    assert (single.size, single.version) == (11, fresh.version)


def transient_for(store):
    return gcs_error(503) if store.scheme == "gs" else s3fs_error(503, "SlowDown")


def test_stat_retries_a_transient_error(store, monkeypatch, sleeps):
    path = f"{store.bucket}/{unique('stat')}/v.mp4"
    store.fs.pipe_file(path, b"12345")
    real_info = store.fs.info
    calls = []

    def flaky_info(p, **kwargs):
        calls.append(p)
        if len(calls) <= 2:
            raise transient_for(store)
        return real_info(p, **kwargs)

    monkeypatch.setattr(store.fs, "info", flaky_info)
    ref = stat(VideoRef("v", f"{store.scheme}://{path}"))
    assert ref.size == 5 and ref.version
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_list_input_retries_a_transient_listing_error(store, monkeypatch, sleeps):
    root = unique("list")
    store.fs.pipe_file(f"{store.bucket}/{root}/x.mp4", b"x")
    real_find = store.fs.find
    calls = []

    def flaky_find(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise transient_for(store)
        return real_find(*args, **kwargs)

    monkeypatch.setattr(store.fs, "find", flaky_find)
    refs = list(list_input(store.uri(root)))
    assert [r.video_id for r in refs] == ["x.mp4"] and len(calls) == 2


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_commit_retried_after_a_lost_answer_adds_nothing(where, tmp_path, request, sleeps):
    """The commit landed but the client saw a transient error: the retry merges on the
    row's key and run, so the table holds the row once."""
    from video_index import table as tables

    out = str(tmp_path / "out") if where == "local" else request.getfixturevalue(
        "s3_server"
    ).uri(unique("retry"))
    real_commit = tables.commit_rows
    calls = []

    def commit_then_fail(*args, **kwargs):
        calls.append(args)
        real_commit(*args, **kwargs)
        if len(calls) == 1:
            raise s3fs_error(503, "SlowDown")

    row = video_row("v", "s3://b/v.mp4")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tables, "commit_rows", commit_then_fail)
        commit(out, "videos", [row])
    assert current_rows(out)["videos"].to_pylist() == [row]
    assert tables.open_table(out, "videos").count_rows() == 1
    assert len(calls) == 2 and sleeps == [0.5]


def test_a_commit_fails_at_once_on_a_permanent_error(tmp_path, monkeypatch, sleeps):
    from video_index import table as tables

    def forbidden(*args, **kwargs):
        raise PermissionError("Forbidden")

    monkeypatch.setattr(tables, "commit_rows", forbidden)
    with pytest.raises(PermissionError):
        commit(str(tmp_path / "out"), "videos", [video_row("v", "u")])
    assert sleeps == []


def test_gcsfs_absorbs_a_single_server_503_itself(gcs_emulator):
    """A 503 from the server is retried inside gcsfs (one ~1-2 s sleep) before us."""
    key = unique("fault") + "/v.mp4"
    gcs_emulator.fs.pipe_file(f"{gcs_emulator.bucket}/{key}", b"abc")
    gcs_emulator.fs.invalidate_cache()
    before = gcs_emulator.faults_served
    gcs_emulator.fail_next(1, status=503, method="GET", path_contains=key.replace("/", "%2F"))
    try:
        assert gcs_emulator.fs.info(f"{gcs_emulator.bucket}/{key}")["size"] == 3
    finally:
        gcs_emulator.clear_faults()
    assert gcs_emulator.faults_served == before + 1


def test_child_processes_inherit_the_emulators(gcs_emulator, s3_server):
    """Beam workers and other subprocesses reach both emulators through the env alone."""
    gs_uri = gcs_emulator.uri(unique("child") + "/g.txt")
    s3_uri = s3_server.uri(unique("child") + "/s.txt")
    gcs_emulator.fs.pipe_file(gs_uri.split("://", 1)[1], b"from-gcs")
    s3_server.fs.pipe_file(s3_uri.split("://", 1)[1], b"from-s3")
    code = textwrap.dedent(f"""
        import fsspec
        for uri in ({gs_uri!r}, {s3_uri!r}):
            with fsspec.open(uri, "rb") as f:
                print(f.read().decode())
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["from-gcs", "from-s3"]


def test_beam_worker_processes_read_and_write_the_store(index_store):
    """ReadManifest → WriteIndex on the DirectRunner's worker subprocesses (env only)."""
    store = index_store
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    root = unique("beam")
    for i in range(3):
        store.fs.pipe_file(f"{store.bucket}/{root}/in/v{i}.mp4", b"x" * (i + 1))
    out = store.uri(f"{root}/out")
    options = PipelineOptions(
        runner="DirectRunner", direct_running_mode="multi_processing", direct_num_workers=2
    )
    with beam.Pipeline(options=options) as p:
        refs = (p | ReadManifest(store.uri(f"{root}/in"), RUN))["refs"]
        tables = {
            "Videos": refs
            | beam.Map(
                lambda r: (
                    "videos",
                    {**video_row(r.video_id, r.uri), "size": r.size, "version": r.version},
                )
            ),
        }
        _ = tables | WriteIndex(out, "run-1", flush_rows=2)
    videos = current_rows(out)["videos"].to_pylist()
    assert sorted((r["video_id"], r["size"]) for r in videos) == [
        ("v0.mp4", 1),
        ("v1.mp4", 2),
        ("v2.mp4", 3),
    ]
    assert all(r["version"] for r in videos)


def test_index_end_to_end_from_bucket_to_bucket(index_store, colour_spec, tmp_path):
    """Videos and a manifest in a bucket → decode → model → the index's tables in a bucket."""
    store = index_store
    from apache_beam.testing.test_pipeline import TestPipeline

    from beam_pipeline.pipeline import build_pipeline
    from tests.helpers import make_config
    from tests.media import COLOURS, write_colour_video

    root = unique("e2e")
    for name in ("red", "blue"):
        local = write_colour_video(tmp_path / f"{name}.mkv", COLOURS[name], 1.6)
        store.fs.put_file(str(local), f"{store.bucket}/{root}/in/{name}.mkv")
    store.fs.pipe_file(f"{store.bucket}/{root}/in/bad.mkv", b"not a video")
    manifest = "uri,video_id\nred.mkv,r\nblue.mkv,b\nbad.mkv,x\n"
    store.fs.pipe_file(f"{store.bucket}/{root}/in/list.csv", manifest.encode())
    out = store.uri(f"{root}/out")
    config = make_config(colour_spec, store.uri(f"{root}/in/list.csv"), out)
    with TestPipeline() as p:
        build_pipeline(p, config)
    tables = current_rows(out)
    videos = {r["video_id"]: r for r in tables["videos"].to_pylist()}
    assert {v: r["labels"][0] for v, r in videos.items()} == {"r": "red", "b": "blue"}, tables[
        "failures"
    ].to_pylist()
    assert all(r["version"] and r["size"] for r in videos.values())
    assert tables["failures"].column("video_id").to_pylist() == ["x"]
    assert tables["clips"].num_rows == 4
