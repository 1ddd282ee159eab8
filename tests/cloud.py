"""Storage emulators on 127.0.0.1 for tests: GCS (gcp-storage-emulator) and S3 (moto).

Use from a conftest::

    from tests.cloud import gcs_emulator, s3_server  # noqa

Both fixtures are session-scoped and yield an ``Emulator``:

  * ``.bucket``: a bucket that exists (shared by the session: use unique prefixes);
  * ``.uri(key)``: ``gs://BUCKET/key`` or ``s3://BUCKET/key``;
  * ``.endpoint``: ``http://127.0.0.1:PORT``;
  * ``.env``: the environment variables set for the session (below);
  * ``.fs``: the fsspec filesystem, the same cached instance that a plain
    ``fsspec.open("gs://...")`` / ``url_to_fs`` in this process gets.

``gcs_emulator`` also has ``.fail_next(count, status=503, method=None, path_contains="")``:
the next ``count`` matching HTTP requests are answered with ``status`` (a JSON
error, as GCS sends) instead of being served, to test retries end to end. Uploads
with ``ifGenerationMatch=0`` of an object that exists get GCS's 412 (the emulator
itself ignores the precondition).

How plain ``fsspec.open(URI)`` (no storage_options) finds the emulator: through
environment variables, set in ``os.environ`` for the session so that child
processes (Beam workers, ``subprocess``) inherit them, and restored afterwards.

  * GCS: ``STORAGE_EMULATOR_HOST`` (gcsfs reads it on every request to build its
    base URL), ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` (else gcsfs's extended
    filesystem probes each bucket over gRPC for 60 s; gcsfs reads it when first
    imported, see below) and ``FSSPEC_GS_TOKEN=anon`` (fsspec turns
    ``FSSPEC_<protocol>_<kwarg>`` into default kwargs when it is imported, so a
    child process uses no credentials; in this process, where fsspec is already
    imported, ``fsspec.config.conf["gs"]["token"]`` is set too). Without ``anon``
    gcsfs would try application-default credentials and send real tokens.
  * S3: ``AWS_ENDPOINT_URL_S3`` (botocore >= 1.31 reads it for every S3 client,
    so s3fs, boto3 and pyarrow-through-fsspec all follow it), dummy
    ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` and
    ``AWS_EC2_METADATA_DISABLED``; ``AWS_PROFILE``, ``AWS_SESSION_TOKEN`` and the
    AWS config/credential files are hidden so a developer's setup cannot leak in.

fsspec caches filesystem instances by their arguments, not by environment, so the
fixtures clear the instance cache of the gs/s3 classes when they start and when
they stop: no later test gets a filesystem bound to a dead emulator.

Emulator quirks handled here:
  * gcp-storage-emulator has no ``moveTo`` endpoint and answers 501, which gcsfs
    retries 6 times (about 35 s) before falling back to copy + delete; the fixture
    adds a ``moveTo`` route (copy + delete on the server) for the session.
  * gcsfs picks its filesystem class when first imported: if it was imported
    before the fixture set ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT``, the fixture
    registers the plain ``gcsfs.core.GCSFileSystem`` for gs/gcs in this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import re
import threading
from http import HTTPStatus
from typing import Any, Iterator, Optional

import pytest

BUCKET = "video-index-test"
HOST = "127.0.0.1"


@dataclasses.dataclass
class Emulator:
    scheme: str
    bucket: str
    endpoint: str
    env: dict
    fs: Any

    def uri(self, key: str = "") -> str:
        return f"{self.scheme}://{self.bucket}/{key.lstrip('/')}"


@dataclasses.dataclass
class _Fault:
    remaining: int
    status: int
    method: Optional[str]
    path_contains: str


class GcsEmulator(Emulator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.faults_served = 0

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        method: Optional[str] = None,
        path_contains: str = "",
    ) -> None:
        """Answer the next ``count`` matching requests with ``status``."""
        with self._lock:
            self._faults.append(_Fault(count, status, method and method.upper(), path_contains))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> Optional[int]:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.remaining > 0
                    and fault.method in (None, method)
                    and (fault.path_contains in path)
                ):
                    fault.remaining -= 1
                    self.faults_served += 1
                    return fault.status
        return None


@contextlib.contextmanager
def _environ(set_vars: dict, unset: tuple = ()) -> Iterator[None]:
    names = set(set_vars) | set(unset)
    saved = {name: os.environ.get(name) for name in names}
    for name in unset:
        os.environ.pop(name, None)
    os.environ.update(set_vars)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _fsspec_conf(protocol: str, values: dict) -> Iterator[None]:
    import fsspec.config

    had = protocol in fsspec.config.conf
    saved = dict(fsspec.config.conf.get(protocol, {}))
    fsspec.config.conf.setdefault(protocol, {}).update(values)
    try:
        yield
    finally:
        if had:
            fsspec.config.conf[protocol] = saved
        else:
            fsspec.config.conf.pop(protocol, None)


def clear_fs_cache(*protocols: str) -> None:
    """Forget cached filesystem instances of these protocols (and their listings)."""
    import fsspec

    for protocol in protocols:
        try:
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError):
            continue
        cls.clear_instance_cache()


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


# --- GCS -------------------------------------------------------------------------


def _move_to(request, response, storage, *args, **kwargs):
    """``POST .../o/SRC/moveTo/o/DST``: copy + delete on the server (same bucket)."""
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    bucket = request.params["bucket_name"]
    try:
        dest = objects._copy(
            request.base_url,
            storage,
            bucket,
            request.params["object_id"],
            bucket,
            request.params["dest_object_id"],
        )
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND
        return
    objects._delete(storage, bucket, request.params["object_id"])
    response.json(dest)


def _moveto_unsupported(request, response, storage, *args, **kwargs):
    # 405 is not retried by gcsfs: it falls back to copy + delete at once.
    response.status = HTTPStatus.METHOD_NOT_ALLOWED
    response.json({"error": {"code": 405, "message": "moveTo not emulated"}})


def _exists_but_must_not(rh) -> bool:
    """An upload with ``ifGenerationMatch=0`` (create only) of an object that exists.

    The emulator ignores the precondition; GCS answers 412, which is what a
    create-if-absent (a lock) relies on. gcsfs names the object in the multipart
    body: the body is read here and put back for the emulator's handler.
    """
    from urllib.parse import parse_qs, unquote, urlparse

    url = urlparse(rh.path)
    match = re.search(r"/b/([^/]+)/o$", url.path)
    if parse_qs(url.query).get("ifGenerationMatch") != ["0"] or not match:
        return False
    body = rh.rfile.read(int(rh.headers.get("Content-Length") or 0))
    rh.rfile = io.BytesIO(body)
    name = re.search(rb'"name":\s*"((?:[^"\\]|\\.)*)"', body)
    if name is None:
        return False
    try:
        rh.storage.get_file_obj(unquote(match[1]), json.loads(b'"' + name[1] + b'"'))
    except Exception:  # noqa: BLE001 - the emulator's NotFound
        return False
    # Answered with an error: the fault path below must find nothing left to drain.
    rh.headers.replace_header("Content-Length", "0")
    return True


@contextlib.contextmanager
def _patched_gcs_routes(emulator: GcsEmulator) -> Iterator[None]:
    from gcp_storage_emulator import server, settings
    from gcp_storage_emulator.handlers import objects

    saved_handlers, saved_handle = server.HANDLERS, server.Router.handle
    probe = f"{settings.API_ENDPOINT}/b/{BUCKET}/o/a/moveTo/o/b"
    if not any(re.fullmatch(regex, probe) and "POST" in h for regex, h in server.HANDLERS):
        handler = (
            _move_to
            if hasattr(objects, "_copy") and hasattr(objects, "_delete")
            else (_moveto_unsupported)
        )
        route = (
            rf"^{re.escape(settings.API_ENDPOINT)}/b/(?P<bucket_name>[-.\w]+)/o/"
            r"(?P<object_id>.*[^/]+)/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
            {"POST": handler},
        )
        server.HANDLERS = (route, *server.HANDLERS)

    def handle(router, method):
        rh = router._request_handler
        method = rh.headers.get("x-http-method-override") or method
        status = emulator._take_fault(method, rh.path)
        if status is None and method == "POST" and _exists_but_must_not(rh):
            status = HTTPStatus.PRECONDITION_FAILED
        if status is None:
            return saved_handle(router, method)
        length = int(rh.headers.get("Content-Length") or 0)
        if length:
            rh.rfile.read(length)  # so the client sees the answer, not a reset
        body = json.dumps({"error": {"code": status, "message": "injected fault"}}).encode()
        rh.send_response(status)
        rh.send_header("Content-Type", "application/json")
        rh.send_header("Content-Length", str(len(body)))
        rh.end_headers()
        rh.wfile.write(body)

    server.Router.handle = handle
    try:
        yield
    finally:
        server.HANDLERS, server.Router.handle = saved_handlers, saved_handle


@contextlib.contextmanager
def _plain_gcsfs_registered() -> Iterator[None]:
    """Use ``gcsfs.core.GCSFileSystem`` for gs/gcs if gcsfs chose the extended class."""
    import importlib

    import gcsfs
    import gcsfs.core

    if gcsfs.GCSFileSystem is gcsfs.core.GCSFileSystem:
        yield
        return
    # ``fsspec.registry`` is the read-only mapping; the module holds the real dict.
    registry = importlib.import_module("fsspec.registry")
    saved = {p: registry._registry.get(p) for p in ("gs", "gcs")}
    for protocol in saved:
        registry.register_implementation(protocol, gcsfs.core.GCSFileSystem, clobber=True)
    try:
        yield
    finally:
        for protocol, cls in saved.items():
            if cls is None:
                registry._registry.pop(protocol, None)
            else:
                registry.register_implementation(protocol, cls, clobber=True)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """A gcp-storage-emulator on a free loopback port, in memory, with ``BUCKET``."""
    pytest.importorskip("gcsfs", reason="gcsfs is not installed")
    emulator_server = pytest.importorskip(
        "gcp_storage_emulator.server",
        reason="gcp-storage-emulator is not installed (pip install gcp-storage-emulator)",
    )
    srv = emulator_server.create_server(HOST, 0, in_memory=True, default_bucket=BUCKET)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet("gcp_storage_emulator"))
        srv.start()
        stack.callback(srv.stop)
        port = srv._api._httpd.server_address[1]  # the port the OS gave for port 0
        endpoint = f"http://{HOST}:{port}"
        env = {
            "STORAGE_EMULATOR_HOST": endpoint,
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "FSSPEC_GS_TOKEN": "anon",
        }
        stack.enter_context(_environ(env))
        stack.enter_context(_fsspec_conf("gs", {"token": "anon"}))
        stack.enter_context(_plain_gcsfs_registered())
        stack.callback(clear_fs_cache, "gs", "gcs")  # runs before the env is restored
        clear_fs_cache("gs", "gcs")
        import fsspec

        emulator = GcsEmulator("gs", BUCKET, endpoint, env, fsspec.filesystem("gs"))
        stack.enter_context(_patched_gcs_routes(emulator))
        yield emulator


# --- S3 --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[Emulator]:
    """moto's ThreadedMotoServer on a free loopback port, with ``BUCKET``."""
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    moto_server = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install 'moto[server]')"
    )
    empty = tmp_path_factory.mktemp("aws") / "none"
    srv = moto_server.ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_quiet("werkzeug"))
        srv.start()
        stack.callback(srv.stop)
        host, port = srv.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(empty),
            "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        }
        unset = (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ENDPOINT_URL",
        )
        stack.enter_context(_environ(env, unset))
        stack.callback(clear_fs_cache, "s3", "s3a")
        clear_fs_cache("s3", "s3a")
        import fsspec

        fs = fsspec.filesystem("s3")
        try:
            fs.mkdir(BUCKET)
        except FileExistsError:  # moto keeps its state per process, not per server
            pass
        yield Emulator("s3", BUCKET, endpoint, env, fs)


@pytest.fixture(params=["gcs", "s3"])
def store(request) -> Emulator:
    """Each emulator in turn: a test that takes ``store`` runs once per object store."""
    return request.getfixturevalue({"gcs": "gcs_emulator", "s3": "s3_server"}[request.param])


__all__ = ["Emulator", "GcsEmulator", "clear_fs_cache", "gcs_emulator", "s3_server", "store"]
