"""The backends: the objects a model kind's wrapper calls its model through, and the
one place a ``--backend`` name becomes one.

Beam-free. The clip, stream and sequence wrappers (``clip_model``, ``stream_model``,
``sequence_model``) hold a model kind's contract (shapes, state, masks); finding,
loading and calling a SavedModel is ``savedmodel``'s. Here:

- :class:`Backend`: what a clip wrapper needs of a backend (``clip_call``);
- :class:`TensorFlowBackend` (:data:`DEFAULT_BACKEND`): the SavedModel called by TF;
- :class:`InputRange`: uint8 ``[0, 255]`` → the model's float range, at the model input,
  so frames cross every stage boundary as uint8;
- :func:`backend_for`: ``--backend NAME`` → a backend object. OpenVINO's
  (``models.openvino.backend.OpenVinoBackend``) is imported only when it is named,
  and nothing of ``models.openvino`` imports this module: one direction.

A backend is handed to ``handler.build_handler`` by the pipeline, not a flag inside
a wrapper.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

import numpy as np

from beam_pipeline.models.savedmodel import (
    clip_convention,
    configure_tensorflow,
    embedding_convention,
    load_saved_model,
)
from beam_pipeline.models.spec import ModelSpec

__all__ = ["Backend", "DEFAULT_BACKEND", "InputRange", "TensorFlowBackend", "backend_for"]


class InputRange:
    """uint8 ``[0, 255]`` → float32 in the spec's ``value_range``, at the model input.

    ``low + x * (high - low) / 255``, computed by TF (on the device the model runs on).
    """

    def __init__(self, value_range: tuple[float, float]):
        low, high = value_range
        self._scale = (high - low) / 255.0
        self._offset = low

    def __call__(self, frames: Any) -> Any:
        """uint8 array or tensor of any shape → float32 ``tf.Tensor`` of that shape."""
        import tensorflow as tf

        return tf.cast(tf.convert_to_tensor(frames), tf.float32) * self._scale + self._offset


class Backend(Protocol):
    """What a clip wrapper needs of a backend.

    ``clip_call(spec)`` loads the spec's model and gives one function
    ``uint8 [B, T, H, W, 3] RGB -> outputs`` (array-like ``[B, C]``) that already maps
    the input to the model's range and picks the output tensor.
    """

    name: str

    def clip_call(self, spec: ModelSpec) -> Callable[[np.ndarray], Any]: ...

    def clip_call_with_embedding(self, spec: ModelSpec) -> Callable[[np.ndarray], Any]:
        """As ``clip_call``, the function giving ``(logits [B, C], embeddings [B, D])``."""
        ...


class TensorFlowBackend:
    """SavedModels and TF Hub modules, called through TensorFlow."""

    name = "tensorflow"

    def load(self, spec: ModelSpec, source: Optional[str] = None) -> Any:
        """Configure TF for this process and load ``source`` (default: the spec's)."""
        configure_tensorflow()
        return load_saved_model(source or spec.source)

    def clip_call(self, spec: ModelSpec) -> Callable[[np.ndarray], Any]:
        loaded = self.load(spec)
        call = clip_convention(spec, loaded)
        to_input = InputRange(spec.value_range)

        def clip_call(clips: np.ndarray) -> Any:
            return call(to_input(clips))

        clip_call.loaded = loaded  # keeps the variables alive with the call
        return clip_call

    def clip_call_with_embedding(self, spec: ModelSpec) -> Callable[[np.ndarray], Any]:
        """As ``clip_call``, giving ``(logits [B, C], embeddings [B, D])`` from one call
        of the signature that holds the spec's ``embedding_key`` output."""
        loaded = self.load(spec)
        call = embedding_convention(spec, loaded)
        to_input = InputRange(spec.value_range)

        def clip_call(clips: np.ndarray) -> Any:
            return call(to_input(clips))

        clip_call.loaded = loaded
        return clip_call


DEFAULT_BACKEND: Backend = TensorFlowBackend()


def backend_for(
    name: str, batch: int, precision: str = "f32", calibration_sha256: Optional[str] = None
) -> Backend:
    """The backend ``--backend name`` runs clip models on: the one place it is chosen.

    ``tensorflow``: :data:`DEFAULT_BACKEND`. ``openvino``: ``OpenVinoBackend`` at IR
    batch ``batch`` and ``precision`` (``auto`` | ``f32`` | ``bf16`` | ``int8``), int8
    the IR calibrated on ``calibration_sha256``. Raises ValueError for another name.
    """
    if name == DEFAULT_BACKEND.name:
        return DEFAULT_BACKEND
    if name == "openvino":
        from beam_pipeline.models.openvino.backend import OpenVinoBackend

        return OpenVinoBackend(batch, precision, calibration_sha256)
    raise ValueError(f"unknown backend {name!r}")
