"""RunInference model handlers built from a ModelSpec.

``ClipModelHandler`` takes uint8 clips ``[T, H, W, 3]`` and gives a PredictionResult
with float32 logits ``[C]`` per clip; wrapped in Beam's ``KeyedModelHandler`` the ClipKey travels beside
each clip. Beam's stock TF handler cannot call TF1-hub-format modules or signature
dicts, hence this one.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult

from beam_pipeline.models.loaders import ClipModel
from beam_pipeline.models.spec import FRAME_SEQUENCE, STREAM, ModelSpec
from transforms.video_io import DecodeLimits

METRICS_NAMESPACE = "video_index"


class ClipModelHandler(ModelHandler[np.ndarray, PredictionResult, ClipModel]):
    """Loads the spec's model once per worker process and classifies batches of clips."""

    def __init__(self, spec: ModelSpec, max_batch_size: Optional[int] = None):
        batch = max_batch_size or spec.max_batch_size
        # One batch size, always: the upper bound keeps a batch in memory (an I3D clip
        # is 38 MB as float32), and a fixed size keeps the model at one input shape.
        # TF's CPU kernels (oneDNN) cache primitives and scratch space per shape: with
        # BatchElements free to vary the size (1..4), a long run grew by ~0.7 GB each
        # time a new size first appeared. Short batches (a bundle's tail) are padded.
        super().__init__(min_batch_size=batch, max_batch_size=batch)
        self._spec = spec
        self._batch_size = batch

    def load_model(self) -> ClipModel:
        return ClipModel.load(self._spec)

    def run_inference(
        self,
        batch: Sequence[np.ndarray],
        model: ClipModel,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> Iterable[PredictionResult]:
        clips = np.stack(batch)
        if len(batch) < self._batch_size:
            padding = np.zeros((self._batch_size - len(batch),) + clips.shape[1:], clips.dtype)
            clips = np.concatenate([clips, padding])
        try:
            logits = model.predict(clips)[: len(batch)]
        except Exception as error:  # noqa: BLE001 - errors are data: each clip's result
            # The batch's clips fail; their videos become failure rows, the job goes on.
            return [PredictionResult(None, error, model_id=self._spec.name) for _ in batch]
        # example=None: the result must not keep a clip's frames alive downstream.
        return [PredictionResult(None, row, model_id=self._spec.name) for row in logits]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        # The default pickles the batch just to measure it: 150 MB of frames per call.
        return sum(clip.nbytes for clip in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE


def build_handler(spec: ModelSpec, max_batch_size: Optional[int] = None) -> ModelHandler:
    """The keyed handler for a clip classifier: (ClipKey, clip) in, PredictionResult out."""
    return KeyedModelHandler(ClipModelHandler(spec, max_batch_size))


def build_video_handler(
    spec: ModelSpec,
    limits: DecodeLimits,
    top_k: int,
    max_batch_size: Optional[int] = None,
) -> ModelHandler:
    """The handler for a model that takes a whole video per element: VideoRef in,
    VideoResult out (kinds ``stream`` and ``frame_sequence``; the handler decodes)."""
    if spec.kind == STREAM:
        from beam_pipeline.models.stream import StreamModelHandler

        return StreamModelHandler(spec, limits, top_k, max_batch_size)
    if spec.kind == FRAME_SEQUENCE:
        from beam_pipeline.models.sequence import SequenceModelHandler

        return SequenceModelHandler(spec, limits, top_k, max_batch_size)
    raise ValueError(f"model {spec.name} is a {spec.kind!r} model, not a whole-video one")
