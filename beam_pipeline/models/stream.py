"""Stream classifiers (MoViNet stream): frames in order, state carried across a video.

Takes ``VideoRef`` records, one per RunInference element, and gives one ``VideoResult``
each: a top-k row per second of video and the video's top-k from the state after its
last frame. Beam's RunInference batches the refs; ``run_inference`` opens the batch's
videos together and feeds them to the model in lockstep, one frame of each per step,
their states stacked along axis 0. The state never leaves the worker.

- :class:`StreamModel` (no Beam API): ``init(batch)`` and
  ``step(uint8 [B, H, W, 3] RGB, states) -> (float32 logits [B, C], states)``. State
  keys are opaque: whatever ``init_states`` gives goes back into the model.
- :func:`classify_streams` (no Beam API): the lockstep loop over one batch of videos.
- :class:`StreamModelHandler`: the RunInference handler around both.

Why lockstep, and why videos start together: stepping B videos at once costs far
less than B single steps on a CPU (A0 at 172 px on 2 cores: ~40 ms a step for one
video, ~100 ms for eight, so ~3x the frames per second; ``bench/bench_models.py``),
but some state is shared by the batch: the ``*_pool_frame_count`` tensors are shape
(1,), one frame count for every row. So a batch starts together and can only shrink:
when a video ends (or fails to decode) its rows are dropped from every per-video state
tensor and the others go on.

Memory stays flat in video length: one frame per video is held, and a video keeps a
top-k per second, never its logits.
"""

from __future__ import annotations

import contextlib
import time
from fractions import Fraction
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from beam_pipeline.models.backend import InputRange, TensorFlowBackend
from beam_pipeline.models.spec import ModelSpec
from transforms.clips import read_frames
from transforms.metrics import NAMESPACE
from transforms.postprocess import softmax, top_k
from transforms.preprocess import FrameSpec
from transforms.records import ClipScores, Failure, VideoInfo, VideoRef, VideoResult
from transforms.sampling import rate_fraction
from transforms.video_io import DecodeLimits, VideoReader, stream_facts

DECODE = "decode"  # failure stages: a video that could not be read,
INFERENCE = "inference"  # or whose batch the model failed on

States = dict[str, Any]  # state name -> tf.Tensor, opaque


class NoFrames(Exception):
    """A video whose container opened but gave no decodable frame."""


class StreamModel:
    """A loaded stream classifier (the MoViNet stream contract, see the module doc)."""

    def __init__(self, spec: ModelSpec, loaded: Any):
        self.spec = spec
        self._loaded = loaded  # keeps the variables alive
        self._init_states, self._call = _stream_convention(spec, loaded)
        self._to_input = InputRange(spec.value_range)
        # Which state tensors hold one row per video: those whose leading dim follows
        # the batch size. The rest (frame counts) are shared by the whole batch.
        two, three = self._init_states(2), self._init_states(3)
        self.per_video_keys = frozenset(
            key
            for key in two
            if len(two[key].shape) and (two[key].shape[0], three[key].shape[0]) == (2, 3)
        )

    @classmethod
    def load(cls, spec: ModelSpec) -> "StreamModel":
        return cls(spec, TensorFlowBackend().load(spec))

    def init(self, batch: int) -> States:
        """The initial state of ``batch`` videos that start together."""
        return self._init_states(batch)

    def step(self, frames: np.ndarray, states: States) -> tuple[np.ndarray, States]:
        """One frame per video: uint8 [B, H, W, 3] RGB -> (float32 logits [B, C], states)."""
        import tensorflow as tf

        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, H, W, 3], got {frames.dtype} {frames.shape}")
        x = self._to_input(frames)[:, tf.newaxis]
        logits, states = self._call(x, states)
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != (frames.shape[0], self.spec.num_classes):
            raise ValueError(
                f"model {self.spec.name} gave logits of shape {logits.shape}, expected "
                f"[{frames.shape[0]}, {self.spec.num_classes}] (does the label list match?)"
            )
        return logits, states

    def keep(self, states: States, rows: Sequence[int]) -> States:
        """The state of only ``rows`` of the batch, in that order."""
        import tensorflow as tf

        index = tf.constant(list(rows), tf.int32)
        return {
            key: tf.gather(value, index) if key in self.per_video_keys else value
            for key, value in states.items()
        }


