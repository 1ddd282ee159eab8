"""Stream models (MoViNet stream) on OpenVINO: the step with its states, on a compiled IR.

Beam-free. ``OpenVinoStreamModel`` has ``StreamModel``'s interface (``init``,
``step``, ``keep``, ``per_video_keys``), so the lockstep loop
(``stream_model.classify_streams``) runs unchanged on it: a batch smaller than the IR's
``B`` (a short bundle, or videos that ended) is padded to ``B`` for the call and the
padding's outputs dropped. The initial states are zeros, as MoViNet's
``init_states`` gives them (``convert.convert_stream`` refuses a model whose initial
state is not). f32 and bf16 (``INFERENCE_PRECISION_HINT``); int8 is for clip models
only.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from beam_pipeline.models.openvino.cache import IrInfo
from beam_pipeline.models.openvino.compiled import CompiledIr
from beam_pipeline.models.openvino.convert import IMAGE, LOGITS, STATE, to_model_range
from beam_pipeline.models.spec import ModelSpec

__all__ = ["OpenVinoStreamModel"]


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
        feed = {IMAGE: self._pad(to_model_range(frames, self.spec)[:, None])}
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
