"""Read an index back: counts, a summary table, the run record and an HTML report.

An index folder holds ``videos/``, ``clips/``, ``failures/`` (Parquet) and
``runs/`` (one JSON record per run). Everything here reads through the SQL views of
``video_index.query`` and fetches only what it prints (counts, the first rows in
video order), so memory does not grow with the index; the HTML report is bounded
too: label counts, the first ``html_videos`` videos with their timelines, and the
commands that reach the rest.
"""

from __future__ import annotations

import dataclasses
import html
import json
import platform
import sys
import zlib
from typing import Iterator, Optional

import fsspec
import pyarrow as pa

from beam_pipeline.terminal import escape
from video_index.index import current_rows, read_table  # noqa: F401 - re-exported
from video_index.query import connect, standing_sql
from video_index.table import format_version as table_format_version


@dataclasses.dataclass
class Summary:
    """A connection to an index (``video_index.query``), scoped to one run or to all."""

    con: object  # duckdb.DuckDBPyConnection
    run_id: Optional[str]
    _counts: dict = dataclasses.field(default_factory=dict, repr=False)

    def _scope(self, table: str) -> str:
        if self.run_id is None:
            return table
        return f"({standing_sql(table, 'run_id = $run')})"

    def _params(self) -> dict:
        return {"run": self.run_id} if self.run_id is not None else {}

    def count(self, table: str) -> int:
        """Standing rows of ``table`` (of this run, where scoped); counted once."""
        if table not in self._counts:
            sql = f"SELECT count(*) FROM {self._scope(table)}"
            self._counts[table] = self.con.execute(sql, self._params()).fetchone()[0]
        return self._counts[table]

    def rows(self, table: str, columns: str, limit: int, order: str = "video_id") -> list[dict]:
        """The first ``limit`` standing rows of ``table`` by ``order``, as dicts."""
        sql = f"SELECT {columns} FROM {self._scope(table)} ORDER BY {order} LIMIT {int(limit)}"
        result = self.con.execute(sql, self._params())
        names = [d[0] for d in result.description]
        return [dict(zip(names, row)) for row in result.fetchall()]


def load_summary(output: str, run_id: Optional[str] = None, **options) -> Summary:
    """A Summary of the index at ``output``; FileNotFoundError if there is none."""
    return Summary(connect(output, **options), run_id)


def export_tables(summary: Summary, dest: str) -> list[str]:
    """The standing rows as ``DEST/{videos,clips,shots,cues,failures}.parquet``; returns their
    URIs.

    The index folders keep every committed row (a changed video's old row, clips of
    a killed run's unfinished video, a retried bundle's repeat) and readers take the
    standing ones; an export is that view as plain files, for tools that read
    Parquet without knowing the rule. DuckDB writes them, streamed.
    """
    fs, root = fsspec.core.url_to_fs(dest.rstrip("/"))
    fs.makedirs(root, exist_ok=True)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")
    if not local and not summary.con.filesystem_is_registered(protocol):
        summary.con.register_filesystem(fs)
    written = []
    for table in ("videos", "clips", "shots", "cues", "failures"):
        path = f"{root}/{table}.parquet"
        uri = path if local else fs.unstrip_protocol(path)
        summary.con.sql(f"SELECT * FROM {table}").write_parquet(uri, compression="zstd")
        written.append(fs.unstrip_protocol(path))
    return written