def _stream_convention(spec: ModelSpec, loaded: Any):
    """(init_states(batch) -> states, call(image [B, 1, H, W, 3], states) -> (logits, states)).

    Prefers the restored Keras object (``model.init_states``, ``model({**states,
    'image': x})``, as in the MoViNet tutorial) over the XLA-compiled ``call``
    signature: on this 2-core CPU it is as fast at B=1 (36-43 vs 48-54 ms a step) and
    3x faster at B=8 (92-108 vs 300-325 ms), and the signature recompiles (~5 s) for
    every new batch size.
    """
    import tensorflow as tf

    image_key = spec.input_key or "image"
    logits_key = spec.output_key or "logits"
    size = spec.size

    def shape(batch: int):
        return tf.constant([batch, 1, size, size, 3], tf.int32)

    def split(outputs: Any) -> tuple[Any, States]:
        if isinstance(outputs, (tuple, list)) and len(outputs) == 2:
            logits, states = outputs
            return logits, dict(states)
        if isinstance(outputs, dict) and logits_key in outputs:
            states = dict(outputs)
            return states.pop(logits_key), states
        raise ValueError(
            f"model {spec.name}: a stream step must give (logits, states) or a dict "
            f"with {logits_key!r}"
        )

    if callable(loaded) and hasattr(loaded, "init_states"):
        # One graph per step instead of Keras' eager call machinery; reduce_retracing
        # makes the batch dim unknown after the second size, so a shrinking batch
        # does not retrace (~2.5 s) at every new size.
        @tf.function(reduce_retracing=True)
        def call(x, states):
            return loaded({**states, image_key: x})

        return (
            lambda batch: dict(loaded.init_states(shape(batch))),
            lambda x, states: split(call(x, states)),
        )
    signatures = getattr(loaded, "signatures", {})
    if "init_states" in signatures and "call" in signatures:
        init_fn, call_fn = signatures["init_states"], signatures["call"]
        return (
            lambda batch: dict(init_fn(input_shape=shape(batch))),
            lambda x, states: split(call_fn(**{**states, image_key: x})),
        )
    raise ValueError(
        f"model {spec.name} is not a stream model: it needs 'init_states' and a call "
        "that takes the states (signatures 'init_states' and 'call')"
    )


# -- frames --------------------------------------------------------------------------


class VideoFrames:
    """One open video: iterate ``(t, uint8 [S, S, 3] RGB)`` resampled to the model's fps.

    ``t`` is the frame's time (``Fraction`` seconds) on the video's timeline, ``1 / fps``
    apart. ``info`` is the container's ``SourceInfo``; after iteration,
    ``num_frames_decoded``, ``decode_errors`` and ``duration_s`` (decoded) are set.
    """

    def __init__(self, reader: VideoReader, fps: float, frame_spec: FrameSpec):
        self._reader = reader
        self._fps = fps
        self._frame_spec = frame_spec
        self.info = reader.info

    def __iter__(self) -> Iterator[tuple[Fraction, np.ndarray]]:
        return read_frames(self._reader, self._fps, self._frame_spec)

    @property
    def num_frames_decoded(self) -> int:
        return self._reader.frames_decoded

    @property
    def decode_errors(self) -> int:
        return self._reader.decode_errors

    @property
    def discontinuities(self) -> int:
        return self._reader.discontinuities

    @property
    def duration_s(self) -> Optional[Fraction]:
        return self._reader.duration_s


