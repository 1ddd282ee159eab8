"""Which RunInference handler a model kind gets: the one place a new kind is wired in.

``clip`` models: a keyed ``ClipModelHandler`` ((ClipKey, uint8 clip) in,
PredictionResult with float32 logits [C] out). ``stream`` and ``frame_sequence``
models take a whole video per element: VideoRef in, VideoOutcome out (the handler
decodes).
"""

from __future__ import annotations

from typing import Optional

from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler

from beam_pipeline.models.backend import DEFAULT_BACKEND, Backend
from beam_pipeline.models.clip_model import ClipModelHandler
from beam_pipeline.models.spec import FRAME_SEQUENCE, STREAM, ModelSpec
from transforms.video_io import DecodeLimits


def build_handler(
    spec: ModelSpec,
    max_batch_size: Optional[int] = None,
    backend: Backend = DEFAULT_BACKEND,
    embeddings: bool = False,
) -> ModelHandler:
    """The keyed handler for a clip classifier: (ClipKey, clip) in, PredictionResult out
    (logits float32 [C]; with ``embeddings`` a (logits, embedding float32 [D]) pair),
    the model called through ``backend``."""
    return KeyedModelHandler(ClipModelHandler(spec, max_batch_size, backend, embeddings))


def build_video_handler(
    spec: ModelSpec,
    limits: DecodeLimits,
    top_k: int,
    max_batch_size: Optional[int] = None,
    backend: Backend = DEFAULT_BACKEND,
) -> ModelHandler:
    """The handler for a model that takes a whole video per element: VideoRef in,
    VideoOutcome out (kinds ``stream`` and ``frame_sequence``; the handler decodes).
    Stream models run on ``backend`` (TensorFlow or OpenVINO); frame-sequence models on
    TensorFlow."""
    if spec.kind == STREAM:
        from beam_pipeline.models.stream_model import StreamModelHandler

        on = None if backend is DEFAULT_BACKEND else backend
        return StreamModelHandler(spec, limits, top_k, max_batch_size, backend=on)
    if spec.kind == FRAME_SEQUENCE:
        from beam_pipeline.models.sequence_model import SequenceModelHandler

        return SequenceModelHandler(spec, limits, top_k, max_batch_size)
    raise ValueError(f"model {spec.name} is a {spec.kind!r} model, not a whole-video one")
