"""Read an index back: counts, a summary table, the run record and an HTML report.

An index folder holds ``videos/``, ``clips/``, ``failures/`` (Parquet) and
``runs/`` (one JSON record per run); ``transforms.index`` reads the tables.
"""

from __future__ import annotations

import dataclasses
import html
import json
import platform
import sys
import zlib
from typing import Optional

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from transforms.index import current_rows, read_table  # noqa: F401 - re-exported


@dataclasses.dataclass
class Summary:
    videos: pa.Table
    clips: pa.Table
    failures: pa.Table
    run_id: Optional[str]

    def run_rows(self, table: str) -> pa.Table:
        t = getattr(self, table)
        if self.run_id is None or t.num_rows == 0:
            return t
        return t.filter(pc.equal(t.column("run_id"), self.run_id))


def load_summary(output: str, run_id: Optional[str] = None) -> Summary:
    fs, root = fsspec.core.url_to_fs(output.rstrip("/"))
    if not fs.exists(root):
        raise FileNotFoundError(f"no index at {output}")
    rows = current_rows(output)
    return Summary(rows["videos"], rows["clips"], rows["failures"], run_id)


def export_tables(summary: Summary, dest: str) -> list[str]:
    """The standing rows as ``DEST/{videos,clips,failures}.parquet``; returns their URIs.

    The index folders keep every committed row (a changed video's old row, clips of
    a killed run's unfinished video, a retried bundle's repeat) and readers take the
    standing ones; an export is that view as three plain files, for tools that read
    Parquet without knowing the rule.
    """
    import pyarrow.parquet as pq

    fs, root = fsspec.core.url_to_fs(dest.rstrip("/"))
    fs.makedirs(root, exist_ok=True)
    written = []
    for table in ("videos", "clips", "failures"):
        path = f"{root}/{table}.parquet"
        with fs.open(path, "wb") as f:
            pq.write_table(getattr(summary, table), f, compression="zstd")
        written.append(fs.unstrip_protocol(path))
    return written


