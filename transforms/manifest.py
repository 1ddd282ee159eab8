"""ReadManifest: an input (directory, glob, manifest file or one video) → VideoRefs.

Takes one input string on any fsspec URL (local path, ``gs://``, ``s3://``,
``https://``) and gives the distinct videos to index as ``VideoRef`` records, plus
``Failure`` rows for manifest rows that cannot be used. Only these small refs cross
the shuffle that spreads decode across workers.

Input forms:
  * a directory: every file below it whose extension is a video extension;
  * a glob (``gs://bucket/archive/**/*.mp4``): the files it matches, any extension;
  * a manifest (``.csv``, ``.jsonl``, ``.txt``): one video per row; CSV and JSONL
    rows name ``uri`` (or ``path``/``url``) and optionally ``video_id`` (or ``id``);
    a TXT manifest has one URI per line, ``#`` comments allowed. Relative paths are
    taken from the manifest's folder;
  * a single video file.

``video_id`` is the manifest's id where given, else the path relative to the
directory (or glob prefix, or manifest folder), else the URI itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import apache_beam as beam
import fsspec
from apache_beam import pvalue

from transforms.context import RunContext
from transforms.records import Failure, VideoRef
from video_index.storage import (
    escape_local_path,
    escape_name,
    filesystem,
    is_utf8,
    local_path,
    retrying,
)

STAGE = "manifest"
# Checked against the extensions FFmpeg's demuxers declare (``ffmpeg -h demuxer=X``)
# and the containers archives hold; MPEG-TS and -PS declare none (they are probed by
# content), so their usual names are listed by hand. ``--extensions '*'`` takes every file.
VIDEO_EXTENSIONS = (
    # ISO BMFF / QuickTime, phones and cameras (GoPro's low-res .lrv is MP4)
    ".mp4 .m4v .mov .qt .3gp .3g2 .f4v .mj2 .ismv .lrv "
    # Matroska / WebM, Ogg, AVI, Windows Media, Flash, RealMedia, NUT
    ".mkv .mk3d .webm .ogv .ogg .ogm .avi .divx .asf .wmv .wtv .dvr-ms .flv .rm .rmvb .nut "
    # MPEG program streams (DVD, DVD-VR, HD DVD, JVC/Panasonic camcorders) and elementary
    ".mpg .mpeg .mpe .m2p .vob .vro .evo .mod .tod .m1v .m2v "
    # MPEG transport streams (broadcast, AVCHD camcorders, Blu-ray)
    ".ts .m2t .m2ts .mts .trp .tp "
    # broadcast and camcorder formats: MXF, GXF, DV
    ".mxf .gxf .dv .dif "
    # raw elementary video, uncompressed, IVF, CCTV (Dahua), animated images
    ".h264 .264 .avc .h265 .hevc .265 .obu .ivf .y4m .mjpeg .mjpg .dav .amv .gif .apng"
).split()
ALL_FILES = "*"  # as --extensions: every file in the folder
MANIFEST_EXTENSIONS = (".csv", ".jsonl", ".txt")
# Longest URI and video_id taken: Linux's PATH_MAX is 4096 bytes, and GCS and S3 object
# names are at most 1024 bytes; a longer manifest row is a failure row (whose fields
# are shortened to SHOWN_CHARS), never a multi-megabyte id on every page that shows it.
MAX_URI_CHARS = 4096
MAX_VIDEO_ID_CHARS = 1024
SHOWN_CHARS = 200
_URI_COLUMNS = ("uri", "path", "url")
_ID_COLUMNS = ("video_id", "id")


class InputError(ValueError):
    """The input root cannot be read at all; the message is the one-line reason."""


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol


def _full_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path as the URI people would type: plain for local files, with scheme else.

    A local path becomes absolute and normal (``os.path.abspath``: no ``.``, ``..``
    or ``//``), so one file has one URI however it was named and wherever the job
    was started; symbolic links are kept as named. A local name that is not UTF-8
    becomes a percent-encoded ``file://`` URI that names the same file
    (``video_index.storage.escape_local_path``).
    """
    protocol = _protocol(fs)
    if protocol in ("file", "local"):
        return escape_local_path(os.path.abspath(path))
    if protocol in ("http", "https"):
        return path
    return f"{protocol}://{path}"


def _version(info: dict) -> Optional[str]:
    """What changes when the object changes: generation, ETag or mtime."""
    for key in ("generation", "ETag", "etag", "mtime", "LastModified", "updated", "created"):
        value = info.get(key)
        if value not in (None, ""):
            return str(value).strip('"')
    return None