def _count(n: int, noun: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _backend_record(config) -> dict:
    """Which backend and precision ran, and for OpenVINO the IR and its calibration."""
    record = {
        "name": config.backend,
        "precision": config.precision,
        # what the flags asked for, where auto (or a fallback) chose otherwise
        "backend_requested": config.backend_requested,
        "precision_requested": config.precision_requested,
    }
    ir = config.ir
    if ir:
        record["ir_sha256"] = ir.get("ir_sha256")
        record["openvino"] = ir.get("openvino")
        if ir.get("calibration"):
            record["calibration"] = ir["calibration"]
            record["quantize"] = ir.get("quantize")
    if config.preparation:  # only where something was built, calibrated or chosen
        record["preparation"] = list(config.preparation)
    return record


def write_run_record(
    config,
    summary: Summary,
    elapsed_s: float,
    skipped: int = 0,
    left_out: tuple[int, list[str]] = (0, []),
) -> dict:
    """``runs/RUN_ID.json``: model, weights hash, parameters, counts, versions.

    ``left_out``: how many files of a folder input ``--extensions`` left out, and the
    first few of their names (relative to the folder).
    """
    import apache_beam
    import numpy

    spec = config.spec
    record = {
        "run_id": config.run_id,
        "input": config.inputs[0] if len(config.inputs) == 1 else list(config.inputs),
        "output": config.output,
        "model": {
            "name": spec.name,
            "source": spec.source,
            "weights_sha256": spec.weights_sha256,
            "size": spec.size,
            "fps": spec.fps,
            "frames_per_clip": spec.frames_per_clip,
            "classes": spec.num_classes,
        },
        "backend": _backend_record(config),
        "parameters": {
            "clip_stride_s": config.sampling.stride_s,
            "max_clips_per_video": config.sampling.max_clips,
            "short_video": config.sampling.short_video,
            "clips_per_shot": config.clips_per_shot,
            "top_k": config.top_k,
            "batch_size": config.batch_size,
            "reindex": config.reindex,
            "retry_failed": config.retry_failed,
            "limits": dataclasses.asdict(config.limits),
        },
        "counts": {
            "videos": summary.count("videos"),
            "clips": summary.count("clips"),
            "failures": summary.count("failures"),
            "skipped_unchanged": skipped,
            "left_out_by_extension": left_out[0],
        },
        "left_out_examples": list(left_out[1]),
        "elapsed_s": round(elapsed_s, 1),
        "format": table_format_version(),
        "versions": {
            "python": platform.python_version(),
            "apache_beam": apache_beam.__version__,
            "numpy": numpy.__version__,
            "pyarrow": pa.__version__,
            **_optional_versions(),
        },
    }
    fs, root = fsspec.core.url_to_fs(config.output)
    fs.makedirs(f"{root}/runs", exist_ok=True)
    with fs.open(f"{root}/runs/{config.run_id}.json", "w") as f:
        json.dump(record, f, indent=1)
    return record


def ended_runs(output: str) -> frozenset[str]:
    """The run ids that have a run record (``runs/RUN_ID.json``): runs that ended."""
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    try:
        names = fs.ls(f"{root}/runs", detail=False)
    except FileNotFoundError:
        return frozenset()
    return frozenset(
        name.rsplit("/", 1)[-1][: -len(".json")] for name in names if name.endswith(".json")
    )


def _optional_versions() -> dict:
    versions = {}
    for name in ("tensorflow", "av"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions


def format_summary(summary: Summary, output: str, record: Optional[dict], limit: int = 20) -> str:
    """Counts and a small table of top labels per video, for the terminal (escaped)."""
    counts = {table: summary.count(table) for table in ("videos", "clips", "failures")}
    lines = []
    scope = f"run {summary.run_id}" if summary.run_id else "index"
    lines.append(
        f"{scope}: {_count(counts['videos'], 'video')} indexed, {counts['failures']} failed, "
        f"{_count(counts['clips'], 'clip')} -> {output}"
    )
    if record:
        skipped = record["counts"].get("skipped_unchanged", 0)
        if skipped:
            new = counts["videos"] + counts["failures"]
            lines.append(
                f"{_count(skipped, 'unchanged video')} already in the index "
                + ("was" if skipped == 1 else "were")
                + " skipped"
                + (" (nothing new to index)" if not new else "")
                + "; --reindex redoes them, --retry-failed retries their failures"
            )
        left_out = record["counts"].get("left_out_by_extension", 0)
        if left_out:
            examples = ", ".join(record.get("left_out_examples", [])[:5])
            lines.append(
                f"{_count(left_out, 'file')} in the folder "
                + ("was" if left_out == 1 else "were")
                + " left out by --extensions"
                + (f" (e.g. {examples})" if examples else "")
                + "; --extensions '*' takes every file"
            )
        lines.append(f"run record: {output}/runs/{record['run_id']}.json ({record['elapsed_s']} s)")
    tables = format_tables(summary, output, limit)
    if record and not tables and record["counts"].get("skipped_unchanged", 0):
        # Nothing new: show what the index holds, which is what the user came to see.
        tables = format_tables(Summary(summary.con, None), output, limit)
    return "\n".join(lines + ([tables] if tables else []))


def format_tables(summary: Summary, output: str, limit: int = 20) -> str:
    """The top labels of the summary's first ``limit`` videos and its failures, as two
    small tables for the terminal (each after a blank line); '' when both are empty."""
    counts = {table: summary.count(table) for table in ("videos", "failures")}
    lines = []
    if counts["videos"]:
        lines.append("")
        lines.append(f"{'video':<44} {'dur_s':>6} {'clips':>5}  top labels")
        for row in summary.rows("videos", _VIDEO_COLUMNS, limit):
            lines.append(
                f"{_clip_text(escape(row['video_id']), 44):<44} {row['duration_s'] or 0:>6.1f} "
                f"{row['num_clips']:>5}  {_top_labels(row, ', ', html_escape=False)}"
            )
        if counts["videos"] > limit:
            lines.append(
                f"... and {counts['videos'] - limit} more (video-index query {output} ...)"
            )
    if counts["failures"]:
        lines.append("")
        lines.append(f"{'failed video':<44} {'stage':<9} reason")
        for row in summary.rows("failures", "*", limit):
            reason = escape(f"{row['error_type']}: {row['message']}".replace("\n", " "))
            video = _clip_text(escape(row["video_id"]), 44)
            lines.append(
                f"{video:<44} {row['stage']:<9} {_clip_text(reason, 90)}"
            )
    return "\n".join(escape(line) for line in lines)


_VIDEO_COLUMNS = "video_id, duration_s, num_clips, labels[1:3] AS labels, scores[1:3] AS scores"


def _top_labels(row: dict, sep: str, html_escape: bool = True) -> str:
    text = html.escape if html_escape else str
    return sep.join(
        f"{text(label)} {score:.2f}"
        for label, score in zip(row["labels"] or [], row["scores"] or [])
    )


def _clip_text(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _timeline(clips: list[dict], duration: float) -> str:
    segments = []
    for clip in clips:
        width = 100.0 * (clip["end_s"] - clip["start_s"]) / duration
        label = clip["label"] or ""
        hue = zlib.crc32(label.encode()) % 360
        segments.append(
            f"<div class=seg style='width:{width:.2f}%;background:hsl({hue},55%,45%)' "
            f"title='{clip['start_s']:.1f}-{clip['end_s']:.1f}s {html.escape(label)} "
            f"{clip['score'] or 0:.2f}'>{html.escape(label)}</div>"
        )
    return "".join(segments)


def _by_video(
    summary: Summary, table: str, columns: str, order: str, video_ids: list[str]
) -> dict[str, list[dict]]:
    """``video_id -> [row as a dict of columns]`` of ``table``'s standing rows of these
    videos, each video's rows in ``order``."""
    if not video_ids:
        return {}
    # The ids are bound as a parameter: a file's name never becomes SQL text.
    sql = f"""
        SELECT video_id, {columns}
        FROM ({standing_sql(table, 'list_contains($ids, video_id)')})
        ORDER BY video_id, {order}"""
    by_video: dict[str, list[dict]] = {}
    result = summary.con.execute(sql, {"ids": list(video_ids)})
    names = [d[0] for d in result.description][1:]
    for video_id, *values in _fetch(result):
        by_video.setdefault(video_id, []).append(dict(zip(names, values)))
    return by_video


def _clips_of(summary: Summary, video_ids: list[str]) -> dict[str, list[dict]]:
    columns = "start_s, end_s, labels[1] AS label, scores[1] AS score"
    return _by_video(summary, "clips", columns, "clip_index", video_ids)


def _shots_of(summary: Summary, video_ids: list[str]) -> dict[str, list[dict]]:
    """``video_id -> [shot]`` (start_s, end_s, kind; in order) of these videos; no pictures,
    which keeps the one-page report small (the explorer draws them)."""
    columns = "shot_index, start_s, end_s, kind"
    return _by_video(summary, "shots", columns, "shot_index", video_ids)


def _shot_bar(shots: list[dict], duration: float) -> str:
    """A video's shots as a bar under its clip timeline: widths by time, the boundary
    kind written in each, times in its title."""
    if not shots:
        return ""
    segments = []
    for shot in shots:
        width = 100.0 * (shot["end_s"] - shot["start_s"]) / duration
        kind = html.escape(shot["kind"] or "", True)
        shade = 88 if shot["shot_index"] % 2 else 78
        segments.append(
            f"<div class=shot style='width:{width:.2f}%;background:hsl(0,0%,{shade}%)' "
            f"title='shot {shot['shot_index']}: {kind} {shot['start_s']:.2f}-"
            f"{shot['end_s']:.2f}s'>{shot['start_s']:.1f}s {kind}</div>"
        )
    return f"<div class='bar shots'>{''.join(segments)}</div>"


def _fetch(result) -> Iterator[tuple]:
    while batch := result.fetchmany(4096):
        yield from batch


def write_html(summary: Summary, output: str, path: str, html_videos: int = 500) -> None:
    """A self-contained page of bounded size, whatever the index's size.

    Counts, the top-1 labels by number of videos, the first ``html_videos`` videos
    (by video_id) with top labels and a clip-by-clip timeline, the first
    ``html_videos`` failures, and the commands that list the rest.
    """
    counts = {table: summary.count(table) for table in ("videos", "clips", "failures")}
    label_counts = summary.con.execute(
        "SELECT labels[1] AS label, count(*) AS n FROM videos GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 30"
    ).fetchall()
    videos = summary.rows("videos", _VIDEO_COLUMNS, html_videos)
    clips_by_video = _clips_of(summary, [row["video_id"] for row in videos])
    shots_by_video = _shots_of(summary, [row["video_id"] for row in videos])
    q = html.escape(output)
    parts = [
        "<!doctype html><meta charset=utf-8><title>video-index report</title>",
        "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}"
        ".bar{display:flex;height:18px;min-width:400px}.seg{border-right:1px solid #fff;"
        "overflow:hidden;font-size:10px;color:#fff;white-space:nowrap}"
        "code{background:#f4f4f4;padding:2px 4px}.shot{border-right:1px solid #fff;"
        "overflow:hidden;font-size:10px;white-space:nowrap;color:#222}</style>",
        f"<h1>video-index: {q}</h1>",
        f"<p>{counts['videos']} videos, {counts['failures']} failures, "
        f"{counts['clips']} clips</p>",
        "<h2>Top labels</h2><table><tr><th>top-1 label of the video</th><th>videos</th></tr>",
        *(f"<tr><td>{html.escape(str(label))}</td><td>{n}</td></tr>" for label, n in label_counts),
        "</table>",
        f"<h2>Videos ({len(videos)} of {counts['videos']}, by video_id)</h2>",
        "<table><tr><th>video</th><th>duration</th><th>top labels</th>"
        "<th>timeline (top-1 per clip; shots below, with the boundary that starts each)</th></tr>",
    ]
    for row in videos:
        duration = max(row["duration_s"] or 0.0, 1e-6)
        timeline = _timeline(clips_by_video.get(row["video_id"], []), duration)
        shot_bar = _shot_bar(shots_by_video.get(row["video_id"], []), duration)
        parts.append(
            f"<tr><td>{html.escape(row['video_id'])}</td><td>{duration:.1f}s</td>"
            f"<td>{_top_labels(row, '<br>')}</td>"
            f"<td><div class=bar>{timeline}</div>{shot_bar}</td></tr>"
        )
    parts.append("</table>")
    if counts["videos"] > len(videos):
        parts.append(
            f"<p>The other {counts['videos'] - len(videos)} videos: "
            f'<code>video-index query {q} "SELECT * FROM videos ORDER BY video_id '
            f'LIMIT 1000 OFFSET {len(videos)}"</code>; moments of a class: '
            f"<code>video-index search {q} WORDS</code>.</p>"
        )
    if counts["failures"]:
        failures = summary.rows("failures", "*", html_videos)
        parts.append(
            f"<h2>Failures ({len(failures)} of {counts['failures']})</h2>"
            "<table><tr><th>video</th><th>stage</th><th>reason</th></tr>"
        )
        for row in failures:
            parts.append(
                f"<tr><td>{html.escape(row['video_id'])}</td><td>{html.escape(row['stage'])}</td>"
                f"<td>{html.escape(row['error_type'] or '')}: {html.escape(row['message'] or '')}</td></tr>"
            )
        parts.append("</table>")
    with fsspec.open(path, "w") as f:
        f.write("\n".join(parts))
