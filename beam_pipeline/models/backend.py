"""The model-call layer: everything between a uint8 batch and a framework's call.

Beam-free. The clip, stream and sequence wrappers (``clip_model``, ``stream_model``,
``sequence_model``) hold a model kind's contract (shapes, state, masks); what they
share about *calling* a loaded model lives here, once:

- :func:`configure_tensorflow`: TF thread pools and GPU memory growth, once a process;
- :func:`load_saved_model`: a spec's ``source`` (``builtin:``, TF Hub, SavedModel) loaded;
- :class:`InputRange`: uint8 ``[0, 255]`` → the model's float range, at the model input,
  so frames cross every stage boundary as uint8;
- :func:`sole_output` / :func:`find_signature`: which tensor of a signature's outputs
  is the answer, which signature of an export is called.

A backend is a small object that turns a spec into a call of its model; the clip
wrapper takes whichever backend it is given (:data:`DEFAULT_BACKEND` is TensorFlow).
A second backend (``openvino_model.OpenVinoBackend``) is another object with
``clip_call``, chosen in one place (``pipeline``, from ``--backend``) and handed to
``handler.build_handler``, not a flag inside this one.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np

from beam_pipeline.models.spec import ModelSpec

__all__ = [
    "BUILTIN",
    "Backend",
    "DEFAULT_BACKEND",
    "InputRange",
    "TensorFlowBackend",
    "backend_for",
    "clip_convention",
    "configure_tensorflow",
    "embedding_convention",
    "find_signature",
    "is_builtin",
    "load_saved_model",
    "locate_saved_model",
    "resolve_source",
    "sole_output",
]

_LOGGER = logging.getLogger(__name__)
_TF_CONFIGURED = threading.Lock()
_tf_configured = False

BUILTIN = "builtin:"  # a spec source built by this package on first use


def configure_tensorflow() -> None:
    """Thread pools sized to the machine and GPU memory growth, once per process.

    Memory growth matters on a GPU worker that runs several SDK threads: without it
    the first model to load takes the whole card. ``$VIDEO_INDEX_TF_THREADS`` caps the
    threads of one op (0, the default: every core).
    """
    global _tf_configured
    with _TF_CONFIGURED:
        if _tf_configured:
            return
        _tf_configured = True
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised in this process
                pass
        threads = int(os.environ.get("VIDEO_INDEX_TF_THREADS", "0"))
        try:
            # 0 lets TF use every core for one op; decode threads share them.
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(2)
        except RuntimeError:
            pass  # TF already ran an op here (tests); keep its settings


def is_builtin(source: str) -> bool:
    """Whether a spec's ``source`` names a model this package builds (``builtin:NAME``)."""
    return source.startswith(BUILTIN)


def builtin_is_built(source: str) -> bool:
    """Whether the ``builtin:`` model ``source`` is already in the cache (True for any
    other source: nothing to build)."""
    if not is_builtin(source):
        return True
    from beam_pipeline.models import i3d

    return i3d.i3d_is_cached()


def resolve_source(source: str) -> str:
    """The loadable path or handle for a spec's ``source``.

    ``builtin:i3d-kinetics-400`` is built into the cache on first use (see
    ``models.i3d``); raises ValueError for any other ``builtin:`` name.
    """
    if not is_builtin(source):
        return source
    from beam_pipeline.models import i3d, i3d_weights

    name = source[len(BUILTIN) :]
    if name != i3d_weights.MODEL_NAME:
        raise ValueError(f"unknown builtin model {name!r}")
    return str(i3d.ensure_i3d_savedmodel())


def locate_saved_model(source: str) -> str:
    """A spec's ``source`` as a SavedModel folder: a local or bucket path as it is, a
    ``builtin:`` model built (``resolve_source``), a TF Hub handle downloaded to hub's
    cache. Raises OSError (or hub's error) when there is no such model."""
    path = resolve_source(source)
    if "://" not in path and not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist")
    if path.startswith(("https://", "http://")):
        import tensorflow_hub as hub

        return hub.resolve(path)
    return path


