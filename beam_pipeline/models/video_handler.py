"""What the whole-video handlers share (kinds ``stream`` and ``frame_sequence``).

Their RunInference element is a ``VideoRef``; the handler opens and decodes the video
itself and returns one ``VideoOutcome`` per ref, a failure included: errors are data.
By default frames come from ``transforms.reading.read_frames`` run in a child process
per open video (``transforms.decode_worker.DecoderPool``), so a decoder that crashes or
hangs in native code fails its video (stage ``decode``), not the job; ``open_frames``
replaces that (``read_frames`` itself to decode in process, a fake in tests).
"""

from __future__ import annotations

from typing import Callable, ContextManager, Generic, Optional, Sequence, TypeVar

from apache_beam.ml.inference.base import ModelHandler

from beam_pipeline.models.spec import ModelSpec
from transforms.decode_worker import DecoderPool
from transforms.metrics import NAMESPACE
from transforms.preprocess import FrameSpec
from transforms.records import Failure, VideoOutcome, VideoRef
from transforms.video_io import DecodeLimits

DECODE = "decode"  # failure stages: a video that could not be read,
INFERENCE = "inference"  # or whose batch the model failed on

# (uri, fps, frame_spec, limits) -> a context manager over ``(t, uint8 [S, S, 3])`` frames
# with ``info``, ``num_frames``, ``decode_errors``, ``discontinuities``, ``duration_s``.
OpenFrames = Callable[[str, float, FrameSpec, DecodeLimits], ContextManager]

ModelT = TypeVar("ModelT")


def failed(ref: VideoRef, stage: str, error: BaseException) -> VideoOutcome:
    """The outcome of a video that ``stage`` (DECODE or INFERENCE) could not finish."""
    return VideoOutcome(ref, failure=Failure.from_exception(ref.video_id, ref.uri, stage, error))


class VideoModelHandler(ModelHandler[VideoRef, VideoOutcome, ModelT], Generic[ModelT]):
    """A RunInference handler whose element is a whole video (see the module doc).

    Batches hold up to ``max_batch_size`` videos (default: the spec's); exactly that
    many, where the bundle has them, when the subclass sets ``full_batches``.
    """

    full_batches = False

    def __init__(
        self,
        spec: ModelSpec,
        limits: Optional[DecodeLimits] = None,
        top_k: int = 5,
        max_batch_size: Optional[int] = None,
        open_frames: Optional[OpenFrames] = None,
    ):
        batch = max_batch_size or spec.max_batch_size
        super().__init__(min_batch_size=batch if self.full_batches else 1, max_batch_size=batch)
        self._spec = spec
        self._limits = limits or DecodeLimits()
        self._top_k = top_k
        self._open_frames = open_frames
        self._pool: Optional[DecoderPool] = None  # made on first use, in the worker

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pool"] = None  # child processes stay with the process that started them
        return state

    def open_frames(self, uri: str) -> ContextManager:
        """``uri`` opened for frame-by-frame reading at the spec's fps and frame size."""
        spec = self._spec
        open_frames = self._open_frames
        if open_frames is None:
            if self._pool is None:
                self._pool = DecoderPool()
            open_frames = self._pool.read_frames
        return open_frames(uri, spec.fps, spec.frame_spec(), self._limits)

    def get_num_bytes(self, batch: Sequence[VideoRef]) -> int:
        return sum(ref.size or 0 for ref in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
