"""Records → table rows: the one place a row of ``videos/``, ``clips/``, ``shots/``,
``cues/`` or ``failures/`` is built (the schemas are in ``video_index.schemas``; a new column goes in
both).

Takes a video's ``VideoOutcome`` (from the clip path's Summarise or a whole-video
handler) or a ``Failure`` (e.g. from the manifest), and the ``RunContext``; gives
``(table, row dict)`` pairs for WriteIndex.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Iterator, Optional, Sequence

from transforms.context import RunContext
from transforms.records import Cue, Failure, Shot, VideoOutcome, VideoRef

Row = tuple[str, dict]  # (table, row)


def failure_row(failure: Failure, run: RunContext, ref: Optional[VideoRef] = None) -> dict:
    """A ``failures/`` row; ``ref`` gives the size and version when they are known."""
    return {
        **failure._asdict(),
        "size": ref.size if ref else None,
        "version": ref.version if ref else None,
        "model": run.model_name,
        "run_id": run.run_id,
    }


def shot_of(shots: Sequence[Shot], start_s: float, end_s: float) -> Optional[int]:
    """The index of the shot holding the middle of ``[start_s, end_s]`` (``shots`` in
    order, covering the video), or None without shots; a middle before the first
    shot is in the first, one past the last in the last."""
    if not shots:
        return None
    middle = (start_s + end_s) / 2
    position = bisect_right([shot.start_s for shot in shots], middle) - 1
    return shots[max(0, position)].index


def cue_of(cues: Sequence[Cue], start_s: float, end_s: float) -> Optional[str]:
    """The kind of the cue that covers at least half of ``[start_s, end_s]``, or None."""
    length = max(end_s - start_s, 1e-9)
    for cue in cues:
        if min(end_s, cue.end_s) - max(start_s, cue.start_s) >= length / 2:
            return cue.kind
    return None


def outcome_rows(outcome: VideoOutcome, run: RunContext) -> Iterator[Row]:
    """One video's rows: its ('clips', row)s and ('shots', row)s then ('videos', row);
    or ('failures', row).

    Clips and shots before their video: a sink that commits in this order never holds a
    video row whose clips are not committed (what a resumed run relies on).
    """
    ref = outcome.ref
    if outcome.failure is not None:
        yield "failures", failure_row(outcome.failure, run, ref)
        return
    info = outcome.info
    if info is None:
        raise ValueError(f"outcome of {ref.uri} has neither info nor failure")
    for clip in outcome.clips:
        row = {
            "video_id": ref.video_id,
            "uri": ref.uri,
            "clip_index": clip.clip_index,
            "start_s": clip.start_s,
            "end_s": clip.end_s,
            "labels": list(clip.labels),
            "scores": list(clip.scores),
            "model": run.model_name,
            "run_id": run.run_id,
        }
        # Optional columns: only where the run writes them (schemas.clips_schema).
        if clip.embedding is not None:
            row["embedding"] = clip.embedding
        if clip.thumbnail is not None:
            row["thumbnail"] = clip.thumbnail
        if info.shots:
            row["shot_index"] = shot_of(info.shots, clip.start_s, clip.end_s)
            row["cue"] = cue_of(info.cues, clip.start_s, clip.end_s)
        yield "clips", row
    for shot in info.shots:
        yield "shots", {
            "video_id": ref.video_id,
            "uri": ref.uri,
            "shot_index": shot.index,
            "start_s": shot.start_s,
            "end_s": shot.end_s,
            "kind": shot.kind,
            "confidence": shot.confidence,
            "thumbnail": shot.thumbnail,
            "model": run.model_name,
            "run_id": run.run_id,
        }
    for index, cue in enumerate(info.cues):
        yield "cues", {
            "video_id": ref.video_id,
            "uri": ref.uri,
            "cue_index": index,
            "kind": cue.kind,
            "start_s": cue.start_s,
            "end_s": cue.end_s,
            "model": run.model_name,
            "run_id": run.run_id,
        }
    yield "videos", {
        "video_id": ref.video_id,
        "uri": ref.uri,
        "size": ref.size,
        "version": ref.version,
        "duration_s": info.duration_s,
        "fps": info.fps,
        "width": info.width,
        "height": info.height,
        "num_frames": info.num_frames,
        "decode_errors": info.decode_errors,
        "discontinuities": info.discontinuities,
        "stream_index": info.stream_index,
        "codec": info.codec,
        "sample_aspect_ratio": info.sample_aspect_ratio,
        "color_transfer": info.color_transfer,
        "num_clips": info.num_clips,
        "labels": list(outcome.labels),
        "scores": list(outcome.scores),
        "model": run.model_name,
        "run_id": run.run_id,
    }