def load_saved_model(source: str) -> Any:
    """A SavedModel or TF Hub handle, loaded as a TF object."""
    import tensorflow as tf

    path = resolve_source(source)
    if path.startswith(("https://", "http://")) or "://" not in path and not os.path.exists(path):
        import tensorflow_hub as hub

        _LOGGER.info("loading %s through tensorflow_hub", path)
        return hub.load(path)
    _LOGGER.info("loading SavedModel %s", path)
    return tf.saved_model.load(path)


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


def sole_output(spec: ModelSpec, outputs: Any) -> Any:
    """The answer among a call's outputs: ``outputs[spec.output_key]``, the only value
    of a one-entry dict, or ``outputs`` itself when it is not a dict.

    Raises ValueError for a dict of several outputs and no ``output_key``.
    """
    if not isinstance(outputs, dict):
        return outputs
    if spec.output_key:
        return outputs[spec.output_key]
    if len(outputs) != 1:
        raise ValueError(f"model {spec.name} has outputs {sorted(outputs)}: set output_key")
    return next(iter(outputs.values()))


def find_signature(loaded: Any, names: Iterable[Optional[str]]) -> Optional[Any]:
    """The first of ``names`` (None entries skipped) among ``loaded.signatures``, or None."""
    signatures = getattr(loaded, "signatures", {})
    for name in names:
        if name and name in signatures:
            return signatures[name]
    return None


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
        from beam_pipeline.models.openvino_model import OpenVinoBackend

        return OpenVinoBackend(batch, precision, calibration_sha256)
    raise ValueError(f"unknown backend {name!r}")


def clip_convention(spec: ModelSpec, loaded: Any) -> Callable[[Any], Any]:
    """One function from a float tensor to the output, whatever shape the export has.

    TF Hub's I3D is a TF1-format module (signature 'default', output 'default');
    MoViNet base takes a dict ``{'image': x}``; a Keras export is a plain callable.
    """
    signature: Optional[Any] = None
    if spec.signature:
        signature = loaded.signatures[spec.signature]
    elif not callable(loaded):
        signature = find_signature(loaded, ("serving_default", "default"))
        if signature is None:
            raise ValueError(f"model {spec.name} is neither callable nor has a signature")
    if signature is not None:
        input_key = spec.input_key
        if input_key is None:
            _, kwargs = signature.structured_input_signature
            if len(kwargs) != 1:
                raise ValueError(
                    f"model {spec.name} signature takes {sorted(kwargs)}: set input_key"
                )
            input_key = next(iter(kwargs))
        return lambda x: sole_output(spec, signature(**{input_key: x}))
    if spec.input_key:
        return lambda x: sole_output(spec, loaded({spec.input_key: x}))
    return lambda x: sole_output(spec, loaded(x))


def embedding_convention(spec: ModelSpec, loaded: Any) -> Callable[[Any], tuple[Any, Any]]:
    """One function from a float tensor to (logits, embeddings), from one signature call.

    The signature is ``embedding_signature`` (else the spec's ``signature``, else
    ``serving_default``); the embeddings are its ``embedding_key`` output, the logits
    its ``output_key`` output or, without one, its other output.
    """
    if not spec.embedding_key:
        raise ValueError(f"model {spec.name} names no embedding output (embedding_key)")
    name = spec.embedding_signature or spec.signature or "serving_default"
    signature = find_signature(loaded, (name,))
    if signature is None:
        raise ValueError(f"model {spec.name} has no signature {name!r} for its embedding")
    input_key = spec.input_key
    if input_key is None:
        _, kwargs = signature.structured_input_signature
        if len(kwargs) != 1:
            raise ValueError(f"model {spec.name} signature takes {sorted(kwargs)}: set input_key")
        input_key = next(iter(kwargs))
    outputs = list(signature.structured_outputs)
    logits_key = spec.output_key
    if logits_key is None:
        others = [key for key in outputs if key != spec.embedding_key]
        if len(others) != 1:
            raise ValueError(f"model {spec.name} has outputs {sorted(outputs)}: set output_key")
        logits_key = others[0]
    for key in (logits_key, spec.embedding_key):
        if key not in outputs:
            raise ValueError(f"model {spec.name} signature {name!r} has no output {key!r}")

    def call(x: Any) -> tuple[Any, Any]:
        result = signature(**{input_key: x})
        return result[logits_key], result[spec.embedding_key]

    return call
