"""ClassifyClips: (ClipKey, uint8 clip) → ClipPrediction, through Beam's RunInference.

Takes the keyed clips from DecodeClips and the keyed model handler it is given
(built from a model spec by ``beam_pipeline``; it returns an exception as the
result of a clip whose batch failed, a ``(logits, embedding)`` pair where it gives
embeddings), and gives one ``ClipPrediction`` (float32 logits [C], the embedding
float32 [D] or None) or inference ``Failure`` per clip, each video's ``DecodeResult`` after
its last clip; the job goes on whatever one video does.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from transforms.context import RunContext
from transforms.records import ClipKey, ClipPrediction, Failure

STAGE = "inference"


class _ToOutcomeFn(beam.DoFn):
    def __init__(self, run: RunContext):
        self._run = run

    def setup(self):
        self._metrics = self._run.metrics(STAGE)

    def process(self, keyed: tuple[ClipKey, PredictionResult]):
        key, result = keyed
        self._metrics.classified()
        clip_key = key._replace(decode_result=None)
        if isinstance(result.inference, BaseException):
            yield Failure.from_exception(key.video_id, key.uri, STAGE, result.inference)
        elif isinstance(result.inference, tuple):
            # Only logits (and the embedding) travel on; the frames stay behind.
            logits, embedding = result.inference
            yield ClipPrediction(clip_key, logits, embedding)
        else:
            yield ClipPrediction(clip_key, result.inference)
        if key.decode_result is not None:
            yield key.decode_result  # the video's, after its last clip


class ClassifyClips(beam.PTransform):
    """Keyed clips → one PCollection of outcomes, in clip order per video.

    Each clip gives a ``ClipPrediction`` or, if its batch failed in the model, a
    ``Failure`` (the handler returns the error as the clip's result: errors are
    data); a video's last clip is followed by its ``DecodeResult``. One output, so
    that Summarise is fused with inference on every runner.
    """

    def __init__(self, model_handler: ModelHandler, run: RunContext):
        super().__init__()
        self._model_handler = model_handler
        self._run = run

    def expand(self, clips: pvalue.PCollection) -> pvalue.PCollection:
        return (
            clips
            | "RunInference" >> RunInference(self._model_handler)
            | "ToOutcome" >> beam.ParDo(_ToOutcomeFn(self._run))
        )
