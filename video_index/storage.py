"""Object-storage access with retries for transient errors (no Beam here).

``retrying(fn, *args, **kwargs)`` calls ``fn`` and, when it raises a *transient*
error, waits and calls it again: up to ``attempts`` calls in all, with exponential
backoff and full jitter (before retry ``n`` it sleeps a random time in
``[0, min(max_delay_s, base_delay_s * 2 ** (n - 1))]``).
``open_input(uri)`` opens a file through fsspec with the open retried;
``filesystem(uri)`` gives ``(fs, path)``.

Transient (retried):
  * gcsfs ``HttpError`` with code 408, 429 or >= 500, and ``requests`` connection
    errors and timeouts (gcsfs turns a 502 into ``requests.exceptions.ProxyError``);
  * google-api-core errors with HTTP code 429 or >= 500 (gcsfs's gRPC paths);
  * botocore ``ClientError`` with status 429 or >= 500 or a throttling code
    (``SlowDown``, ``Throttling``, ``RequestTimeout``, ...), and botocore's
    connection and HTTP-client errors. s3fs re-raises a ``ClientError`` as an
    ``OSError`` whose ``__cause__`` is the ``ClientError``: causes are followed;
  * aiohttp connection and payload errors (``ServerDisconnectedError``, ...) and
    ``ClientResponseError`` with status 429 or >= 500;
  * ``TimeoutError`` (fsspec's ``FSTimeoutError`` is one), ``ConnectionError``
    (resets, refusals, broken pipes) and ``http.client.IncompleteRead``.

Not retried, re-raised at once: everything else, in particular
``FileNotFoundError``, ``PermissionError``, ``FileExistsError``,
``IsADirectoryError``, ``NotADirectoryError``, other 4xx answers and plain
``OSError``/``ValueError`` (gcsfs raises a 403 as ``OSError("Forbidden ...")`` and
a 400 "invalid" as ``ValueError``). After the last attempt the last error is
re-raised unchanged.

The libraries retry by themselves first, so this layer only sees what outlived
theirs; keep ``attempts`` small, since the tries multiply:
  * gcsfs (2026.10) retries every JSON-API request (``_request``) 6 times in all on
    408/429/5xx, connection errors, timeouts and auth-refresh errors, sleeping
    ``min(random() + 2 ** (n - 1), 32)`` s between tries (about 31-36 s before it
    gives up); it never retries a 404;
  * s3fs (2026.9) wraps each call in 5 tries, but retries only timeouts,
    ``HTTPClientError``, ``IncompleteRead``, response-parser errors and
    ``ClientError`` messages naming ``SlowDown``/"reduce your request rate"; below
    it botocore (legacy retry mode) already makes up to 5 attempts on 5xx,
    throttling and connection errors. Other ``ClientError`` (a 500, a 503
    ``ServiceUnavailable``) come out as ``OSError`` (``EREMOTEIO``/``EBUSY``).

Each retry is logged (logger ``video_index.storage``, WARNING) with the function,
its first argument and the error's type and message, with URL query strings,
``user:password@`` and anything that looks like a token or signature redacted;
headers and tracebacks are never logged.

fsspec's background prefetcher (``fsspec.prefetcher.PrefetchProducer``, used by
gcsfs reads) leaves its ``_loop`` task pending when a file is done with, and asyncio
logs each one at ERROR ("Task was destroyed but it is pending!") when it is garbage
collected: dozens of lines on every ``gs://`` run, none a fault. Importing this
module filters exactly those records out of the ``asyncio`` logger; every other
asyncio error still shows.

The error classes are looked up in ``sys.modules`` rather than imported: an error
of a library that was never imported cannot occur, and importing ``gcsfs`` here
would fix its filesystem class before tests (or callers) set
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import logging
import os
import random
import re
import sys
import time
import urllib.parse
from typing import Any, Callable, Optional, TypeVar

import fsspec

logger = logging.getLogger(__name__)


class _PrefetchTaskNoise(logging.Filter):
    """Drops asyncio's "Task was destroyed but it is pending!" for fsspec's prefetch loop."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("Task was destroyed but it is pending" in text and "PrefetchProducer" in text)


