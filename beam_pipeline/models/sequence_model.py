"""Frame-feature + sequence models (the Keras CNN-RNN video classifier): N frames a video.

Takes ``VideoRef`` records, one per RunInference element, and gives one ``VideoOutcome``
each, holding one clip: the N frames the sequence model saw. The model is two parts,
named by a ``frame_sequence`` spec file:

- the **feature model**, a per-frame CNN: float ``[M, S, S, 3]`` RGB in the spec's
  ``value_range`` (default 0-255: the Keras example's CNN does its own scaling
  inside) → features ``[M, D]``;
- the **sequence model** (e.g. a GRU with masking): ``(features [B, N, D], mask bool
  [B, N])`` → logits, or probabilities if ``output_kind: probabilities`` → ``[B, C]``.

Which N frames (``frame_selection``): ``first`` takes the first N frames at the spec's
fps, as the Keras example does; ``spread`` takes N frames spread evenly over the video,
one at the middle of each of N equal stretches, planned from the container's
duration. A container that gives no duration cannot be planned for: such a video
falls back to ``first`` (logged). A video with fewer than N frames is padded: its
missing frames are zero features with ``mask`` False, and the CNN never runs on them.

Why not the clip path (DecodeClips → ClassifyClips): its clips are windows of
consecutive frames padded by looping or repeating frames, so it can express neither a
spread of single frames nor "no frame here" (a mask); and a model that gives one
prediction per video needs none of the per-clip bookkeeping. So this model takes the
whole-video strategy of the stream models (``transforms.video_inference.ClassifyVideos``): the
handler decodes each video itself and keeps only the N frames it picks.
"""

from __future__ import annotations

import logging
import time
from fractions import Fraction
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

from beam_pipeline.models.backend import InputRange
from beam_pipeline.models.savedmodel import (
    configure_tensorflow,
    find_signature,
    load_saved_model,
    sole_output,
)
from beam_pipeline.models.spec import ModelSpec
from beam_pipeline.models.video_handler import (
    DECODE,
    INFERENCE,
    VideoModelHandler,
    failed,
)
from transforms.reading import NoFrames, video_info
from transforms.records import VideoInfo, VideoOutcome, VideoRef
from transforms.sampling import expected_frame_count, rate_fraction
from transforms.scores import clip_scores, softmax

_LOGGER = logging.getLogger(__name__)

# Frames per call of the feature model: bounds its activations, whatever the batch.
FEATURE_CHUNK = 32


