"""Stream classifiers (MoViNet stream): frames in order, state carried across a video.

Takes ``VideoRef`` records, one per RunInference element, and gives one ``VideoOutcome``
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
from typing import Any, Callable, ContextManager, Optional, Sequence

import numpy as np

from beam_pipeline.models.backend import InputRange, TensorFlowBackend
from beam_pipeline.models.savedmodel import stream_convention
from beam_pipeline.models.spec import ModelSpec
from beam_pipeline.models.video_handler import (
    DECODE,
    INFERENCE,
    VideoModelHandler,
    failed,
)
from transforms.reading import NoFrames, video_info
from transforms.records import ClipScores, VideoOutcome, VideoRef
from transforms.sampling import rate_fraction
from transforms.scores import clip_scores, softmax, top_k

States = dict[str, Any]  # state name -> tf.Tensor, opaque


class StreamModel:
    """A loaded stream classifier (the MoViNet stream contract, see the module doc)."""

    def __init__(self, spec: ModelSpec, loaded: Any):
        self.spec = spec
        self._loaded = loaded  # keeps the variables alive
        self._init_states, self._call = stream_convention(spec, loaded)
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


# -- the lockstep loop ---------------------------------------------------------------


class _Track:
    """One video of a lockstep batch: its reader, and its results so far."""

    def __init__(self, index: int, ref: VideoRef, frames: Any, exits: contextlib.ExitStack):
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
        self.result: Optional[VideoOutcome] = None
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
            self.result = failed(self.ref, DECODE, error)
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
    open_frames: Callable[[str], ContextManager],
    top_k_labels: int,
) -> list[VideoOutcome]:
    """Classify ``refs`` in lockstep (see the module doc); one VideoOutcome per ref, in order.

    ``open_frames(uri)`` opens a video as ``transforms.reading.read_frames`` does.

    A video that cannot be opened or decoded gets a ``decode`` failure and leaves the
    batch; the others go on. An error in the model fails, at ``inference``, the videos
    still in the batch; those that had ended keep their results. Errors are data: this
    returns a result for every ref.
    """
    spec = model.spec
    period = 1 / rate_fraction(spec.fps)
    frames_per_clip = spec.frames_per_clip  # frames behind one clips/ row (one second)
    labels = spec.labels

    def close_segment(track: _Track) -> None:
        probs = softmax(track.last_logits)
        end = track.last_t + period
        index = len(track.clips)
        track.clips.append(
            clip_scores(index, track.segment_start, end, probs, labels, top_k_labels)
        )
        track.segment_start = None

    def finish(track: _Track) -> None:
        if track.count % frames_per_clip:
            close_segment(track)  # the last, partial second
        names, values = top_k(softmax(track.last_logits), labels, top_k_labels)
        info = video_info(track.ref, track.frames, len(track.clips))
        track.close()
        track.result = VideoOutcome(
            track.ref,
            info,
            tuple(track.clips),
            tuple(names),
            tuple(values),
            decode_ms=int(track.decode_s * 1000),
        )

    tracks: list[_Track] = []
    results: dict[int, VideoOutcome] = {}
    try:
        for i, ref in enumerate(refs):
            exits = contextlib.ExitStack()
            started = time.perf_counter()
            try:
                frames = exits.enter_context(open_frames(ref.uri))
            except Exception as error:  # noqa: BLE001 - unreadable video: a failure row
                exits.close()
                results[i] = failed(ref, DECODE, error)
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
                    if track.count % frames_per_clip == 0:
                        close_segment(track)
        except Exception as error:  # noqa: BLE001 - the model failed: errors are data
            for track in tracks:
                results[track.index] = failed(track.ref, INFERENCE, error)
    finally:
        for track in tracks:
            track.close()
    return [results[i] for i in range(len(refs))]


# -- RunInference --------------------------------------------------------------------


class StreamModelHandler(VideoModelHandler[StreamModel]):
    """RunInference handler: a batch of VideoRefs, classified in lockstep.

    Batches are exactly ``max_batch_size`` videos where the bundle has them
    (``min_batch_size`` = ``max_batch_size``): lockstep is where a stream model's
    throughput comes from, and an element is a whole video, so waiting for a full
    batch costs nothing. ``open_frames`` is the decode boundary (tests pass fakes).
    """

    full_batches = True

    def __init__(self, *args, backend: Any = None, **kwargs):
        super().__init__(*args, **kwargs)
        # None: TensorFlow. Else a backend with ``stream_model(spec)`` (OpenVINO), the
        # model at this handler's batch.
        self._backend = backend

    def load_model(self) -> StreamModel:
        if self._backend is not None:
            return self._backend.stream_model(self._spec)
        return StreamModel.load(self._spec)

    def run_inference(
        self,
        batch: Sequence[VideoRef],
        model: StreamModel,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> list[VideoOutcome]:
        return classify_streams(model, list(batch), self.open_frames, self._top_k)