@contextlib.contextmanager
def read_video_frames(
    uri: str, fps: float, frame_spec: FrameSpec, limits: DecodeLimits
) -> Iterator[VideoFrames]:
    """Open ``uri`` for frame-by-frame reading (see VideoFrames).

    Raises a ``VideoDecodeError`` (or the storage's error) when it cannot be opened;
    iterating raises one when decoding fails, e.g. past ``limits.max_duration_s``.
    """
    with VideoReader(uri, limits) as reader:
        yield VideoFrames(reader, fps, frame_spec)


OpenFrames = Callable[[str, float, FrameSpec, DecodeLimits], ContextManager[VideoFrames]]


def video_info(ref: VideoRef, frames: VideoFrames, num_clips: int, duration_s=None) -> VideoInfo:
    """The video row's facts: container info and what was decoded."""
    source = frames.info
    decoded = duration_s if duration_s is not None else frames.duration_s
    return VideoInfo(
        video_id=ref.video_id,
        uri=ref.uri,
        # What was decoded is the truth; container metadata of a truncated file lies.
        duration_s=float(decoded or getattr(source, "duration_s", None) or 0.0),
        fps=float(getattr(source, "fps", None) or 0.0),
        width=int(getattr(source, "width", 0) or 0),
        height=int(getattr(source, "height", 0) or 0),
        num_clips=num_clips,
        num_frames=int(frames.num_frames_decoded or 0),
        decode_errors=int(frames.decode_errors or 0),
        discontinuities=int(getattr(frames, "discontinuities", 0) or 0),
        **stream_facts(source),
    )


def decode_failure(ref: VideoRef, error: BaseException) -> VideoResult:
    return VideoResult(ref, failure=Failure.from_exception(ref.video_id, ref.uri, DECODE, error))


def inference_failure(ref: VideoRef, error: BaseException) -> VideoResult:
    return VideoResult(ref, failure=Failure.from_exception(ref.video_id, ref.uri, INFERENCE, error))


# -- the lockstep loop ---------------------------------------------------------------


class _Track:
    """One video of a lockstep batch: its reader, and its results so far."""

    def __init__(self, index: int, ref: VideoRef, frames: VideoFrames, exits: contextlib.ExitStack):
        self.index = index  # position in the batch RunInference gave
        self.ref = ref
        self.frames = frames
        self._iter = iter(frames)
        self._exits = exits
        self.count = 0  # frames fed to the model
        self.segment_start: Optional[Fraction] = None
        self.last_t: Optional[Fraction] = None
        self.last_logits: Optional[np.ndarray] = None
        self.clips: list[ClipScores] = []
        self.result: Optional[VideoResult] = None
        self.decode_s = 0.0

    def next_frame(self) -> Optional[np.ndarray]:
        """The next frame, or None when the video ended or failed (``result`` set)."""
        started = time.perf_counter()
        try:
            item = next(self._iter, None)
            if item is None and self.count == 0:
                raise NoFrames("no decodable video frames")
        except Exception as error:  # noqa: BLE001 - a bad video is data, not a crash
            self.close()
            self.result = decode_failure(self.ref, error)
            return None
        finally:
            self.decode_s += time.perf_counter() - started
        if item is None:
            return None
        t, frame = item
        if self.segment_start is None:
            self.segment_start = t
        self.last_t = t
        return frame

    def close(self) -> None:
        self._exits.close()


