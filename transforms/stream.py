"""ClassifyStream: VideoRef → index rows, for models that take a whole video per element.

The strategy for stream models (MoViNet stream) and frame-sequence models (a per-frame
CNN and a sequence model): one RunInference element per video, decoded inside the
handler it is given (built from the model spec by ``beam_pipeline``), so a video's
frames and a stream model's state never leave the worker. The handler gives one
``VideoResult`` per ref: its clips' and the video's top-k, or a ``decode`` failure.

Gives ``{'videos', 'clips', 'failures'}`` row dicts, the same tables as the clip path
(``transforms.postprocess``). Every ref ends in exactly one place: a ``videos`` row
and its ``clips`` rows, or one ``failures`` row (stage ``decode``, or ``inference``
for each video of a batch the model failed on).
"""

from __future__ import annotations

from typing import Iterator, Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.metrics import StageMetrics
from transforms.postprocess import failure_row
from transforms.records import Failure, VideoRef, VideoResult

STAGE = "inference"

Row = tuple[str, dict]  # (table, row)


def result_rows(result: VideoResult, model: str, run_id: str) -> Iterator[Row]:
    """One video's rows: ('videos', row) and its ('clips', row)s, or ('failures', row)."""
    ref = result.ref
    if result.failure is not None or result.info is None:
        failure = result.failure or Failure(
            ref.video_id, ref.uri, STAGE, "MissingResult", "the model gave no result"
        )
        yield "failures", failure_row(failure, ref.size, ref.version, model, run_id)
        return
    info = result.info
    yield (
        "videos",
        {
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
            "num_clips": info.num_clips,
            "labels": list(result.labels),
            "scores": list(result.scores),
            "model": model,
            "run_id": run_id,
        },
    )
    for clip in result.clips:
        yield (
            "clips",
            {
                "video_id": ref.video_id,
                "uri": ref.uri,
                "clip_index": clip.clip_index,
                "start_s": clip.start_s,
                "end_s": clip.end_s,
                "labels": list(clip.labels),
                "scores": list(clip.scores),
                "model": model,
                "run_id": run_id,
            },
        )


class _ToRowsFn(beam.DoFn):
    def __init__(self, model: str, run_id: str, progress_path: Optional[str]):
        self._model = model
        self._run_id = run_id
        self._progress_path = progress_path

    def setup(self):
        self._metrics = StageMetrics(STAGE, self._progress_path)

    def process(self, result: VideoResult):
        for table, row in result_rows(result, self._model, self._run_id):
            if table == "videos":
                num_clips = row["num_clips"]
                self._metrics.decoded(num_clips, result.decode_ms)
                self._metrics.clips(num_clips)
                self._metrics.classified(num_clips)
                self._metrics.indexed()
                yield row
            else:
                if table == "failures":
                    self._metrics.failure()
                yield pvalue.TaggedOutput(table, row)


def _batch_failure_rows(failed: tuple[list, object], model: str, run_id: str):
    batch, error = failed
    error_type, message = _describe(error)
    for ref in batch:
        ref = VideoRef(*ref)
        failure = Failure(ref.video_id, ref.uri, STAGE, error_type, message)
        yield failure_row(failure, ref.size, ref.version, model, run_id)


def _describe(error) -> tuple[str, str]:
    """(error type, message) of what RunInference's dead letter holds.

    Beam hands over ``(type, repr(exception), formatted traceback lines)``, not the
    exception; the traceback's last line is ``"TypeName: message"``.
    """
    if isinstance(error, BaseException):
        return type(error).__name__, (str(error) or repr(error))[:2000]
    kind, text, trace = (tuple(error) + (None, None, None))[:3]
    name = getattr(kind, "__name__", str(kind))
    if trace:
        last = "".join(trace).strip().splitlines()[-1]
        prefix = f"{name}: "
        text = last.split(prefix, 1)[1] if prefix in last else last
    return name, str(text or name)[:2000]


class ClassifyStream(beam.PTransform):
    """VideoRefs → ``{'videos', 'clips', 'failures'}`` rows, one video per model element."""

    def __init__(
        self,
        model_handler: ModelHandler,
        model_name: str,
        run_id: str,
        progress_path: Optional[str] = None,
    ):
        super().__init__()
        self._model_handler = model_handler
        self._model_name = model_name
        self._run_id = run_id
        self._progress_path = progress_path

    def expand(self, refs: pvalue.PCollection) -> dict[str, pvalue.PCollection]:
        results, errors = (
            refs | "RunInference" >> RunInference(self._model_handler).with_exception_handling()
        )
        rows = results | "ToRows" >> beam.ParDo(
            _ToRowsFn(self._model_name, self._run_id, self._progress_path)
        ).with_outputs("clips", "failures", main="videos")
        failed = errors.failed_inferences | "BatchFailures" >> beam.FlatMap(
            _batch_failure_rows, self._model_name, self._run_id
        )
        failures = (rows.failures, failed) | "FailureRows" >> beam.Flatten()
        return {"videos": rows.videos, "clips": rows.clips, "failures": failures}