def spread_indices(expected_frames: Optional[int], max_frames: int) -> Optional[list[int]]:
    """Indices of ``max_frames`` frames spread over ``expected_frames``: the middle of
    each of ``max_frames`` equal stretches. None when there is nothing to spread: the
    length is unknown, or the video has no more frames than wanted (take them all).
    """
    if expected_frames is None or expected_frames <= max_frames:
        return None
    return [(2 * i + 1) * expected_frames // (2 * max_frames) for i in range(max_frames)]


def pick_frames(
    video: Any, max_frames: int, fps: float, selection: str
) -> tuple[list[np.ndarray], list, bool]:
    """The frames one clip is made of: (frames, their times, whether decode reached the end).

    Stops decoding at the last frame it needs, so ``first`` costs N frames of decode.
    """
    wanted = None
    if selection == "spread":
        duration = getattr(video.info, "duration_s", None)
        expected = expected_frame_count(float(duration) if duration else None, fps)
        if expected is None:
            _LOGGER.warning("no container duration: taking the first %d frames", max_frames)
        wanted = spread_indices(expected, max_frames)
    last = wanted[-1] if wanted else max_frames - 1
    keep = set(wanted) if wanted else set(range(max_frames))
    frames, times = [], []
    for index, (t, frame) in enumerate(video):
        if index in keep:
            frames.append(frame)
            times.append(t)
        if index >= last:
            return frames, times, False
    return frames, times, True


class SequenceModel:
    """A loaded CNN + sequence model.

    ``predict(uint8 [B, N, S, S, 3] RGB, mask bool [B, N]) -> float32 logits [B, C]``;
    a probability output is returned as log-probabilities, whose softmax is the same
    probabilities, so the rest of the job sees logits either way.
    """

    def __init__(self, spec: ModelSpec, feature_model: Any, sequence_model: Any):
        self.spec = spec
        self._feature_model = feature_model  # keep the variables alive
        self._sequence_model = sequence_model
        self._features = _feature_call(spec, feature_model)
        self._classify = _sequence_call(spec, sequence_model)
        self._to_input = InputRange(spec.value_range)

    @classmethod
    def load(cls, spec: ModelSpec) -> "SequenceModel":
        configure_tensorflow()
        return cls(spec, load_model_file(spec.feature_model), load_model_file(spec.sequence_model))

    def features(self, frames: np.ndarray) -> np.ndarray:
        """uint8 [M, S, S, 3] RGB -> float32 [M, D], in chunks of FEATURE_CHUNK frames."""
        out = []
        for start in range(0, len(frames), FEATURE_CHUNK):
            x = self._to_input(frames[start : start + FEATURE_CHUNK])
            out.append(np.asarray(self._features(x), dtype=np.float32))
        features = np.concatenate(out).reshape(len(frames), -1)
        dim = self.spec.feature_dim
        if dim is not None and features.shape[1] != dim:
            raise ValueError(
                f"model {self.spec.name}: the feature model gives {features.shape[1]} "
                f"features a frame, the spec says feature_dim {dim}"
            )
        return features

    def predict(self, frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 [B, N, S, S, 3], got {frames.dtype} {frames.shape}")
        mask = np.asarray(mask, dtype=bool)
        real = self.features(frames[mask])  # the CNN never sees padding
        features = np.zeros(mask.shape + (real.shape[1],), np.float32)
        features[mask] = real
        out = np.asarray(self._classify(features, mask), dtype=np.float32)
        if out.shape != (frames.shape[0], self.spec.num_classes):
            raise ValueError(
                f"model {self.spec.name} gave {out.shape}, expected "
                f"[{frames.shape[0]}, {self.spec.num_classes}] (does the label list match?)"
            )
        if self.spec.output_kind == "probabilities":
            return np.log(np.maximum(out, 1e-30)).astype(np.float32)
        return out


def load_model_file(path: str) -> Any:
    """A ``.keras`` / ``.h5`` Keras model (local or any fsspec URL) or a SavedModel."""
    if not path.endswith((".keras", ".h5")):
        return load_saved_model(path)
    import keras

    if "://" in path and not path.startswith("file://"):
        import os
        import tempfile

        import fsspec

        local = os.path.join(tempfile.mkdtemp(prefix="video-index-"), os.path.basename(path))
        fsspec.filesystem(path.split("://", 1)[0]).get(path, local)
        path = local
    return keras.saving.load_model(path, compile=False)


def _is_keras(model: Any) -> bool:
    try:
        import keras
    except ImportError:
        return False
    return isinstance(model, keras.Model)


def _signature(spec: ModelSpec, loaded: Any) -> Optional[Any]:
    return find_signature(loaded, (spec.signature, "serving_default", "serve"))


def _feature_call(spec: ModelSpec, model: Any) -> Callable[[Any], Any]:
    if _is_keras(model):
        return lambda x: model(x, training=False)
    signature = _signature(spec, model)
    if signature is not None:
        _, kwargs = signature.structured_input_signature
        (name,) = kwargs
        return lambda x: sole_output(spec, signature(**{name: x}))
    return lambda x: sole_output(spec, model(x))


def _sequence_call(spec: ModelSpec, model: Any) -> Callable[[np.ndarray, np.ndarray], Any]:
    """(features [B, N, D], mask bool [B, N]) -> [B, C]; the mask is the boolean input."""
    if _is_keras(model):
        is_mask = [str(getattr(t, "dtype", "")).endswith("bool") for t in model.inputs]
        if len(is_mask) != 2 or sum(is_mask) != 1:
            raise ValueError(
                f"model {spec.name}: the sequence model must take two inputs, the frame "
                "features and a boolean mask"
            )
        return lambda f, m: model([m if b else f for b in is_mask], training=False)
    signature = _signature(spec, model)
    if signature is None:
        raise ValueError(f"model {spec.name}: the sequence model has no serving signature")
    _, kwargs = signature.structured_input_signature
    masks = [name for name, t in kwargs.items() if t.dtype.is_bool]
    others = [name for name in kwargs if name not in masks]
    if len(masks) != 1 or len(others) != 1:
        raise ValueError(
            f"model {spec.name}: the sequence model signature takes {sorted(kwargs)}; it "
            "must take the frame features and one boolean mask"
        )
    return lambda f, m: sole_output(spec, signature(**{others[0]: f, masks[0]: m}))


class _Picked(NamedTuple):
    """One video's clip: uint8 [N, S, S, 3] frames (zeros where ``mask`` is False)."""

    ref: VideoRef
    frames: np.ndarray
    mask: np.ndarray
    start_s: Fraction
    end_s: Fraction
    info: VideoInfo
    decode_ms: int


class SequenceModelHandler(VideoModelHandler[SequenceModel]):
    """RunInference handler: a batch of VideoRefs, N frames each, one model call.

    A batch holds ``max_batch_size`` x N frames, uint8, until the model input.
    """

    def load_model(self) -> SequenceModel:
        return SequenceModel.load(self._spec)

    def run_inference(
        self,
        batch: Sequence[VideoRef],
        model: SequenceModel,
        inference_args: Optional[dict[str, Any]] = None,
    ) -> list[VideoOutcome]:
        picked = [self._pick(ref) for ref in batch]
        ready = [p for p in picked if isinstance(p, _Picked)]
        if not ready:
            return picked
        try:
            logits = model.predict(
                np.stack([p.frames for p in ready]), np.stack([p.mask for p in ready])
            )
        except Exception as error:  # noqa: BLE001 - the model failed: errors are data
            return [
                failed(p.ref, INFERENCE, error) if isinstance(p, _Picked) else p for p in picked
            ]
        results = iter(self._result(p, row) for p, row in zip(ready, logits, strict=True))
        return [next(results) if isinstance(p, _Picked) else p for p in picked]

    def _pick(self, ref: VideoRef) -> "_Picked | VideoOutcome":
        """The video's N frames and mask, or its decode failure."""
        spec = self._spec
        n = spec.frames_per_clip
        started = time.perf_counter()
        try:
            with self.open_frames(ref.uri) as video:
                frames, times, to_end = pick_frames(video, n, spec.fps, spec.frame_selection)
                if not frames:
                    raise NoFrames("no decodable video frames")
                # Stopped early: only the container knows the whole length.
                info = video_info(ref, video, 1, decoded_to_end=to_end)
        except Exception as error:  # noqa: BLE001 - a bad video is data, not a crash
            return failed(ref, DECODE, error)
        clip = np.zeros((n,) + frames[0].shape, np.uint8)
        clip[: len(frames)] = np.stack(frames)
        end = times[-1] + 1 / rate_fraction(spec.fps)
        decode_ms = int((time.perf_counter() - started) * 1000)
        return _Picked(ref, clip, np.arange(n) < len(frames), times[0], end, info, decode_ms)

    def _result(self, picked: "_Picked", logits: np.ndarray) -> VideoOutcome:
        probs = softmax(logits)
        clip = clip_scores(0, picked.start_s, picked.end_s, probs, self._spec.labels, self._top_k)
        return VideoOutcome(
            picked.ref,
            picked.info,
            (clip,),
            clip.labels,
            clip.scores,
            decode_ms=picked.decode_ms,
        )
