"""Stream models (MoViNet stream) on OpenVINO: the step with its states, as one IR.

Beam-free. The SavedModel's stream step (``models.stream_model``'s convention: the
restored Keras object, else the ``init_states``/``call`` signatures) is converted at one
static batch ``B`` (the lockstep batch): inputs ``image`` ``float32 [B, 1, S, S, 3]`` in
the spec's ``value_range`` and every state tensor by its name; outputs ``logits``
``float32 [B, C]`` and ``state:<name>`` for each state. The IR is cached as the clip
models' IRs are (``openvino_ir``: keyed by the SavedModel's sha256, the shape, the
OpenVINO version; file-locked, renamed into place), with the names of the states that
hold one row per video (the rest, MoViNet's ``*_pool_frame_count``, are shared by the
batch).

``OpenVinoStreamModel`` has ``StreamModel``'s interface (``init``, ``step``, ``keep``,
``per_video_keys``), so the lockstep loop (``classify_streams``) runs unchanged: a batch
smaller than ``B`` (a short bundle, or videos that ended) is padded to ``B`` for the call
and the padding's outputs dropped. The initial states are zeros, as MoViNet's
``init_states`` gives them; the conversion refuses a model whose initial state is not
all zeros. f32 and bf16 (``INFERENCE_PRECISION_HINT``); int8 is for clip models only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from beam_pipeline.models import openvino_ir
from beam_pipeline.models.backend import locate_saved_model
from beam_pipeline.models.i3d import default_cache_dir, exclusive_lock
from beam_pipeline.models.openvino_ir import BackendError, IrInfo
from beam_pipeline.models.openvino_model import CompiledIr
from beam_pipeline.models.spec import STREAM, ModelSpec

__all__ = ["OpenVinoStreamModel", "ensure_stream_ir"]

IMAGE = "image"
LOGITS = "logits"
STATE = "state:"  # output name prefix of a state


def _key(spec: ModelSpec, model_sha256: str, batch: int) -> dict:
    import openvino as ov

    return {
        "model_sha256": model_sha256,
        "kind": STREAM,
        "input_shape": [batch, 1, spec.size, spec.size, 3],
        "value_range": list(spec.value_range),
        "weights": "f32",
        "calibration_sha256": None,
        "openvino": ov.get_version(),
    }


def ensure_stream_ir(
    spec: ModelSpec,
    batch: int,
    cache_dir: Optional[Path] = None,
    announce: Optional[Callable[[], None]] = None,
) -> IrInfo:
    """The cached stream IR of ``spec`` at lockstep batch ``batch``, built on first use
    (about 1.5 min for MoViNet A0 on 2 cores; ``announce`` is called before a build
    starts). Safe to call from several processes.
    Raises BackendError when the model is not a stream model or cannot be converted."""
    if spec.kind != STREAM:
        raise BackendError(f"{spec.name} is a {spec.kind} model, not a stream model")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    source = locate_saved_model(spec.source)
    model_sha = openvino_ir.savedmodel_sha256(source)
    key = _key(spec, model_sha, batch)
    base = cache_dir / openvino_ir.IR_SUBDIR / f"{openvino_ir._safe(spec.name)}-{model_sha[:16]}"
    folder = base / f"stream-{openvino_ir._key_name(key)}"

    def cached() -> Optional[IrInfo]:
        info = openvino_ir._read_info(folder)
        if openvino_ir._matches(info, key) and (folder / "model.bin").is_file():
            return IrInfo(folder / "model.xml", info)
        return None

    found = cached()
    if found is not None:
        return found
    with exclusive_lock(base / f".{folder.name}.lock"):
        found = cached()
        if found is not None:
            return found
        if announce is not None:
            announce()
        started = time.monotonic()
        model, extra = _convert(spec, source, batch)
        extra["build_s"] = round(time.monotonic() - started, 1)
        openvino_ir._save(model, folder, key, extra)
    return cached()


def _convert(spec: ModelSpec, source: str, batch: int) -> tuple[Any, dict]:
    """The stream step as an ov.Model with named inputs and outputs, and the IR's
    ``per_video_states`` (see the module doc)."""
    import openvino as ov
    import tensorflow as tf

    from beam_pipeline.models.backend import configure_tensorflow
    from beam_pipeline.models.stream_model import stream_convention

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

    try:
        model = ov.convert_model(step.get_concrete_function(image, *specs))
    except Exception as error:  # noqa: BLE001 - any converter error is the model's
        reason = openvino_ir.conversion_reason(error)
        raise BackendError(f"OpenVINO cannot convert {spec.name}: {reason}") from error
    # A converted tf.function's outputs are Identity, Identity_1, ... in return order
    # (listed in another order): name them by position.
    names = [LOGITS] + [STATE + k for k in keys]
    for output in model.outputs:
        base = next(n for n in output.get_names() if n.startswith("Identity")).split(":")[0]
        position = 0 if base == "Identity" else int(base.split("_")[1])
        output.get_tensor().set_names({names[position]})
    return model, {"per_video_states": per_video}


class OpenVinoStreamModel(CompiledIr):
    """``StreamModel``'s interface on a compiled stream IR (see the module doc).

    ``step(uint8 [n, S, S, 3] RGB, states) -> (float32 logits [n, C], states)`` for
    ``n <= B``; states are numpy arrays. ``precision`` (``f32``/``bf16``) and ``ir`` are
    what the run record names. Raises ValueError for more than ``B`` videos.
    """

    def __init__(self, spec: ModelSpec, ir: IrInfo, precision: str, compiled: Any):
        super().__init__(spec, ir, precision, compiled)
        self.per_video_keys = frozenset(ir.key["per_video_states"])
        self._inputs = {
            port.get_any_name(): (tuple(port.get_shape()), port.get_element_type().to_dtype())
            for port in compiled.inputs
        }
        self._outputs = {port.get_any_name(): port for port in compiled.outputs}

    def init(self, batch: int) -> dict[str, np.ndarray]:
        """Zero states of ``batch`` videos that start together."""
        return {
            name: np.zeros((batch, *shape[1:]) if name in self.per_video_keys else shape, dtype)
            for name, (shape, dtype) in self._inputs.items()
            if name != IMAGE
        }

    def step(self, frames: np.ndarray, states: dict) -> tuple[np.ndarray, dict]:
        count = frames.shape[0]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, H, W, 3], got {frames.dtype} {frames.shape}")
        if count > self._batch:
            raise ValueError(f"{count} videos in one step; this IR takes at most {self._batch}")
        low, high = self.spec.value_range
        x = frames.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        feed = {IMAGE: self._pad(x[:, None])}
        for name, value in states.items():
            feed[name] = self._pad(value) if name in self.per_video_keys else value
        outputs = self._request().infer(feed)
        # Copies: the request reuses its buffers.
        logits = np.array(outputs[self._outputs[LOGITS]], dtype=np.float32)[:count]
        new = {}
        for name in states:
            value = np.array(outputs[self._outputs[STATE + name]])
            new[name] = value[:count] if name in self.per_video_keys else value
        return logits, new

    def keep(self, states: dict, rows: Sequence[int]) -> dict:
        """The state of only ``rows`` of the batch, in that order."""
        index = np.asarray(list(rows), dtype=np.int64)
        return {k: v[index] if k in self.per_video_keys else v for k, v in states.items()}

    def _pad(self, value: np.ndarray) -> np.ndarray:
        missing = self._batch - value.shape[0]
        if not missing:
            return value
        return np.concatenate([value, np.zeros((missing, *value.shape[1:]), value.dtype)])
