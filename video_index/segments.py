"""Events: runs of clips of one video with the same top label, merged.

Beam-free. The rule, in one sentence: within one video, the clips whose top-1 label
is L and whose top-1 score is at least ``min_score`` form one event per run of such
clips in ``clip_index`` order, where two members in a row may be at most
``max_gap_clips`` clips apart (clips that are not members: another top label, or a
score below the threshold). Clips are numbered in time order (``clip_index``), so
consecutive and overlapping clips are neighbours; a stream model's per-second rows
are numbered the same way and merge the same way. Events of different labels may
overlap (a bridged clip of another label is an event of its own if it passes).

Technical cues (black frames, colour bars, still pictures: ``cues/``) make no event: a
clip with a ``cue`` is no member. Shots bound events: where clips carry ``shot_index`` (the shot holding the clip's
middle, ``transforms.shots``), only clips of one shot merge, and an event's span is cut
to its shot's ``[start_s, end_s)``, so no event crosses a shot boundary.

An event spans ``[min(start_s), max(end_s)]`` of its members (within its shot);
``num_clips`` counts members only; ``max_score`` and ``mean_score`` are over members' top-1 scores.
Compare Google Video Intelligence's segment labels and Amazon Rekognition's
``AggregateBy=SEGMENTS``: one row per (label, time span) instead of one per clip.

The rule is written twice: ``merge_events`` (pure Python, the reference) and
``segments_sql`` (the ``segments`` view of ``video_index.query``); tests hold them to
the same answers.
"""

from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple, Optional

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
    """One clip's top-1: ``clip_index`` (time order), seconds, label and its score;
    ``shot_index``: the shot holding its middle, None where shots were not detected."""

    clip_index: int
    start_s: float
    end_s: float
    label: Optional[str]
    score: Optional[float]
    shot_index: Optional[int] = None
    cue: Optional[str] = None  # a technical cue's kind: such a clip makes no event


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
    shots: Optional[Mapping[int, tuple[float, float]]] = None,
) -> list[Event]:
    """The events of one video's clips (any order), sorted by (start_s, label).

    ``shots``: ``shot_index -> (start_s, end_s)``, the spans events are cut to.
    Raises ValueError for thresholds out of range (``check_thresholds``).
    """
    check_thresholds(min_score, max_gap_clips)
    by_label: dict[tuple[str, Optional[int]], list[ClipTop]] = {}
    for clip in clips:
        if clip.cue is not None:
            continue
        if clip.label is not None and clip.score is not None and clip.score >= min_score:
            by_label.setdefault((clip.label, clip.shot_index), []).append(clip)
    events = []
    for (label, shot), members in by_label.items():
        bounds = (shots or {}).get(shot) if shot is not None else None
        members.sort(key=lambda c: c.clip_index)
        run = [members[0]]
        for clip in members[1:]:
            if clip.clip_index - run[-1].clip_index <= max_gap_clips + 1:
                run.append(clip)
            else:
                events.append(_event(label, run, bounds))
                run = [clip]
        events.append(_event(label, run, bounds))
    return sorted(events, key=lambda e: (e.start_s, e.label, e.end_s))


def _event(label: str, run: list[ClipTop], shot: Optional[tuple[float, float]]) -> Event:
    scores = [float(c.score) for c in run]
    start_s, end_s = min(c.start_s for c in run), max(c.end_s for c in run)
    if shot is not None:
        start_s, end_s = max(start_s, shot[0]), min(end_s, shot[1])
    return Event(
        label,
        start_s,
        end_s,
        len(run),
        max(scores),
        sum(scores) / len(scores),
    )


def segments_sql(clips: str, shots: Optional[str] = None) -> str:
    """The same rule in DuckDB SQL over the relation ``clips`` (a view name or subquery).

        ``clips`` needs the columns of the ``clips`` table; with ``shots`` (the relation of
        the ``shots`` table) also ``shot_index`` and ``cue``: events stay inside their shot,
    and clips in a technical cue make none. Thresholds are read at query
        time from the DuckDB variables ``segment_min_score`` and ``segment_max_gap``
        (``SET VARIABLE``), so a view built on this follows them without being rebuilt.
        Output columns: video_id, uri, label, start_s, end_s, num_clips, max_score,
        mean_score, model, run_id.
    """
    shot = "shot_index" if shots else "NULL::INTEGER AS shot_index"
    no_cue = "AND cue IS NULL" if shots else ""
    if shots:
        bounds = f"""
LEFT JOIN {shots} AS s
    ON s.video_id = e.video_id AND s.uri = e.uri AND s.shot_index = e.shot_index
    AND s.run_id = e.run_id"""
        start = "greatest(e.start_s, coalesce(s.start_s, e.start_s))"
        end = "least(e.end_s, coalesce(s.end_s, e.end_s))"
    else:
        bounds, start, end = "", "e.start_s", "e.end_s"
    return f"""
WITH members AS (
    SELECT video_id, uri, clip_index, start_s, end_s, labels[1] AS label,
           scores[1] AS score, model, run_id, {shot}
    FROM {clips}
    WHERE labels[1] IS NOT NULL AND scores[1] >= getvariable('segment_min_score') {no_cue}
), marked AS (
    SELECT *,
        CASE WHEN clip_index - lag(clip_index) OVER by_label
                  <= getvariable('segment_max_gap') + 1 THEN 0 ELSE 1 END AS starts
    FROM members
    WINDOW by_label AS (PARTITION BY video_id, uri, label, shot_index ORDER BY clip_index)
), numbered AS (
    SELECT *, sum(starts) OVER (
        PARTITION BY video_id, uri, label, shot_index ORDER BY clip_index
        ROWS UNBOUNDED PRECEDING
    ) AS event
    FROM marked
), events AS (
    SELECT video_id, uri, label, shot_index, min(start_s) AS start_s, max(end_s) AS end_s,
           count(*)::INTEGER AS num_clips, max(score)::DOUBLE AS max_score,
           avg(score::DOUBLE) AS mean_score, any_value(model) AS model,
           any_value(run_id) AS run_id
    FROM numbered
    GROUP BY video_id, uri, label, shot_index, event
)
SELECT e.video_id, e.uri, e.label, {start} AS start_s, {end} AS end_s, e.num_clips,
       e.max_score, e.mean_score, e.model, e.run_id
FROM events AS e{bounds}"""