def write_run_record(config, summary: Summary, elapsed_s: float, skipped: int = 0) -> dict:
    """``runs/RUN_ID.json``: model, weights hash, parameters, counts, versions."""
    import apache_beam
    import numpy

    spec = config.model
    record = {
        "run_id": config.run_id,
        "input": config.input,
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
        "parameters": {
            "clip_stride_s": config.sampling.stride_s,
            "max_clips_per_video": config.sampling.max_clips,
            "short_video": config.sampling.short_video,
            "top_k": config.top_k,
            "batch_size": config.batch_size,
            "reindex": config.reindex,
            "limits": dataclasses.asdict(config.limits),
        },
        "counts": {
            "videos": summary.run_rows("videos").num_rows,
            "clips": summary.run_rows("clips").num_rows,
            "failures": summary.run_rows("failures").num_rows,
            "skipped_unchanged": skipped,
        },
        "elapsed_s": round(elapsed_s, 1),
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


def _optional_versions() -> dict:
    versions = {}
    for name in ("tensorflow", "av", "cv2"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return versions


def format_summary(summary: Summary, output: str, record: Optional[dict], limit: int = 20) -> str:
    """Counts and a small table of top labels per video, for the terminal."""
    videos, failures = summary.run_rows("videos"), summary.run_rows("failures")
    clips = summary.run_rows("clips")
    lines = []
    scope = f"run {summary.run_id}" if summary.run_id else "index"
    lines.append(
        f"{scope}: {videos.num_rows} videos indexed, {failures.num_rows} failed, "
        f"{clips.num_rows} clips -> {output}/{{videos,clips,failures}}/"
    )
    if record:
        skipped = record["counts"].get("skipped_unchanged", 0)
        if skipped:
            new = videos.num_rows + failures.num_rows
            lines.append(
                f"{skipped} unchanged videos already in the index were skipped"
                + (" (nothing new to index)" if not new else "")
                + "; --reindex redoes them"
            )
        lines.append(f"run record: {output}/runs/{record['run_id']}.json ({record['elapsed_s']} s)")
    if videos.num_rows:
        lines.append("")
        lines.append(f"{'video':<44} {'dur_s':>6} {'clips':>5}  top labels")
        rows = sorted(videos.to_pylist(), key=lambda r: r["video_id"])
        for row in rows[:limit]:
            labels = ", ".join(
                f"{label} {score:.2f}" for label, score in zip(row["labels"][:3], row["scores"][:3])
            )
            lines.append(
                f"{_clip_text(row['video_id'], 44):<44} {row['duration_s'] or 0:>6.1f} "
                f"{row['num_clips']:>5}  {labels}"
            )
        if len(rows) > limit:
            lines.append(f"... and {len(rows) - limit} more (video-index show {output})")
    if failures.num_rows:
        lines.append("")
        lines.append(f"{'failed video':<44} {'stage':<9} reason")
        for row in sorted(failures.to_pylist(), key=lambda r: r["video_id"])[:limit]:
            reason = f"{row['error_type']}: {row['message']}".replace("\n", " ")
            lines.append(
                f"{_clip_text(row['video_id'], 44):<44} {row['stage']:<9} {_clip_text(reason, 90)}"
            )
    return "\n".join(lines)


def _clip_text(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def write_html(summary: Summary, output: str, path: str) -> None:
    """A self-contained page: per video its top labels and a clip-by-clip timeline."""
    clips_by_video: dict[str, list[dict]] = {}
    for row in summary.clips.to_pylist():
        clips_by_video.setdefault(row["video_id"], []).append(row)
    parts = [
        "<!doctype html><meta charset=utf-8><title>video-index report</title>",
        "<style>body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{padding:4px 8px;border-bottom:1px solid #ddd;vertical-align:top}"
        ".bar{display:flex;height:18px;min-width:400px}.seg{border-right:1px solid #fff;"
        "overflow:hidden;font-size:10px;color:#fff;white-space:nowrap}</style>",
        f"<h1>video-index: {html.escape(output)}</h1>",
        f"<p>{summary.videos.num_rows} videos, {summary.failures.num_rows} failures, "
        f"{summary.clips.num_rows} clips</p>",
        "<table><tr><th>video</th><th>duration</th><th>top labels</th><th>timeline (top-1 per clip)</th></tr>",
    ]
    for row in sorted(summary.videos.to_pylist(), key=lambda r: r["video_id"]):
        labels = "<br>".join(
            f"{html.escape(label)} {score:.2f}"
            for label, score in zip(row["labels"][:3], row["scores"][:3])
        )
        duration = max(row["duration_s"] or 0.0, 1e-6)
        segments = []
        for clip in sorted(clips_by_video.get(row["video_id"], []), key=lambda c: c["clip_index"]):
            width = 100.0 * (clip["end_s"] - clip["start_s"]) / duration
            label = clip["labels"][0] if clip["labels"] else ""
            hue = zlib.crc32(label.encode()) % 360
            segments.append(
                f"<div class=seg style='width:{width:.2f}%;background:hsl({hue},55%,45%)' "
                f"title='{clip['start_s']:.1f}-{clip['end_s']:.1f}s {html.escape(label)} "
                f"{clip['scores'][0]:.2f}'>{html.escape(label)}</div>"
            )
        parts.append(
            f"<tr><td>{html.escape(row['video_id'])}</td><td>{duration:.1f}s</td>"
            f"<td>{labels}</td><td><div class=bar>{''.join(segments)}</div></td></tr>"
        )
    parts.append("</table>")
    if summary.failures.num_rows:
        parts.append("<h2>Failures</h2><table><tr><th>video</th><th>stage</th><th>reason</th></tr>")
        for row in sorted(summary.failures.to_pylist(), key=lambda r: r["video_id"]):
            parts.append(
                f"<tr><td>{html.escape(row['video_id'])}</td><td>{html.escape(row['stage'])}</td>"
                f"<td>{html.escape(row['error_type'] or '')}: {html.escape(row['message'] or '')}</td></tr>"
            )
        parts.append("</table>")
    with fsspec.open(path, "w") as f:
        f.write("\n".join(parts))
