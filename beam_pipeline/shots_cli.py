"""``video-index shots OUT --video ID [--format csv|edl|json]``: a video's shot list.

Reads the standing ``shots`` rows of one video (``video_index.query``) and writes them
to stdout as CSV or JSON (``shot_index``, ``start_s``, ``end_s``, ``kind``,
``confidence``, and SMPTE timecodes ``start_tc`` / ``end_tc``), or as a CMX 3600 edit
decision list: one event per shot, the video as its one source (reel ``AX``, named in a
``* FROM CLIP NAME:`` comment), record times equal to source times, every event a cut
(``C``; the boundary's kind and confidence in a ``* SHOT:`` comment, since a dissolve
event would need the transition's length, which is not measured).

Timecodes count frames at the video's rate rounded to a whole number (29.97 counts as
30, non-drop-frame, ``FCM: NON-DROP FRAME``), from 00:00:00:00 at time 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import PurePosixPath
from typing import NamedTuple, Optional, TextIO

from beam_pipeline.query_cli import (
    CommandError,
    add_index_flags,
    open_index,
    parser,
    write_rows,
)
from beam_pipeline.terminal import escape

__all__ = ["ShotRow", "edl", "shots_command", "timecode"]

COLUMNS = ("shot_index", "start_s", "end_s", "kind", "confidence", "start_tc", "end_tc")


class ShotRow(NamedTuple):
    shot_index: int
    start_s: float
    end_s: float
    kind: str
    confidence: float


def timecode(seconds: float, fps: float) -> str:
    """``HH:MM:SS:FF`` of ``seconds`` at ``fps`` rounded to a whole rate (at least 1),
    non-drop-frame; negative times are 00:00:00:00."""
    rate = max(1, round(fps or 0))
    frames = max(0, round(seconds * rate))
    ff = frames % rate
    total_s = frames // rate
    return f"{total_s // 3600:02d}:{total_s // 60 % 60:02d}:{total_s % 60:02d}:{ff:02d}"


def edl(title: str, clip_name: str, shots: list[ShotRow], fps: float) -> str:
    """The CMX 3600 text of ``shots`` (see the module docstring)."""
    lines = [f"TITLE: {_one_line(title)[:70]}", "FCM: NON-DROP FRAME", ""]
    for number, shot in enumerate(shots, start=1):
        start, end = timecode(shot.start_s, fps), timecode(shot.end_s, fps)
        lines.append(f"{number:03d}  AX       V     C        {start} {end} {start} {end}")
        lines.append(f"* FROM CLIP NAME: {_one_line(clip_name)}")
        lines.append(f"* SHOT: {shot.shot_index} {shot.kind} confidence {shot.confidence:.3f}")
        lines.append("")
    return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(escape(text).split())


def shots_command(argv: list[str], prog: str, out: Optional[TextIO] = None) -> int:
    p = parser(
        f"{prog} shots",
        "A video's shots (one camera take each: start, cut, fade or dissolve) as CSV, "
        "JSON or a CMX 3600 EDL for an editor.",
    )
    p.add_argument("output", help="the index folder (a run's --output)")
    p.add_argument("--video", required=True, help="the video's id (video_id)")
    p.add_argument("--format", choices=("csv", "edl", "json"), default="csv")
    add_index_flags(p)
    args = p.parse_args(argv)
    out = out or sys.stdout

    def work(con):
        video = con.execute(
            "SELECT uri, fps FROM videos WHERE video_id = ? ORDER BY uri LIMIT 1", [args.video]
        ).fetchone()
        rows = con.execute(
            "SELECT shot_index, start_s, end_s, kind, confidence FROM shots "
            "WHERE video_id = ? AND uri = ? ORDER BY shot_index",
            [args.video, video[0] if video else None],
        ).fetchall()
        return video, [ShotRow(*row) for row in rows]

    video, shots = open_index(args.output, args, work)
    if video is None:
        raise CommandError(f"no indexed video {args.video!r} in {args.output}")
    uri, fps = video
    if not shots:
        raise CommandError(
            f"video {args.video!r} has no shots (indexed with --no-shots, by a whole-video "
            "model, or before shots were detected)"
        )
    if args.format == "edl":
        out.write(edl(args.video, PurePosixPath(uri).name, shots, fps) + "\n")
        return 0
    rows = [(*shot, timecode(shot.start_s, fps), timecode(shot.end_s, fps)) for shot in shots]
    if args.format == "json":
        out.write(json.dumps([dict(zip(COLUMNS, row)) for row in rows], indent=1) + "\n")
        return 0
    write_rows(COLUMNS, iter([rows]), "csv", out)
    return 0