def input_kind(input_uri: str) -> str:
    """``glob``, ``manifest``, ``directory`` or ``file``; raises InputError if unreadable.

    A path that exists is that path, even with ``*?[`` in its name; otherwise those
    characters make it a glob.
    """
    try:
        fs, path = filesystem(input_uri)
        if fs.isdir(path):
            return "directory"
        if not fs.exists(path):
            if any(ch in path for ch in "*?["):
                return "glob"
            raise InputError(f"input not found: {escape_name(input_uri)}")
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - storage errors vary by backend
        raise InputError(f"cannot read input {escape_name(input_uri)}: {error}") from None
    if input_uri.lower().endswith(MANIFEST_EXTENSIONS):
        return "manifest"
    return "file"


def check_matches_something(input_uri: str, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> None:
    """Raises InputError where a glob matches no file, or a folder holds none that
    ``extensions`` keep (a job over nothing is a mistake in the input, not a run)."""
    kind = input_kind(input_uri)
    if kind not in ("glob", "directory"):
        return
    left_out: list[str] = []
    for _ in list_input(input_uri, extensions, on_skip=left_out.append):
        return
    name = escape_name(input_uri)
    if kind == "glob":
        raise InputError(f"--input {name} matches no file")
    if left_out:
        raise InputError(
            f"--input {name} holds no video: its {len(left_out)} file(s) have none of the "
            "--extensions (--extensions '*' takes every file)"
        )
    raise InputError(f"--input {name} is an empty folder")


def list_input(
    input_uri: str,
    extensions: Iterable[str] = VIDEO_EXTENSIONS,
    on_skip: Optional[Callable[[str], None]] = None,
) -> Iterator[Union[VideoRef, Failure]]:
    """Every video an input names, streamed; bad manifest rows come as Failures.

    ``extensions`` filters a directory's files (``ALL_FILES`` among them: no filter);
    each file it leaves out is passed to ``on_skip`` (its path relative to the
    directory, escaped as a ``video_id`` is). Names that are not UTF-8 are escaped
    (``video_index.storage``): the ``uri`` still opens the same file.
    """
    kind = input_kind(input_uri)
    fs, path = filesystem(input_uri)
    if kind == "manifest":
        yield from _read_manifest(fs, path, escape_name(input_uri))
        return
    if kind == "file":
        info = retrying(fs.info, path)
        yield VideoRef(
            escape_name(posixpath.basename(path)),
            _full_uri(fs, path),
            info.get("size"),
            _version(info),
        )
        return
    if kind == "glob":
        root = path.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0].rsplit("/", 1)[0]
        found = retrying(fs.glob, path, detail=True)
        wanted = None  # a glob says itself which files it means
    else:
        root = path.rstrip("/")
        found = retrying(fs.find, path, detail=True)
        wanted = tuple(ext.lower() for ext in extensions)
        if ALL_FILES in wanted:
            wanted = None
    for file_path in sorted(found):
        info = found[file_path]
        if info.get("type") == "directory":
            continue
        video_id = escape_name(posixpath.relpath(file_path, root) if root else file_path)
        if wanted is not None and not file_path.lower().endswith(wanted):
            if on_skip is not None:
                on_skip(video_id)
            continue
        yield VideoRef(video_id, _full_uri(fs, file_path), info.get("size"), _version(info))


def _read_manifest(
    fs: fsspec.AbstractFileSystem, path: str, manifest_uri: str
) -> Iterator[Union[VideoRef, Failure]]:
    base = path.rsplit("/", 1)[0] if "/" in path else ""
    lower = path.lower()
    with fs.open(path, "rb") as raw:
        # Undecodable bytes are kept (as surrogates) so the row that holds them can be
        # named in its failure, not silently turned into U+FFFD. utf-8-sig drops the
        # byte order mark spreadsheets write first ("CSV UTF-8"), which would
        # otherwise be part of the first header name, id or URI.
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
        if lower.endswith(".csv"):
            rows = _csv_rows(text)
        elif lower.endswith(".jsonl"):
            rows = _jsonl_rows(text)
        else:
            rows = _txt_rows(text)
        for line_no, uri, video_id, problem in rows:
            where = f"{manifest_uri}:{line_no}"
            if not problem and not all(is_utf8(v) for v in (uri, video_id or "")):
                problem = "row is not UTF-8 text"
            problem = problem or _too_long(uri, video_id)
            if problem:
                shown = _shorten(escape_name(uri))
                yield Failure(where, shown or where, STAGE, "ManifestError", problem)
                continue
            try:
                resolved = _resolve(fs, base, uri)
            except ValueError as error:
                yield Failure(where, uri, STAGE, "ManifestError", str(error))
                continue
            yield VideoRef(video_id or uri, resolved)


