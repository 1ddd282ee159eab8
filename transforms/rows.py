"""Records → table rows: the one place a row of ``videos/``, ``clips/`` or ``failures/``
is built (the schemas are in ``video_index.schemas``; a new column goes in both).

Takes a video's ``VideoOutcome`` (from the clip path's Summarise or a whole-video
handler) or a ``Failure`` (e.g. from the manifest), and the ``RunContext``; gives
``(table, row dict)`` pairs for WriteIndex.
"""

from __future__ import annotations

from typing import Iterator, Optional

from transforms.context import RunContext
from transforms.records import Failure, VideoOutcome, VideoRef

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


def outcome_rows(outcome: VideoOutcome, run: RunContext) -> Iterator[Row]:
    """One video's rows: its ('clips', row)s then ('videos', row); or ('failures', row).

    Clips before their video: a sink that commits in this order never holds a video row
    whose clips are not committed (what a resumed run relies on).
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
        yield "clips", row
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
        "num_clips": info.num_clips,
        "labels": list(outcome.labels),
        "scores": list(outcome.scores),
        "model": run.model_name,
        "run_id": run.run_id,
    }