if not any(isinstance(f, _PrefetchTaskNoise) for f in logging.getLogger("asyncio").filters):
    logging.getLogger("asyncio").addFilter(_PrefetchTaskNoise())

T = TypeVar("T")

# Patched by tests: no real sleeping, no randomness.
_sleep = time.sleep
_uniform = random.uniform

_NOT_TRANSIENT = (
    FileNotFoundError,
    PermissionError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
)
_TIMEOUTS = (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError)
_TRANSIENT_STATUS = frozenset({408, 429})
_TRANSIENT_AWS_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
    }
)


def _class(module: str, name: str) -> Optional[type]:
    """``module.name`` if that module is already imported, else None."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) else None


def _isinstance(error: BaseException, module: str, *names: str) -> bool:
    classes = tuple(c for c in (_class(module, n) for n in names) if c is not None)
    return bool(classes) and isinstance(error, classes)


def _transient_status(status: Any) -> bool:
    try:
        status = int(status)
    except (TypeError, ValueError):
        return False
    return status >= 500 or status in _TRANSIENT_STATUS


def _is_transient_one(error: BaseException) -> bool:
    if _isinstance(error, "gcsfs.retry", "HttpError"):
        return _transient_status(getattr(error, "code", None))
    if _isinstance(error, "botocore.exceptions", "ClientError"):
        response = getattr(error, "response", None) or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        return _transient_status(status) or code in _TRANSIENT_AWS_CODES
    if _isinstance(error, "botocore.exceptions", "ConnectionError", "HTTPClientError"):
        return True
    if _isinstance(error, "google.api_core.exceptions", "GoogleAPICallError"):
        return _transient_status(getattr(error, "code", None))
    if _isinstance(error, "aiohttp", "ClientResponseError"):
        return _transient_status(getattr(error, "status", None))
    if _isinstance(error, "aiohttp", "InvalidURL", "ClientConnectorCertificateError"):
        return False
    if _isinstance(error, "aiohttp", "ClientConnectionError", "ClientPayloadError"):
        return True
    if _isinstance(
        error, "requests.exceptions", "ConnectionError", "Timeout", "ChunkedEncodingError"
    ):
        return True
    return isinstance(error, _TIMEOUTS + (ConnectionError, http.client.IncompleteRead))


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying (see the module docstring).

    An explicitly permanent error (not found, permission, exists, ...) is never
    transient; otherwise the error and its ``__cause__`` chain are checked.
    """
    seen = 0
    current: Optional[BaseException] = error
    while current is not None and seen < 5:
        if isinstance(current, _NOT_TRANSIENT):
            return False
        if _is_transient_one(current):
            return True
        current = current.__cause__
        seen += 1
    return False


_URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;)]+")
_SECRET = re.compile(
    r"(?i)\b(authorization|x-goog-signature|x-goog-credential|x-amz-signature|"
    r"x-amz-credential|x-amz-security-token|access_token|refresh_token|id_token|"
    r"client_secret|secret|token|signature|password|sig)(\"?\s*[=:]\s*\"?)"
    r"(?!<redacted>)[^\s&'\",;)]+"
)