def _too_long(uri: str, video_id: Optional[str]) -> Optional[str]:
    """Why a row's URI or id is too long to take, or None."""
    limits = (("uri", uri, MAX_URI_CHARS), ("video_id", video_id, MAX_VIDEO_ID_CHARS))
    for name, text, limit in limits:
        if text and len(text) > limit:
            return f"{name} is {len(text)} characters long; at most {limit} are taken"
    return None


def _shorten(text: str) -> str:
    """``text`` cut to SHOWN_CHARS, marked with an ellipsis where cut."""
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _resolve(fs: fsspec.AbstractFileSystem, base: str, uri: str) -> str:
    """A manifest entry as a URI: ``file://`` percent-decoded (RFC 8089), relative
    paths taken from the manifest's folder, local paths made absolute
    (``_full_uri``), other URIs as they are."""
    local = local_path(uri)
    if local is None:
        return uri  # scheme://...
    if local != uri or uri.startswith("/"):  # a file:// URI (decoded) or an absolute path
        return escape_local_path(os.path.abspath(local))
    return _full_uri(fs, posixpath.normpath(posixpath.join(base, uri)))


Row = tuple[int, str, Optional[str], Optional[str]]  # line, uri, video_id, problem


def _txt_rows(text: io.TextIOBase) -> Iterator[Row]:
    for line_no, line in enumerate(text, start=1):
        uri = line.strip()
        if uri and not uri.startswith("#"):
            yield line_no, uri, None, None


def _csv_rows(text: io.TextIOBase) -> Iterator[Row]:
    reader = csv.reader(text)
    header: Optional[list[str]] = None
    uri_col, id_col = 0, None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # the reader goes on at the next line
            problem = f"row is not CSV: {error}"
            if "field limit" in str(error):
                problem = f"a field is over {csv.field_size_limit()} characters long"
            yield reader.line_num, "", None, problem
            continue
        line_no = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        cells = [cell.strip() for cell in row]
        if header is None:
            header = [cell.lower() for cell in cells]
            named = [c for c in _URI_COLUMNS if c in header]
            if named:
                uri_col = header.index(named[0])
                ids = [c for c in _ID_COLUMNS if c in header]
                id_col = header.index(ids[0]) if ids else None
                continue
            # No header: uri first, optional id second.
            id_col = 1 if len(cells) > 1 else None
        if uri_col >= len(cells) or not cells[uri_col]:
            yield line_no, ",".join(cells), None, "row has no uri"
            continue
        video_id = cells[id_col] if id_col is not None and id_col < len(cells) else None
        yield line_no, cells[uri_col], video_id or None, None


