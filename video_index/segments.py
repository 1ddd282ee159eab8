"""Events: runs of clips of one video with the same top label, merged.

Beam-free. The rule, in one sentence: within one video, the clips whose top-1 label
is L and whose top-1 score is at least ``min_score`` form one event per run of such
clips in ``clip_index`` order, where two members in a row may be at most
``max_gap_clips`` clips apart (clips that are not members: another top label, or a
score below the threshold). Clips are numbered in time order (``clip_index``), so
consecutive and overlapping clips are neighbours; a stream model's per-second rows
are numbered the same way and merge the same way. Events of different labels may
overlap (a bridged clip of another label is an event of its own if it passes).

An event spans ``[min(start_s), max(end_s)]`` of its members; ``num_clips`` counts
members only; ``max_score`` and ``mean_score`` are over members' top-1 scores.
Compare Google Video Intelligence's segment labels and Amazon Rekognition's
``AggregateBy=SEGMENTS``: one row per (label, time span) instead of one per clip.

The rule is written twice: ``merge_events`` (pure Python, the reference) and
``segments_sql`` (the ``segments`` view of ``video_index.query``); tests hold them to
the same answers.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

__all__ = [
    "DEFAULT_MAX_GAP_CLIPS",
    "DEFAULT_MIN_SCORE",
    "ClipTop",
    "Event",
    "check_thresholds",
    "merge_events",
    "segments_sql",
]

# Defaults. 0.5: a softmax top-1 at or above one half is more likely than all other
# classes together; I3D's clips of the acceptance media score 0.6-1.0 on their true
# class. One clip of gap: a single doubtful clip inside an action does not split it.
DEFAULT_MIN_SCORE = 0.5
DEFAULT_MAX_GAP_CLIPS = 1


class ClipTop(NamedTuple):
    """One clip's top-1: ``clip_index`` (time order), seconds, label and its score."""

    clip_index: int
    start_s: float
    end_s: float
    label: Optional[str]
    score: Optional[float]


class Event(NamedTuple):
    label: str
    start_s: float
    end_s: float
    num_clips: int
    max_score: float
    mean_score: float


def check_thresholds(min_score: float, max_gap_clips: int) -> None:
    """Raises ValueError unless ``0 <= min_score <= 1`` and ``max_gap_clips >= 0``."""
    if not 0.0 <= min_score <= 1.0:
        raise ValueError(f"min score must be in [0, 1], got {min_score}")
    if int(max_gap_clips) != max_gap_clips or max_gap_clips < 0:
        raise ValueError(f"max gap must be a whole number of clips >= 0, got {max_gap_clips}")


def merge_events(
    clips: Iterable[ClipTop],
    min_score: float = DEFAULT_MIN_SCORE,
    max_gap_clips: int = DEFAULT_MAX_GAP_CLIPS,
) -> list[Event]:
    """The events of one video's clips (any order), sorted by (start_s, label).

    Raises ValueError for thresholds out of range (``check_thresholds``).
    """
    check_thresholds(min_score, max_gap_clips)
    by_label: dict[str, list[ClipTop]] = {}
    for clip in clips:
        if clip.label is not None and clip.score is not None and clip.score >= min_score:
            by_label.setdefault(clip.label, []).append(clip)
    events = []
    for label, members in by_label.items():
        members.sort(key=lambda c: c.clip_index)
        run = [members[0]]
        for clip in members[1:]:
            if clip.clip_index - run[-1].clip_index <= max_gap_clips + 1:
                run.append(clip)
            else:
                events.append(_event(label, run))
                run = [clip]
        events.append(_event(label, run))
    return sorted(events, key=lambda e: (e.start_s, e.label, e.end_s))


def _event(label: str, run: list[ClipTop]) -> Event:
    scores = [float(c.score) for c in run]
    return Event(
        label,
        min(c.start_s for c in run),
        max(c.end_s for c in run),
        len(run),
        max(scores),
        sum(scores) / len(scores),
    )


def segments_sql(clips: str) -> str:
    """The same rule in DuckDB SQL over the relation ``clips`` (a view name or subquery).

    ``clips`` needs the columns of the ``clips`` table. Thresholds are read at query
    time from the DuckDB variables ``segment_min_score`` and ``segment_max_gap``
    (``SET VARIABLE``), so a view built on this follows them without being rebuilt.
    Output columns: video_id, uri, label, start_s, end_s, num_clips, max_score,
    mean_score, model, run_id.
    """
    return f"""
WITH members AS (
    SELECT video_id, uri, clip_index, start_s, end_s, labels[1] AS label,
           scores[1] AS score, model, run_id
    FROM {clips}
    WHERE labels[1] IS NOT NULL AND scores[1] >= getvariable('segment_min_score')
), marked AS (
    SELECT *,
        CASE WHEN clip_index - lag(clip_index) OVER by_label
                  <= getvariable('segment_max_gap') + 1 THEN 0 ELSE 1 END AS starts
    FROM members
    WINDOW by_label AS (PARTITION BY video_id, uri, label ORDER BY clip_index)
), numbered AS (
    SELECT *, sum(starts) OVER (
        PARTITION BY video_id, uri, label ORDER BY clip_index ROWS UNBOUNDED PRECEDING
    ) AS event
    FROM marked
)
SELECT video_id, uri, label, min(start_s) AS start_s, max(end_s) AS end_s,
       count(*)::INTEGER AS num_clips, max(score)::DOUBLE AS max_score,
       avg(score::DOUBLE) AS mean_score, any_value(model) AS model,
       any_value(run_id) AS run_id
FROM numbered
GROUP BY video_id, uri, label, event"""
