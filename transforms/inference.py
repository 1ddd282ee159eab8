"""ClassifyClips: (ClipKey, uint8 clip) → ClipPrediction, through Beam's RunInference.

Takes the keyed clips from DecodeClips and the keyed model handler it is given
(built from a model spec by ``beam_pipeline``), and gives one ``ClipPrediction``
(float32 logits [C]) per clip. A batch that fails in the model becomes one
``Failure`` per clip on the ``failures`` output; the job goes on.
"""

from __future__ import annotations

from typing import Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference

from transforms.metrics import StageMetrics
from transforms.records import ClipKey, ClipPrediction, Failure

STAGE = "inference"


class _ToPredictionFn(beam.DoFn):
    def __init__(self, progress_path: Optional[str]):
        self._progress_path = progress_path

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)

    def process(self, keyed: tuple[ClipKey, PredictionResult]):
        key, result = keyed
        self._metrics.classified()
        # Drop the frames (result.example) here: only logits travel on.
        yield ClipPrediction(key, result.inference)


def _batch_failures(failed: tuple[list, Exception]):
    batch, error = failed
    if isinstance(error, tuple):  # Beam may hand over (type, value, traceback)
        error = error[1] if len(error) > 1 else error[0]
    for key, _ in batch:
        yield Failure.from_exception(key.video_id, key.uri, STAGE, error)


class ClassifyClips(beam.PTransform):
    """Keyed clips → ``{'predictions': ClipPrediction, 'failures': Failure}``."""

    def __init__(self, model_handler: ModelHandler, progress_path: Optional[str] = None):
        super().__init__()
        self._model_handler = model_handler
        self._progress_path = progress_path

    def expand(self, clips: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        results, errors = (
            clips | "RunInference" >> RunInference(self._model_handler).with_exception_handling()
        )
        predictions = results | "ToPrediction" >> beam.ParDo(_ToPredictionFn(self._progress_path))
        failures = errors.failed_inferences | "BatchFailures" >> beam.FlatMap(_batch_failures)
        return {"predictions": predictions, "failures": failures}