def redact(text: str) -> str:
    """``text`` without URL queries, URL user info or token/signature-like values."""
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    text = _USERINFO.sub(r"\1<redacted>@", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    return _SECRET.sub(r"\1\2<redacted>", text)


def _describe_call(fn: Callable, args: tuple) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    if args and isinstance(args[0], str):
        return f"{name}({redact(args[0])!r})"
    return name


def _describe_error(error: BaseException) -> str:
    message = redact(str(error)).replace("\n", " ")
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def retrying(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 5,
    base_delay_s: float = 0.5,
    max_delay_s: float = 8,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, called again on transient errors, up to ``attempts`` calls."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - classified below
            if not is_transient(error):
                raise
            call = _describe_call(fn, args)
            if attempt == attempts:
                logger.warning(
                    "%s failed (%s); giving up after %d attempts",
                    call,
                    _describe_error(error),
                    attempts,
                )
                raise
            cap = min(max_delay_s, base_delay_s * 2 ** (attempt - 1))
            delay = _uniform(0.0, cap)
            logger.warning(
                "%s failed (%s); retry %d/%d in %.2f s",
                call,
                _describe_error(error),
                attempt,
                attempts - 1,
                delay,
            )
            _sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def local_path(uri: str) -> Optional[str]:
    """The local path a URI names, or None for a remote URI.

    A string without a ``scheme://`` is a local path taken exactly as it is (``::``,
    ``#``, ``?``, ``%``, ``[ ]``, a leading ``file:`` are all just characters of a
    name). A ``file://`` URI (``file:///p``, ``file://localhost/p``) is percent-decoded
    as RFC 8089 says, to bytes and then to the OS's name (``os.fsdecode``: bytes that
    are not UTF-8 come back as the same undecodable name, so
    ``local_path(escape_local_path(p)) == p``).
    """
    match = _SCHEME.match(uri)
    if match is None:
        return uri
    if match.group(1).lower() != "file":
        return None
    rest = uri[match.end() :]
    host, slash, path = rest.partition("/")
    if host not in ("", "localhost"):
        raise ValueError(f"file URI names another host: {uri!r}")
    return os.fsdecode(urllib.parse.unquote_to_bytes(slash + path))


def escape_local_path(path: str) -> str:
    """A local path as a UTF-8 string that names it exactly.

    A path that is valid UTF-8 is returned as it is. One that is not (bytes such as
    Latin-1 ``caf\\xe9.mp4``, which Python holds as lone surrogates) becomes a
    ``file://`` URI with every byte outside the unreserved set percent-encoded
    (RFC 8089), which ``local_path`` turns back into the same path.
    """
    if is_utf8(path):
        return path
    absolute = os.path.abspath(path)
    return "file://" + urllib.parse.quote(os.fsencode(absolute), safe="/")


def escape_name(name: str) -> str:
    """``name`` with each byte that is not UTF-8 written ``%XX``: for ids and messages."""
    if is_utf8(name):
        return name
    return (
        "".join(f"%{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch for ch in name)
        .encode("utf-8", "backslashreplace")
        .decode("utf-8")
    )


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no lone surrogates from undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """``(fs, path)`` for a URI or local path (no I/O, so nothing to retry).

    Never parses the URI as an fsspec URL chain (``a::b``): a local path is opened as
    that path (see ``local_path``); ``scheme://rest`` goes to that scheme's filesystem
    with ``rest`` as its path, ``::`` and all.
    """
    local = local_path(uri)
    if local is not None:
        return fsspec.filesystem("file"), local
    protocol = _SCHEME.match(uri).group(1)
    cls = fsspec.get_filesystem_class(protocol)
    fs = fsspec.filesystem(protocol, **cls._get_kwargs_from_urls(uri))
    return fs, cls._strip_protocol(uri)


def open_input(uri: str, mode: str = "rb", **kwargs: Any):
    """An open file for ``uri``, the open (which stats the object) retried.

    Only the open is retried; reads on the returned file rely on the library's own
    retries. The caller closes the file (it is a context manager). ``kwargs`` go to
    ``fs.open`` (e.g. ``block_size``), not to ``fsspec.open``, which would pass them
    to the filesystem's constructor: gcsfs takes ``block_size`` there, s3fs hands it
    on to its aiobotocore session and fails.
    """
    return retrying(_open, uri, mode, kwargs)


def _open(uri: str, mode: str, kwargs: dict):
    fs, path = filesystem(uri)
    return fs.open(path, mode, **kwargs)


def lance_options(uri: str) -> dict[str, str]:
    """Lance's ``storage_options`` for ``uri``: what fsspec and botocore take from the
    environment that Lance's object store (Rust ``object_store``) does not.

    Lance reads credentials and ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` itself, but
    refuses a plain-``http://`` endpoint (an S3-compatible store on a private network,
    MinIO, moto) unless told ``allow_http``: for ``s3://`` with such an endpoint, this
    gives ``{"aws_endpoint": URL, "allow_http": "true"}``. Empty for local paths, for
    ``gs://`` (Lance uses application-default credentials, as gcsfs does) and where
    nothing is set.
    """
    if not uri.startswith(("s3://", "s3a://")):
        return {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return {}
    options = {"aws_endpoint": endpoint}
    if endpoint.startswith("http://"):
        options["allow_http"] = "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["aws_region"] = region
    return options
