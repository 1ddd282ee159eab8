"""``OpenVinoBackend``: clip and stream models served on the CPU from a cached IR.

Beam-free. A backend object as ``models.backend.Backend`` describes (what
``backend_for('openvino', ...)`` gives; chosen once, in ``pipeline``, and handed to the
handlers). Its calls run when a handler loads the model on a worker: they resolve the
precision on the worker's CPU, take the IR from the cache (``ir``; the launcher's
``prepare`` built it) and compile it once per worker process.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Optional

from beam_pipeline.models.openvino.compiled import OpenVinoCall, OpenVinoEmbeddingCall, compile_ir
from beam_pipeline.models.openvino.ir import ensure_ir, ensure_stream_ir
from beam_pipeline.models.openvino.policy import float_hint, resolve_precision
from beam_pipeline.models.openvino.stream import OpenVinoStreamModel
from beam_pipeline.models.spec import ModelSpec

__all__ = ["OpenVinoBackend"]


@dataclasses.dataclass(frozen=True)
class OpenVinoBackend:
    """The OpenVINO backend: picklable, it travels in the handler and loads on the
    worker (see the module doc).

    ``batch``: the IR's batch (the handler's). ``precision``: as ``--precision``
    (``auto`` is resolved on the worker's CPU). ``calibration_sha256``: which int8 IR
    (the launcher built it from the job's input).
    """

    batch: int
    precision: str = "auto"
    calibration_sha256: Optional[str] = None
    name: ClassVar[str] = "openvino"

    def clip_call(self, spec: ModelSpec) -> OpenVinoCall:
        return self._clip_call(spec, OpenVinoCall)

    def clip_call_with_embedding(self, spec: ModelSpec) -> OpenVinoEmbeddingCall:
        """As ``clip_call``, giving ``(logits, embeddings)`` from the same inference."""
        return self._clip_call(spec, OpenVinoEmbeddingCall)

    def _clip_call(self, spec: ModelSpec, kind: type) -> Any:
        precision = resolve_precision(self.precision, kind=spec.kind)
        ir = ensure_ir(spec, self.batch, precision, calibration_sha256=self.calibration_sha256)
        return kind(spec, ir, precision, compile_ir(ir.path, float_hint(precision)))

    def stream_model(self, spec: ModelSpec) -> OpenVinoStreamModel:
        """A stream model at lockstep batch ``batch``; raises BackendError for int8
        (clip models only)."""
        precision = resolve_precision(self.precision, kind=spec.kind)
        ir = ensure_stream_ir(spec, self.batch)
        return OpenVinoStreamModel(spec, ir, precision, compile_ir(ir.path, float_hint(precision)))
