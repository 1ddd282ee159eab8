"""A SavedModel's call → an ``ov.Model`` at one static shape; the IR's input range.

Beam-free. Both conversions trace the call the TensorFlow backend makes
(``models.savedmodel``'s conventions) as a ``tf.function`` at the job's one batch
shape and hand it to ``openvino.convert_model``:

- a clip model (``convert_clip``): input ``float32 [batch, frames_per_clip, size,
  size, 3]`` RGB in the spec's ``value_range``; outputs ``logits float32 [batch,
  classes]`` and, where the spec names an ``embedding_key``, ``embedding float32
  [batch, embedding_dim]`` from the same pass (``ir_outputs``);
- a stream model (``convert_stream``): the step with its states, inputs ``image``
  ``float32 [B, 1, size, size, 3]`` and every state tensor by its name, outputs
  ``logits`` ``float32 [B, C]`` and ``state:<name>`` for each state; its record names
  the states that hold one row per video (the rest, MoViNet's
  ``*_pool_frame_count``, are shared by the batch). A model whose initial state is
  not all zeros is refused (the compiled stream model starts from zeros).

Raises ``BackendError`` with the converter's reason in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from beam_pipeline.models.openvino.policy import BackendError
from beam_pipeline.models.savedmodel import (
    clip_convention,
    configure_tensorflow,
    embedding_convention,
    stream_convention,
)
from beam_pipeline.models.spec import ModelSpec

__all__ = [
    "IMAGE",
    "LOGITS",
    "STATE",
    "conversion_reason",
    "convert_clip",
    "convert_stream",
    "ir_outputs",
    "to_model_range",
]

IMAGE = "image"  # a stream IR's frame input
LOGITS = "logits"
STATE = "state:"  # output name prefix of a stream IR's state


def conversion_reason(error: BaseException) -> str:
    """One line from an ``ov.convert_model`` error: its summary lines (``-- No conversion
    rule found for operations: Svd``), else its last non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    summary = [line.lstrip("- ").strip() for line in lines if line.startswith("--")]
    return "; ".join(summary) or (lines[-1] if lines else type(error).__name__)


def ir_outputs(spec: ModelSpec) -> list[str]:
    """The clip IR's outputs, in order: ``logits`` and, where the spec names an
    ``embedding_key``, ``embedding`` (one pass gives both; part of the IR's key)."""
    return [LOGITS, "embedding"] if spec.embedding_key else [LOGITS]


def to_model_range(frames: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 frames of any shape (``[B, T, S, S, 3]`` clips, ``[B, S, S, 3]`` stream
    frames) → float32 of that shape in ``spec.value_range``: an IR's input."""
    low, high = spec.value_range
    return frames.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)


def _convert(function: Any, spec: ModelSpec) -> Any:
    import openvino as ov

    try:
        return ov.convert_model(function)
    except Exception as error:  # noqa: BLE001 - any converter error is the model's
        raise BackendError(
            f"OpenVINO cannot convert {spec.name}: {conversion_reason(error)}"
        ) from error


def convert_clip(spec: ModelSpec, source: str, batch: int) -> Any:
    """The clip SavedModel at ``source`` as an ov.Model at batch ``batch`` (see the
    module doc), its outputs named and ordered as ``ir_outputs(spec)``."""
    import tensorflow as tf

    configure_tensorflow()
    loaded = tf.saved_model.load(source)
    names = ir_outputs(spec)
    call = (embedding_convention if spec.embedding_key else clip_convention)(spec, loaded)
    shape = [batch, spec.frames_per_clip, spec.size, spec.size, 3]
    function = tf.function(lambda x: call(x)).get_concrete_function(
        tf.TensorSpec(shape, tf.float32)
    )
    model = _convert(function, spec)
    widths = [spec.num_classes, spec.embedding_dim][: len(names)]
    got = [list(output.get_partial_shape().to_shape()) for output in model.outputs]
    if got != [[batch, width] for width in widths]:
        raise BackendError(
            f"OpenVINO converted {spec.name} to outputs of shapes {got}, expected "
            f"{[[batch, width] for width in widths]} ({', '.join(names)})"
        )
    for output, name in zip(model.outputs, names):
        output.get_tensor().set_names({name})
    return model


def convert_stream(spec: ModelSpec, source: str, batch: int) -> tuple[Any, dict]:
    """The stream step of the SavedModel at ``source`` as an ov.Model with named inputs
    and outputs at lockstep batch ``batch``, and its record: ``per_video_states``
    (see the module doc)."""
    import tensorflow as tf

    configure_tensorflow()
    loaded = tf.saved_model.load(source)
    init_states, call = stream_convention(spec, loaded)
    states = {k: np.asarray(v) for k, v in init_states(batch).items()}
    if any(value.any() for value in states.values()):
        raise BackendError(f"{spec.name}: an initial state that is not all zeros")
    two, three = init_states(2), init_states(3)
    per_video = sorted(
        k for k in two if len(two[k].shape) and (two[k].shape[0], three[k].shape[0]) == (2, 3)
    )
    keys = sorted(states)
    image = tf.TensorSpec([batch, 1, spec.size, spec.size, 3], tf.float32, name=IMAGE)
    specs = [tf.TensorSpec(states[k].shape, states[k].dtype, name=k) for k in keys]

    @tf.function
    def step(x, *values):
        logits, new = call(x, dict(zip(keys, values)))
        return [logits] + [new[k] for k in keys]

    model = _convert(step.get_concrete_function(image, *specs), spec)
    # A converted tf.function's outputs are Identity, Identity_1, ... in return order
    # (listed in another order): name them by position.
    names = [LOGITS] + [STATE + k for k in keys]
    for output in model.outputs:
        base = next(n for n in output.get_names() if n.startswith("Identity")).split(":")[0]
        position = 0 if base == "Identity" else int(base.split("_")[1])
        output.get_tensor().set_names({names[position]})
    return model, {"per_video_states": per_video}
