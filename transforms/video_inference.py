"""ClassifyVideos: VideoRef → index rows, for models that take a whole video per element.

The strategy for stream models (MoViNet stream) and frame-sequence models (a per-frame
CNN and a sequence model): one RunInference element per video, decoded inside the
handler it is given (built from the model spec by ``beam_pipeline``), so a video's
frames and a stream model's state never leave the worker. The handler gives one
``VideoOutcome`` per ref: its clips' and the video's top-k, or its failure (``decode``;
``inference`` when the model failed on its batch: the handler returns errors as data).

Gives ``(table, row)`` pairs for WriteIndex, made by ``transforms.rows`` as on the clip
path, from one ParDo right after RunInference, so the whole stage stays fused and rows
are committed while the job runs. Every ref ends in exactly one place: a ``videos`` row
and its ``clips`` rows, or one ``failures`` row.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.context import RunContext
from transforms.records import Failure, VideoOutcome
from transforms.rows import outcome_rows

STAGE = "inference"


class _ToRowsFn(beam.DoFn):
    def __init__(self, run: RunContext):
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def process(self, outcome: VideoOutcome):
        if outcome.failure is None and outcome.info is None:
            ref = outcome.ref
            failure = Failure(
                ref.video_id, ref.uri, STAGE, "MissingResult", "the model gave no result"
            )
            outcome = VideoOutcome(ref, failure=failure)
        for table, row in outcome_rows(outcome, self._run):
            if table == "videos":
                num_clips = row["num_clips"]
                self._metrics.decoded(outcome.decode_ms)
                self._metrics.clips(num_clips)
                self._metrics.classified(num_clips)
                self._metrics.indexed()
            elif table == "failures":
                self._metrics.failure()
            yield table, row


class ClassifyVideos(beam.PTransform):
    """VideoRefs → ``{'Videos': (table, row) pairs}``, one video per model element."""

    def __init__(self, model_handler: ModelHandler, run: RunContext):
        super().__init__()
        self._model_handler = model_handler
        self._run = run

    def expand(self, refs: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        rows = (
            refs
            | "RunInference" >> RunInference(self._model_handler)
            | "ToRows" >> beam.ParDo(_ToRowsFn(self._run))
        )
        return {"Videos": rows}
