"""A cached IR compiled for the CPU, and the call a clip wrapper makes on it.

Beam-free. ``compile_ir`` compiles an IR once per worker process for its batch shape
and float precision; every thread of the process shares the compiled model with its
own infer request (``CompiledIr``). ``OpenVinoCall`` / ``OpenVinoEmbeddingCall`` are
what ``OpenVinoBackend.clip_call`` gives a ``ClipModel``. TensorFlow is not imported
here, which keeps a worker's memory to OpenVINO's.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

import numpy as np

from beam_pipeline.models.openvino.cache import IrInfo
from beam_pipeline.models.openvino.convert import to_model_range
from beam_pipeline.models.openvino.policy import BackendError
from beam_pipeline.models.spec import ModelSpec

__all__ = [
    "CompiledIr",
    "OpenVinoCall",
    "OpenVinoEmbeddingCall",
    "compile_ir",
    "inference_threads",
]

_COMPILED: dict[tuple, Any] = {}  # (xml path, hint, threads) -> ov.CompiledModel
_COMPILED_LOCK = threading.Lock()


def inference_threads() -> int:
    """Threads for one model call: ``$VIDEO_INDEX_OV_THREADS``, else every core the
    process may use (a Dataflow worker's vCPUs; decode threads share them)."""
    explicit = int(os.environ.get("VIDEO_INDEX_OV_THREADS", "0"))
    if explicit > 0:
        return explicit
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def compile_ir(path: str, hint: str, threads: Optional[int] = None) -> Any:
    """The ``ov.CompiledModel`` of the IR at ``path``, compiled once per process.

    ``hint`` is ``INFERENCE_PRECISION_HINT`` (``f32`` or ``bf16``: what the float layers
    run in); ``PERFORMANCE_HINT=LATENCY``: one request at a time uses every thread.
    """
    import openvino as ov

    threads = threads or inference_threads()
    key = (str(path), hint, threads)
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            _COMPILED[key] = ov.Core().compile_model(
                str(path),
                "CPU",
                {
                    "INFERENCE_PRECISION_HINT": hint,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_NUM_THREADS": threads,
                },
            )
        return _COMPILED[key]


class CompiledIr:
    """A model object on a compiled IR: ``spec``, the ``ir`` and ``precision`` the run
    record names, the IR's one batch size, and one infer request per thread (infer
    requests are not thread-safe; the compiled model is shared)."""

    def __init__(self, spec: ModelSpec, ir: IrInfo, precision: str, compiled: Any):
        self.spec = spec
        self.ir = ir
        self.precision = precision
        self._compiled = compiled
        self._batch = int(ir.key["input_shape"][0])
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        return request


class OpenVinoCall(CompiledIr):
    """``uint8 [B, T, H, W, 3] RGB -> float32 [B, C]`` through a compiled IR on the CPU.

    What :meth:`OpenVinoBackend.clip_call` gives ``ClipModel``, which checks shapes.
    B is at most the IR's batch; fewer clips are padded (the IR has one shape).
    ``precision`` is the resolved one (``f32``, ``bf16`` or ``int8``) and ``ir`` the IR
    that runs: the run record names both. Raises ValueError for more clips than the batch.
    """

    def outputs(self, clips: np.ndarray) -> list[np.ndarray]:
        """Every output of the IR (``convert.ir_outputs``: the logits first), float32
        ``[B, ...]`` each, for uint8 clips ``[B, T, H, W, 3]``."""
        count = clips.shape[0]
        if count > self._batch:
            raise ValueError(f"{count} clips in one call; this IR takes at most {self._batch}")
        if count < self._batch:
            pad = np.repeat(clips[-1:], self._batch - count, axis=0)
            clips = np.concatenate([clips, pad])
        results = self._request().infer([to_model_range(clips, self.spec)])
        # copies: the request reuses its buffers
        return [np.array(results[i], dtype=np.float32)[:count] for i in range(len(results))]

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        return self.outputs(clips)[0]


class OpenVinoEmbeddingCall(OpenVinoCall):
    """``uint8 [B, T, H, W, 3] -> (logits float32 [B, C], embeddings float32 [B, D])``
    from one inference of an IR converted with its embedding output
    (:meth:`OpenVinoBackend.clip_call_with_embedding`). Raises BackendError when the IR
    has none (the spec names no ``embedding_key``)."""

    def __init__(self, spec: ModelSpec, ir: IrInfo, precision: str, compiled: Any):
        if "embedding" not in ir.key.get("outputs", []):
            raise BackendError(f"the OpenVINO IR of {spec.name} has no embedding output")
        super().__init__(spec, ir, precision, compiled)

    def __call__(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embeddings = self.outputs(clips)
        return logits, embeddings
