"""Load a model named by a spec and give one call: uint8 clips in, logits out.

Beam-free. The conversion from uint8 [0, 255] to the model's float range happens
here, at the model input, so frames cross every stage boundary as uint8.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Optional

import numpy as np

from beam_pipeline.models.spec import ModelSpec

_LOGGER = logging.getLogger(__name__)
_TF_CONFIGURED = threading.Lock()
_tf_configured = False


def configure_tensorflow() -> None:
    """Thread pools sized to the machine and GPU memory growth, once per process.

    Memory growth matters on a GPU worker that runs several SDK threads: without it
    the first model to load takes the whole card.
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


def resolve_source(source: str) -> str:
    """The loadable path or handle for a spec's ``source``."""
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        if name != "i3d-kinetics-400":
            raise ValueError(f"unknown builtin model {name!r}")
        from beam_pipeline.models import i3d

        return str(i3d.ensure_i3d_savedmodel())
    return source


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


class ClipModel:
    """A loaded clip classifier: ``predict(uint8 [B, T, H, W, 3] RGB) -> float32 [B, C]``."""

    def __init__(self, spec: ModelSpec, loaded: Any):
        self.spec = spec
        self._loaded = loaded  # keeps the variables alive
        self._call = _calling_convention(spec, loaded)
        low, high = spec.value_range
        self._scale = (high - low) / 255.0
        self._offset = low

    @classmethod
    def load(cls, spec: ModelSpec) -> "ClipModel":
        configure_tensorflow()
        return cls(spec, load_saved_model(spec.source))

    def predict(self, clips: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        if clips.dtype != np.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, T, H, W, 3], got {clips.dtype} {clips.shape}")
        x = tf.cast(tf.convert_to_tensor(clips), tf.float32) * self._scale + self._offset
        logits = np.asarray(self._call(x), dtype=np.float32)
        if logits.ndim != 2 or logits.shape[1] != self.spec.num_classes:
            raise ValueError(
                f"model {self.spec.name} gave logits of shape {logits.shape}, "
                f"expected [{clips.shape[0]}, {self.spec.num_classes}] "
                "(does the label list match the model?)"
            )
        return logits


def _calling_convention(spec: ModelSpec, loaded: Any) -> Callable[[Any], Any]:
    """One function from a float tensor to logits, whatever shape the export has.

    TF Hub's I3D is a TF1-format module (signature 'default', output 'default');
    MoViNet base takes a dict ``{'image': x}``; a Keras export is a plain callable.
    """
    signature: Optional[Any] = None
    if spec.signature:
        signature = loaded.signatures[spec.signature]
    elif not callable(loaded):
        for name in ("serving_default", "default"):
            if name in getattr(loaded, "signatures", {}):
                signature = loaded.signatures[name]
                break
        if signature is None:
            raise ValueError(f"model {spec.name} is neither callable nor has a signature")

    def pick(outputs: Any) -> Any:
        if isinstance(outputs, dict):
            if spec.output_key:
                return outputs[spec.output_key]
            if len(outputs) != 1:
                raise ValueError(f"model {spec.name} has outputs {sorted(outputs)}: set output_key")
            return next(iter(outputs.values()))
        return outputs

    if signature is not None:
        input_key = spec.input_key
        if input_key is None:
            _, kwargs = signature.structured_input_signature
            if len(kwargs) != 1:
                raise ValueError(
                    f"model {spec.name} signature takes {sorted(kwargs)}: set input_key"
                )
            input_key = next(iter(kwargs))
        return lambda x: pick(signature(**{input_key: x}))
    if spec.input_key:
        return lambda x: pick(loaded({spec.input_key: x}))
    return lambda x: pick(loaded(x))
