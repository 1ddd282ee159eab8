"""ClassifyStream: VideoRef → index rows, for models that take a whole video per element.

The strategy for stream models (MoViNet stream) and frame-sequence models (a per-frame
CNN and a sequence model): one RunInference element per video, decoded inside the
handler it is given (built from the model spec by ``beam_pipeline``), so a video's
frames and a stream model's state never leave the worker. The handler gives one
``VideoResult`` per ref: its clips' and the video's top-k, or its failure (``decode``;
``inference`` when the model failed on its batch: the handler returns errors as data).

Gives ``(table, row)`` pairs for WriteIndex, the same tables as the clip path
(``transforms.postprocess``), from one ParDo right after RunInference, so the whole
stage stays fused and rows are committed while the job runs. Every ref ends in
exactly one place: a ``videos`` row and its ``clips`` rows, or one ``failures`` row.
"""

from __future__ import annotations

from typing import Iterator, Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.ml.inference.base import ModelHandler, RunInference

from transforms.metrics import StageMetrics
from transforms.postprocess import failure_row
from transforms.records import Failure, VideoResult, decoded_columns

STAGE = "inference"

Row = tuple[str, dict]  # (table, row)


def result_rows(result: VideoResult, model: str, run_id: str) -> Iterator[Row]:
    """One video's rows: its ('clips', row)s then ('videos', row); or ('failures', row).

    Clips before their video, as the clip path writes them: a committed video row
    means the video's clips are committed too (what a resumed run relies on).
    """
    ref = result.ref
    if result.failure is not None or result.info is None:
        failure = result.failure or Failure(
            ref.video_id, ref.uri, STAGE, "MissingResult", "the model gave no result"
        )
        yield "failures", failure_row(failure, ref.size, ref.version, model, run_id)
        return
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
    info = result.info
    yield (
        "videos",
        {
            "video_id": ref.video_id,
            "uri": ref.uri,
            "size": ref.size,
            "version": ref.version,
            **decoded_columns(info),
            "labels": list(result.labels),
            "scores": list(result.scores),
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
            elif table == "failures":
                self._metrics.failure()
            yield table, row


class ClassifyStream(beam.PTransform):
    """VideoRefs → ``{'Videos': (table, row) pairs}``, one video per model element."""

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
        rows = (
            refs
            | "RunInference" >> RunInference(self._model_handler)
            | "ToRows" >> beam.ParDo(_ToRowsFn(self._model_name, self._run_id, self._progress_path))
        )
        return {"Videos": rows}
