"""The registered models, and turning a ``--model`` value into a ModelSpec.

``--model`` takes a registered name, a TF Hub handle or URL, a SavedModel directory
(local or in a bucket) or a spec file (``.json`` / ``.yaml``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from beam_pipeline.models import i3d_weights
from beam_pipeline.models.savedmodel import BUILTIN
from beam_pipeline.models.spec import (
    CLIP,
    STREAM,
    ModelSpec,
    SpecError,
    packaged_labels,
    read_labels,
    spec_from_file,
)

DEFAULT_MODEL = i3d_weights.MODEL_NAME
MOVINET_HUB = "https://tfhub.dev/tensorflow/movinet/{variant}/{mode}/kinetics-600/classification/3"

# MoViNet facts (Kinetics-600): input side in pixels, fps, frames seen in training.
_MOVINET = {
    "a0": (172, 5, 50),
    "a1": (172, 5, 50),
    "a2": (224, 5, 50),
    "a3": (256, 12, 120),
    "a4": (290, 8, 80),
    "a5": (320, 12, 120),
}


def _i3d() -> ModelSpec:
    facts = i3d_weights
    return ModelSpec(
        name=facts.MODEL_NAME,
        source=BUILTIN + facts.MODEL_NAME,
        kind=CLIP,
        size=facts.INPUT_SIZE,
        resize_shorter=facts.RESIZE_SHORTER,
        fps=facts.FPS,
        frames_per_clip=facts.CLIP_FRAMES,
        value_range=facts.VALUE_RANGE,
        labels=packaged_labels("kinetics400"),
        max_batch_size=4,
        weights_sha256=facts.WEIGHTS_SHA256,
        description="Inception-I3D RGB, Kinetics-400 (TF Hub deepmind/i3d-kinetics-400/1)",
        # Average-pooled Mixed_5c, before the logits layer (the builder's export adds it).
        embedding_key=i3d_weights.EMBEDDING_KEY,
        embedding_dim=i3d_weights.EMBEDDING_DIM,
        embedding_signature=i3d_weights.EMBEDDING_SIGNATURE,
    )


def _movinet(variant: str, mode: str) -> ModelSpec:
    size, fps, frames = _MOVINET[variant]
    stream = mode == "stream"
    return ModelSpec(
        name=f"movinet-{variant}-{mode}",
        source=MOVINET_HUB.format(variant=variant, mode=mode),
        kind=STREAM if stream else CLIP,
        size=size,
        fps=float(fps),
        # A stream model emits one row per second; a base model sees its training
        # clip length at once.
        frames_per_clip=fps if stream else frames,
        value_range=(0.0, 1.0),
        input_key="image",
        output_key="logits" if stream else "classifier_head",
        signature=None if stream else "serving_default",
        labels=packaged_labels("kinetics600"),
        max_batch_size=8 if stream else 2,
        description=f"MoViNet-{variant.upper()} {mode}, Kinetics-600",
    )


def registered() -> dict[str, ModelSpec]:
    """Every registered model by name, in display order."""
    specs = [_i3d()]
    specs += [_movinet(v, "base") for v in _MOVINET]
    specs += [_movinet(v, "stream") for v in _MOVINET]
    return {spec.name: spec for spec in specs}


def _is_hub_handle(value: str) -> bool:
    return value.startswith(("https://tfhub.dev/", "https://www.kaggle.com/models/")) or (
        re.fullmatch(r"[\w-]+/[\w/-]+/\d+", value) is not None and "://" not in value
    )


def resolve_model(
    value: str, labels_path: Optional[str] = None, model_path: Optional[str] = None
) -> ModelSpec:
    """The spec for a ``--model`` value; raises SpecError with a one-line reason.

    ``model_path`` keeps the spec but loads the weights from there: a registered
    model exported once to a bucket, or a hub model copied for machines without
    access to the hub.
    """
    specs = registered()
    if value in specs:
        spec = specs[value]
    elif value.endswith((".json", ".yaml", ".yml")):
        return spec_from_file(value)
    else:
        spec = _spec_for_handle(value, specs)
    if labels_path:
        spec = dataclasses.replace(spec, labels=read_labels(labels_path))
    if model_path:
        spec = dataclasses.replace(spec, source=model_path)
    if not spec.labels:
        raise SpecError(f"model {value!r} has no class names: pass --label-file FILE")
    return spec


def _spec_for_handle(value: str, specs: dict[str, ModelSpec]) -> ModelSpec:
    handle = value
    if _is_hub_handle(value) and not value.startswith("https://"):
        handle = f"https://tfhub.dev/{value}"
    for spec in specs.values():
        if spec.source.rstrip("/") == handle.rstrip("/"):
            return spec
    if handle.rstrip("/") == i3d_weights.HUB_HANDLE:
        return dataclasses.replace(specs[DEFAULT_MODEL], source=handle)
    if not (_is_hub_handle(value) or _looks_like_dir(value)):
        names = ", ".join(specs)
        raise SpecError(
            f"unknown model {value!r}: give a registered name ({names}), a TF Hub "
            "handle, a SavedModel directory or a spec file (.json/.yaml)"
        )
    # An unknown SavedModel or handle: assume the I3D clip contract (224 px, 25 fps,
    # 64 frames, RGB in [0, 1]); anything else needs a spec file.
    return dataclasses.replace(
        specs[DEFAULT_MODEL],
        name=value.rstrip("/").rsplit("/", 1)[-1] or value,
        source=handle,
        labels=(),
        weights_sha256=None,
        description="user SavedModel with the I3D clip contract",
    )


def _looks_like_dir(value: str) -> bool:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(value)
        return fs.isdir(path)
    except Exception:  # noqa: BLE001 - any storage error means "not a readable dir"
        return "://" in value
