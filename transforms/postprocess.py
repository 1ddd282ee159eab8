"""Summarise: clip outcomes → clip rows and one video row, or the video's failure row.

Takes, flattened into one PCollection, each video's ``DecodeResult`` and its clips'
outcomes (``ClipPrediction`` or an inference ``Failure``), and gives rows for the
three tables. A video ends in exactly one place: if a stage failed it, one
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

from typing import Iterable, Iterator, Optional, Sequence, Union

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from transforms.metrics import StageMetrics
from transforms.records import ClipPrediction, DecodeResult, Failure, decoded_columns

STAGE = "summarise"

Outcome = Union[DecodeResult, ClipPrediction, Failure]
Row = tuple[str, dict]  # (table, row)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, computed stably in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> tuple[list[str], list[float]]:
    """The k most probable labels and their probabilities, best first."""
    k = min(k, probs.shape[-1])
    order = np.argsort(-probs, kind="stable")[:k]
    return [labels[i] for i in order], [float(probs[i]) for i in order]


def video_key(outcome: Outcome) -> tuple[str, str]:
    if isinstance(outcome, ClipPrediction):
        return outcome.key.video_id, outcome.key.uri
    if isinstance(outcome, DecodeResult):
        return outcome.ref.video_id, outcome.ref.uri
    return outcome.video_id, outcome.uri


def failure_row(failure: Failure, size, version, model: str, run_id: str) -> dict:
    return {**failure._asdict(), "size": size, "version": version, "model": model, "run_id": run_id}


class VideoSummary:
    """One video's outcomes as they arrive, in any order; Beam-free."""

    def __init__(self, labels: Sequence[str], top_k: int, model: str, run_id: str):
        self._labels = labels
        self._top_k = top_k
        self._model = model
        self._run_id = run_id
        self.result: Optional[DecodeResult] = None
        self._clip_failures: list[Failure] = []
        self._clip_rows: list[dict] = []
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
        labels, scores = top_k(probs, self._labels, self._top_k)
        key = outcome.key
        self._clip_rows.append(
            {
                "video_id": key.video_id,
                "uri": key.uri,
                "clip_index": key.clip_index,
                "start_s": key.start_s,
                "end_s": key.end_s,
                "labels": labels,
                "scores": scores,
                "model": self._model,
                "run_id": self._run_id,
            }
        )

    @property
    def complete(self) -> bool:
        return self.result is not None and self._outcomes >= self.result.num_clips

    def rows(self) -> Iterator[Row]:
        """The finished video's rows: its ('clips', row)s then ('videos', row); or ('failures', row)."""
        result = self.result
        if result is None:
            raise ValueError("rows() before the video's DecodeResult arrived")
        ref = result.ref
        failure = result.failure
        if failure is None and self._clip_failures:
            failure = self._clip_failures[0]
        if failure is None and (result.info is None or self._outcomes != result.num_clips):
            failure = Failure(ref.video_id, ref.uri, STAGE, "MissingClips", "clip count mismatch")
        if failure is not None:
            yield "failures", failure_row(failure, ref.size, ref.version, self._model, self._run_id)
            return
        info = result.info
        labels, scores = top_k(self._prob_sum / self._outcomes, self._labels, self._top_k)
        # Clips before their video: a sink that commits in this order never holds a
        # video row whose clips are not committed (what a resumed run relies on).
        for row in sorted(self._clip_rows, key=lambda row: row["clip_index"]):
            yield "clips", row
        yield "videos", {
            "video_id": ref.video_id,
            "uri": ref.uri,
            "size": ref.size,
            "version": ref.version,
            **decoded_columns(info),
            "labels": labels,
            "scores": scores,
            "model": self._model,
            "run_id": self._run_id,
        }


class _SummariseFn(beam.DoFn):
    """Finishes videos within the bundle; hands the unfinished to the fallback."""

    def __init__(self, labels, top_k, model, run_id, progress_path):
        self._args = (tuple(labels), top_k, model, run_id)
        self._progress_path = progress_path

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)

    def start_bundle(self):
        self._open: dict[tuple[str, str], tuple[VideoSummary, list[Outcome]]] = {}

    def process(self, outcome: Outcome):
        key = video_key(outcome)
        summary, seen = self._open.setdefault(key, (VideoSummary(*self._args), []))
        summary.add(outcome)
        seen.append(outcome)
        if summary.complete:
            del self._open[key]
            yield from _emit(summary, self._metrics)

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
    def __init__(self, labels, top_k, model, run_id, progress_path):
        self._args = (tuple(labels), top_k, model, run_id)
        self._progress_path = progress_path

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)

    def process(self, keyed: tuple[tuple[str, str], Iterable[Outcome]]):
        _, outcomes = keyed
        summary = VideoSummary(*self._args)
        for outcome in outcomes:
            summary.add(outcome)
        if summary.result is None:  # cannot happen: decode always ends with one
            return
        yield from _emit(summary, self._metrics)


def _emit(summary: VideoSummary, metrics: StageMetrics):
    for table, row in summary.rows():
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

    def __init__(
        self,
        labels: Sequence[str],
        top_k: int,
        model_name: str,
        run_id: str,
        progress_path: Optional[str] = None,
    ):
        super().__init__()
        self._args = (tuple(labels), top_k, model_name, run_id, progress_path)

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