def classify_streams(
    model: StreamModel,
    refs: Sequence[VideoRef],
    open_frames: Callable[[str], ContextManager[VideoFrames]],
    top_k_labels: int,
) -> list[VideoResult]:
    """Classify ``refs`` in lockstep (see the module doc); one VideoResult per ref, in order.

    A video that cannot be opened or decoded gets a ``decode`` failure and leaves the
    batch; the others go on. An error in the model fails, at ``inference``, the videos
    still in the batch; those that had ended keep their results. Errors are data: this
    returns a result for every ref.
    """
    spec = model.spec
    period = 1 / rate_fraction(spec.fps)
    per_row = spec.frames_per_clip
    labels = spec.labels

    def scores(logits: np.ndarray) -> tuple[tuple[str, ...], tuple[float, ...]]:
        names, values = top_k(softmax(logits), labels, top_k_labels)
        return tuple(names), tuple(values)

    def close_segment(track: _Track) -> None:
        names, values = scores(track.last_logits)
        end = track.last_t + period
        track.clips.append(
            ClipScores(len(track.clips), float(track.segment_start), float(end), names, values)
        )
        track.segment_start = None

    def finish(track: _Track) -> None:
        if track.count % per_row:
            close_segment(track)  # the last, partial second
        names, values = scores(track.last_logits)
        info = video_info(track.ref, track.frames, len(track.clips))
        track.close()
        track.result = VideoResult(
            track.ref,
            info,
            tuple(track.clips),
            names,
            values,
            decode_ms=int(track.decode_s * 1000),
        )

    tracks: list[_Track] = []
    results: dict[int, VideoResult] = {}
    try:
        for i, ref in enumerate(refs):
            exits = contextlib.ExitStack()
            started = time.perf_counter()
            try:
                frames = exits.enter_context(open_frames(ref.uri))
            except Exception as error:  # noqa: BLE001 - unreadable video: a failure row
                exits.close()
                results[i] = decode_failure(ref, error)
                continue
            tracks.append(_Track(i, ref, frames, exits))
            tracks[-1].decode_s = time.perf_counter() - started
        try:
            states = model.init(len(tracks)) if tracks else None
            while tracks:
                frames, keep = [], []
                for row, track in enumerate(tracks):
                    frame = track.next_frame()
                    if frame is None:
                        if track.result is None:
                            finish(track)
                        results[track.index] = track.result
                    else:
                        frames.append(frame)
                        keep.append(row)
                if len(keep) < len(tracks):
                    tracks = [tracks[row] for row in keep]
                    if not tracks:
                        break
                    states = model.keep(states, keep)
                logits, states = model.step(np.stack(frames), states)
                for row, track in enumerate(tracks):
                    track.last_logits = logits[row]
                    track.count += 1
                    if track.count % per_row == 0:
                        close_segment(track)
        except Exception as error:  # noqa: BLE001 - the model failed: errors are data
            for track in tracks:
                results[track.index] = inference_failure(track.ref, error)
    finally:
        for track in tracks:
            track.close()
    return [results[i] for i in range(len(refs))]


# -- RunInference --------------------------------------------------------------------


class StreamModelHandler(ModelHandler[VideoRef, VideoResult, StreamModel]):
    """RunInference handler: a batch of VideoRefs, classified in lockstep.

    Batches are exactly ``max_batch_size`` videos where the bundle has them
    (``min_batch_size`` = ``max_batch_size``): lockstep is where a stream model's
    throughput comes from, and an element is a whole video, so waiting for a full
    batch costs nothing. ``open_frames`` is the decode boundary (tests pass fakes).
    """

    def __init__(
        self,
        spec: ModelSpec,
        limits: Optional[DecodeLimits] = None,
        top_k: int = 5,
        max_batch_size: Optional[int] = None,
        open_frames: OpenFrames = read_video_frames,
    ):
        batch = max_batch_size or spec.max_batch_size
        super().__init__(min_batch_size=batch, max_batch_size=batch)
        self._spec = spec
        self._limits = limits or DecodeLimits()
        self._top_k = top_k
        self._open_frames = open_frames

    def load_model(self) -> StreamModel:
        return StreamModel.load(self._spec)

    def run_inference(
        self,
        batch: Sequence[VideoRef],
        model: StreamModel,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> list[VideoResult]:
        spec, limits = self._spec, self._limits
        frame_spec = spec.frame_spec()

        def open_frames(uri: str) -> ContextManager[VideoFrames]:
            return self._open_frames(uri, spec.fps, frame_spec, limits)

        return classify_streams(model, list(batch), open_frames, self._top_k)

    def get_num_bytes(self, batch: Sequence[VideoRef]) -> int:
        return sum(ref.size or 0 for ref in batch)

    def get_metrics_namespace(self) -> str:
        return NAMESPACE
