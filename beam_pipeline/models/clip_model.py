"""Clip classifiers: uint8 clips in, logits out, and their RunInference handler.

- :class:`ClipModel` (no Beam API): ``predict(uint8 [B, T, H, W, 3] RGB) -> float32
  logits [B, C]``, over the call a backend gives (``models.backend``).
- :class:`ClipModelHandler`: loads it once per worker process and classifies batches of
  clips; wrapped in Beam's ``KeyedModelHandler`` (``models.handler.build_handler``) the
  ClipKey travels beside each clip. Beam's stock TF handler cannot call TF1-hub-format
  modules or signature dicts, hence this one.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from beam_pipeline.models.backend import DEFAULT_BACKEND, Backend
from beam_pipeline.models.spec import ModelSpec
from transforms.metrics import NAMESPACE


class ClipModel:
    """A loaded clip classifier: ``predict(uint8 [B, T, H, W, 3] RGB) -> float32 [B, C]``."""

    def __init__(
        self,
        spec: ModelSpec,
        call: Callable[[np.ndarray], Any],
        embedding_call: Optional[Callable[[np.ndarray], Any]] = None,
    ):
        self.spec = spec
        self._call = call  # uint8 clips -> outputs [B, C] (the backend's clip_call)
        # uint8 clips -> (logits [B, C], embeddings [B, D]), where embeddings were asked for
        self._embedding_call = embedding_call

    @classmethod
    def load(
        cls, spec: ModelSpec, backend: Backend = DEFAULT_BACKEND, embeddings: bool = False
    ) -> "ClipModel":
        """With ``embeddings`` (the spec must name an ``embedding_key``) the model is
        called through the signature that also gives them (``predict_with_embedding``)."""
        if embeddings:
            call = backend.clip_call_with_embedding(spec)
            return cls(spec, lambda clips: call(clips)[0], call)
        return cls(spec, backend.clip_call(spec))

    def predict_with_embedding(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [B, T, H, W, 3] RGB -> (logits float32 [B, C], embeddings float32 [B, D])."""
        if self._embedding_call is None:
            raise ValueError(f"model {self.spec.name} was loaded without embeddings")
        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, T, H, W, 3], got {clips.dtype} {clips.shape}")
        logits, embeddings = self._embedding_call(clips)
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.shape != (clips.shape[0], self.spec.embedding_dim):
            raise ValueError(
                f"model {self.spec.name} gave embeddings of shape {embeddings.shape}, "
                f"expected [{clips.shape[0]}, {self.spec.embedding_dim}]"
            )
        return self._checked(np.asarray(logits, dtype=np.float32), clips), embeddings

    def predict(self, clips: np.ndarray) -> np.ndarray:
        """Raises ValueError for input that is not uint8 [B, T, H, W, 3], or logits that
        are not [B, num_classes] (a label list that does not match the model)."""
        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, T, H, W, 3], got {clips.dtype} {clips.shape}")
        return self._checked(np.asarray(self._call(clips), dtype=np.float32), clips)

    def _checked(self, logits: np.ndarray, clips: np.ndarray) -> np.ndarray:
        if logits.ndim != 2 or logits.shape[1] != self.spec.num_classes:
            raise ValueError(
                f"model {self.spec.name} gave logits of shape {logits.shape}, "
                f"expected [{clips.shape[0]}, {self.spec.num_classes}] "
                "(does the label list match the model?)"
            )
        return logits


class ClipModelHandler(ModelHandler[np.ndarray, PredictionResult, ClipModel]):
    """Loads the spec's model once per worker process and classifies batches of clips."""

    def __init__(
        self,
        spec: ModelSpec,
        max_batch_size: Optional[int] = None,
        backend: Backend = DEFAULT_BACKEND,
        embeddings: bool = False,
    ):
        batch = max_batch_size or spec.max_batch_size
        # One batch size, always: the upper bound keeps a batch in memory (an I3D clip
        # is 38 MB as float32), and a fixed size keeps the model at one input shape.
        # TF's CPU kernels (oneDNN) cache primitives and scratch space per shape: with
        # BatchElements free to vary the size (1..4), a long run grew by ~0.7 GB each
        # time a new size first appeared. Short batches (a bundle's tail) are padded.
        super().__init__(min_batch_size=batch, max_batch_size=batch)
        self._spec = spec
        self._batch_size = batch
        self._backend = backend
        self._embeddings = embeddings

    def load_model(self) -> ClipModel:
        return ClipModel.load(self._spec, self._backend, self._embeddings)

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
            if self._embeddings:
                logits, embeddings = model.predict_with_embedding(clips)
                results = list(zip(logits[: len(batch)], embeddings[: len(batch)]))
            else:
                results = list(model.predict(clips)[: len(batch)])
        except Exception as error:  # noqa: BLE001 - errors are data: each clip's result
            # The batch's clips fail; their videos become failure rows, the job goes on.
            return [PredictionResult(None, error, model_id=self._spec.name) for _ in batch]
        # example=None: the result must not keep a clip's frames alive downstream.
        return [PredictionResult(None, result, model_id=self._spec.name) for result in results]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        # The default pickles the batch just to measure it: 150 MB of frames per call.
        return sum(clip.nbytes for clip in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