def _jsonl_rows(text: io.TextIOBase) -> Iterator[Row]:
    for line_no, line in enumerate(text, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield line_no, line[:200], None, f"not JSON: {error}"
            continue
        if not isinstance(record, dict):
            yield line_no, line[:200], None, "row is not a JSON object"
            continue
        uri = next((record[c] for c in _URI_COLUMNS if isinstance(record.get(c), str)), None)
        if not uri:
            yield line_no, line[:200], None, "row has no 'uri'"
            continue
        video_id = next((str(record[c]) for c in _ID_COLUMNS if record.get(c) is not None), None)
        yield line_no, uri, video_id, None


def stat(ref: VideoRef) -> VideoRef:
    """The ref with its size and version from storage; raises if it is not there."""
    if ref.size is not None and ref.version is not None:
        return ref
    fs, path = filesystem(ref.uri)
    info = retrying(fs.info, path)
    if info.get("type") == "directory":
        raise IsADirectoryError(f"{ref.uri} is a directory")
    return ref._replace(size=info.get("size"), version=_version(info))


class _ListInputFn(beam.DoFn):
    def __init__(self, extensions: tuple[str, ...], run: RunContext):
        self._extensions = extensions
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def process(self, input_uri: str):
        for item in list_input(input_uri, self._extensions, on_skip=self._metrics.filtered):
            if isinstance(item, Failure):
                self._metrics.failure()
                yield pvalue.TaggedOutput("failures", item)
            else:
                self._metrics.listed()
                yield item


def _dedupe_uri(uri_refs: tuple[str, Iterable[VideoRef]]) -> VideoRef:
    # The same file named twice is indexed once, under the first id in sort order.
    _, refs = uri_refs
    return min(refs)


class _DedupeIdFn(beam.DoFn):
    """Two different files under one video_id: the first keeps it, the rest fail."""

    def process(self, id_refs: tuple[str, Iterable[VideoRef]]):
        _, refs = id_refs
        first, *others = sorted(refs)
        yield first
        for ref in others:
            yield pvalue.TaggedOutput(
                "failures",
                Failure(
                    ref.video_id,
                    ref.uri,
                    STAGE,
                    "DuplicateVideoId",
                    f"video_id {ref.video_id!r} is already used by {first.uri}",
                ),
            )


class _StatFn(beam.DoFn):
    def __init__(self, run: RunContext):
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def process(self, ref: VideoRef):
        try:
            yield stat(ref)
        except Exception as error:  # noqa: BLE001 - errors are data
            self._metrics.failure()
            yield pvalue.TaggedOutput(
                "failures", Failure.from_exception(ref.video_id, ref.uri, STAGE, error)
            )


class _SkipUnchangedFn(beam.DoFn):
    """Drops refs whose (size, version) the index at ``output`` already holds."""

    def __init__(self, output: str, run: RunContext, retry_failed: bool = False):
        self._output = output
        self._run = run
        self._retry_failed = retry_failed

    def setup(self):
        from video_index.query import indexed_versions

        self._metrics = self._run.metrics(STAGE)
        # Once per worker: uri -> (size, version), about 100 bytes a video.
        self._indexed = indexed_versions(
            self._output, self._run.model_name, retry_failed=self._retry_failed
        )

    def process(self, ref: VideoRef):
        if self._indexed.get(ref.uri) == (ref.size, ref.version):
            self._metrics.skipped()
            return
        yield ref


class ReadManifest(beam.PTransform):
    """One input or several (each a folder, glob, manifest or video) →
    ``{'refs': PCollection[VideoRef], 'failures': PCollection[Failure]}``.

    Refs are distinct by URI and by video_id, shuffled so that decode spreads across
    workers, and carry size and version from storage. With ``skip_indexed_in`` (an
    index folder), a video that index already holds unchanged (same URI, size and
    version, same model: ``run.model_name``) is skipped: that is what makes re-runs
    incremental and a killed run resumable. So is an unchanged file whose failure
    was its content's; a transient failure is tried again, and with ``retry_failed``
    every failure is.
    """

    def __init__(
        self,
        inputs: Union[str, Sequence[str]],
        run: RunContext,
        extensions: Iterable[str] = VIDEO_EXTENSIONS,
        skip_indexed_in: Optional[str] = None,
        retry_failed: bool = False,
    ):
        super().__init__()
        # A local name that is not UTF-8 travels as its escaped file:// URI: Beam
        # encodes strings as UTF-8.
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        self._inputs = [escape_local_path(u) if local_path(u) else u for u in inputs]
        self._run = run
        self._extensions = tuple(extensions)
        self._skip_indexed_in = skip_indexed_in
        self._retry_failed = retry_failed

    def expand(self, pbegin: pvalue.PBegin) -> dict[str, pvalue.PCollection]:
        listed = (
            pbegin
            | "Input" >> beam.Create(self._inputs)
            | "List"
            >> beam.ParDo(_ListInputFn(self._extensions, self._run)).with_outputs(
                "failures", main="refs"
            )
        )
        distinct = (
            listed.refs
            | "KeyByUri" >> beam.Map(lambda ref: (ref.uri, ref))
            | "GroupByUri" >> beam.GroupByKey()
            | "OnePerUri" >> beam.Map(_dedupe_uri)
            | "KeyById" >> beam.Map(lambda ref: (ref.video_id, ref))
            | "GroupById" >> beam.GroupByKey()
            | "OnePerId" >> beam.ParDo(_DedupeIdFn()).with_outputs("failures", main="refs")
        )
        stated = (
            distinct.refs
            # Only these small refs cross a shuffle; decode → inference stay fused.
            | "Spread" >> beam.Reshuffle()
            | "Stat" >> beam.ParDo(_StatFn(self._run)).with_outputs("failures", main="refs")
        )
        refs = stated.refs
        if self._skip_indexed_in:
            refs = refs | "SkipUnchanged" >> beam.ParDo(
                _SkipUnchangedFn(self._skip_indexed_in, self._run, self._retry_failed)
            )
        failures = (
            listed.failures,
            distinct.failures,
            stated.failures,
        ) | "Failures" >> beam.Flatten()
        return {"refs": refs, "failures": failures}
