"""Summarise: clip outcomes → a video's ``VideoOutcome`` → its rows.

Takes, flattened into one PCollection, each video's ``DecodeResult`` and its clips'
outcomes (``ClipPrediction`` or an inference ``Failure``), makes one ``VideoOutcome``
a video (``VideoSummary``, Beam-free) and gives its rows for the three tables
(``transforms.rows``, as the whole-video path does). A video ends in exactly one place: if a stage failed it, one
``failures`` row and none of its clips; else one ``videos`` row and its ``clips``.

Scores are softmax probabilities. A video's scores are the mean of its clips'
probability vectors (every clip weighs the same), top-k of it.

Why no GroupByKey on the main path: decode, inference and this step are fused, so
a video's clips and its DecodeResult arrive in the bundle that decoded it. The
DoFn finishes a video as soon as its DecodeResult and ``num_clips`` clip outcomes
are in, so rows flow to the sink while the job runs (live progress, committed
output if the run is killed) and memory holds only unfinished videos. Whatever is
unfinished at the end of a bundle (a runner that did not fuse) takes a keyed
fallback path through a GroupByKey and is finished there by the same code.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.context import RunContext
from transforms.metrics import StageMetrics
from transforms.records import (
    ClipPrediction,
    ClipScores,
    DecodeResult,
    Failure,
    VideoOutcome,
)
from transforms.rows import outcome_rows
from transforms.scores import clip_scores, softmax, top_k
from video_index.schemas import EMBEDDING_DTYPE

STAGE = "summarise"

Outcome = Union[DecodeResult, ClipPrediction, Failure]


def video_key(outcome: Outcome) -> tuple[str, str]:
    if isinstance(outcome, ClipPrediction):
        return outcome.key.video_id, outcome.key.uri
    if isinstance(outcome, DecodeResult):
        return outcome.ref.video_id, outcome.ref.uri
    return outcome.video_id, outcome.uri


class VideoSummary:
    """One video's outcomes as they arrive, in any order; Beam-free."""

    def __init__(self, labels: Sequence[str], top_k: int):
        self._labels = labels
        self._top_k = top_k
        self.result: Optional[DecodeResult] = None
        self._clip_failures: list[Failure] = []
        self._clips: list[ClipScores] = []
        self._prob_sum: Optional[np.ndarray] = None
        self._outcomes = 0

    def add(self, outcome: Outcome) -> None:
        if isinstance(outcome, DecodeResult):
            self.result = outcome
            return
        self._outcomes += 1
        if isinstance(outcome, Failure):
            self._clip_failures.append(outcome)
            return
        probs = softmax(outcome.logits)
        self._prob_sum = probs if self._prob_sum is None else self._prob_sum + probs
        key = outcome.key
        scores = clip_scores(
            key.clip_index, key.start_s, key.end_s, probs, self._labels, self._top_k
        )
        # Only where the run makes them: the sink's clips schema has these columns then.
        if outcome.embedding is not None:
            scores = scores._replace(embedding=outcome.embedding.astype(EMBEDDING_DTYPE))
        if key.thumbnail is not None:
            scores = scores._replace(thumbnail=key.thumbnail)
        self._clips.append(scores)

    @property
    def complete(self) -> bool:
        return self.result is not None and self._outcomes >= self.result.num_clips

    def outcome(self) -> VideoOutcome:
        """The finished video: its info, clips (by index) and top-k, or its failure."""
        result = self.result
        if result is None:
            raise ValueError("outcome() before the video's DecodeResult arrived")
        ref = result.ref
        failure = result.failure
        if failure is None and self._clip_failures:
            failure = self._clip_failures[0]
        if failure is None and (result.info is None or self._outcomes != result.num_clips):
            failure = Failure(ref.video_id, ref.uri, STAGE, "MissingClips", "clip count mismatch")
        if failure is not None:
            return VideoOutcome(ref, failure=failure)
        labels, scores = top_k(self._prob_sum / self._outcomes, self._labels, self._top_k)
        clips = tuple(sorted(self._clips, key=lambda clip: clip.clip_index))
        return VideoOutcome(ref, result.info, clips, tuple(labels), tuple(scores))


class _SummariseFn(beam.DoFn):
    """Finishes videos within the bundle; hands the unfinished to the fallback."""

    def __init__(self, labels: tuple[str, ...], top_k: int, run: RunContext):
        self._args = (labels, top_k)
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def start_bundle(self):
        self._open: dict[tuple[str, str], tuple[VideoSummary, list[Outcome]]] = {}

    def process(self, outcome: Outcome):
        key = video_key(outcome)
        summary, seen = self._open.setdefault(key, (VideoSummary(*self._args), []))
        summary.add(outcome)
        seen.append(outcome)
        if summary.complete:
            del self._open[key]
            yield from _emit(summary, self._run, self._metrics)

    def finish_bundle(self):
        for key, (_, seen) in self._open.items():
            for outcome in seen:
                # Logits only (no frames) cross this shuffle, and only when unfused.
                yield pvalue.TaggedOutput(
                    "partial",
                    WindowedValue((key, outcome), MIN_TIMESTAMP, [GlobalWindow()]),
                )
        self._open = {}


class _FinishFn(beam.DoFn):
    def __init__(self, labels: tuple[str, ...], top_k: int, run: RunContext):
        self._args = (labels, top_k)
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def process(self, keyed: tuple[tuple[str, str], Iterable[Outcome]]):
        _, outcomes = keyed
        summary = VideoSummary(*self._args)
        for outcome in outcomes:
            summary.add(outcome)
        if summary.result is None:  # cannot happen: decode always ends with one
            return
        yield from _emit(summary, self._run, self._metrics)


def _emit(summary: VideoSummary, run: RunContext, metrics: StageMetrics):
    for table, row in outcome_rows(summary.outcome(), run):
        if table == "videos":
            metrics.indexed()
        elif table == "failures":
            metrics.failure()
        yield table, row


class Summarise(beam.PTransform):
    """Named outcome collections → ``{name: (table, row)}``, plus ``{'unfused': ...}``.

    Each input (``DecodeResult | ClipPrediction | Failure``) is finished by its own
    ParDo, so each stays fused with the stage that made it (no merge in front of
    it); the rows come out as ``(table, row)`` pairs, clips before their video.
    """

    def __init__(self, labels: Sequence[str], top_k: int, run: RunContext):
        super().__init__()
        self._args = (tuple(labels), top_k, run)

    def expand(self, inputs: dict[str, pvalue.PCollection]) -> dict[str, pvalue.PCollection]:
        rows, partials = {}, []
        for name, outcomes in inputs.items():
            finished = outcomes | f"Finish{name}" >> beam.ParDo(
                _SummariseFn(*self._args)
            ).with_outputs("partial", main="rows")
            rows[name] = finished.rows
            partials.append(finished.partial)
        rows["Unfused"] = (
            partials
            | "Unfinished" >> beam.Flatten()
            | "GroupUnfinished" >> beam.GroupByKey()
            | "FinishUnfinished" >> beam.ParDo(_FinishFn(*self._args))
        )
        return rows
