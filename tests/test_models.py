"""Model specs, the registry, the clip model and its RunInference handler (tier 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from apache_beam.ml.inference.base import PredictionResult

from beam_pipeline.models.clip_model import ClipModel, ClipModelHandler
from beam_pipeline.models.handler import build_handler
from beam_pipeline.models.registry import DEFAULT_MODEL, registered, resolve_model
from beam_pipeline.models.spec import ModelSpec, SpecError, spec_from_file
from tests.helpers import GOLDEN, SHARED
from transforms.records import ClipKey

# Published in the MoViNet README (tensorflow/models, official/projects/movinet, the
# "Pretrained Models" table of Kinetics-600 checkpoints): variant: (input px, fps,
# training frames). Typed from there, not from the registry, so a wrong value fails.
MOVINET_FACTS = {
    "a0": (172, 5, 50),
    "a1": (172, 5, 50),
    "a2": (224, 5, 50),
    "a3": (256, 12, 120),
    "a4": (290, 8, 80),
    "a5": (320, 12, 120),
}


def shared_labels(name: str) -> tuple[str, ...]:
    path = SHARED / "labels" / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found (set VIDEO_INDEX_SHARED)")
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def test_registry_labels_are_the_published_class_lists():
    specs = registered()
    assert specs[DEFAULT_MODEL].labels == shared_labels("kinetics400")
    kinetics600 = shared_labels("kinetics600")
    for variant in MOVINET_FACTS:
        for mode in ("base", "stream"):
            assert specs[f"movinet-{variant}-{mode}"].labels == kinetics600


def test_i3d_spec_has_the_published_contract():
    """TF Hub deepmind/i3d-kinetics-400/1 and the I3D paper: 224 px RGB in [0, 1], 25 fps,
    64-frame training clips, 400 classes; evaluation resizes the shorter side to 256.
    The weights' hash is the one tests/data/golden/README.md gives."""
    spec = registered()[DEFAULT_MODEL]
    assert (spec.size, spec.resize_shorter, spec.fps, spec.frames_per_clip) == (224, 256, 25, 64)
    assert spec.value_range == (0.0, 1.0) and spec.num_classes == 400 and spec.kind == "clip"
    assert spec.weights_sha256 in (GOLDEN / "README.md").read_text()
    assert resolve_model("https://tfhub.dev/deepmind/i3d-kinetics-400/1").name == DEFAULT_MODEL


def test_registry_lists_i3d_and_every_movinet():
    specs = registered()
    for variant, (px, fps, frames) in MOVINET_FACTS.items():
        base, stream = specs[f"movinet-{variant}-base"], specs[f"movinet-{variant}-stream"]
        assert (base.size, base.fps, base.frames_per_clip) == (px, fps, frames)
        assert (stream.size, stream.fps, stream.kind) == (px, fps, "stream")
        assert base.num_classes == stream.num_classes == 600
        assert base.source.endswith(f"/{variant}/base/kinetics-600/classification/3")


def test_spec_rejects_nonsense():
    with pytest.raises(SpecError, match="model kind must be one of .* got 'banana'"):
        ModelSpec(name="x", source="y", kind="banana")
    with pytest.raises(SpecError, match="value_range must be"):
        ModelSpec(name="x", source="y", value_range=(1.0, 0.0))


def test_hub_handles_resolve_to_registered_specs():
    assert resolve_model("deepmind/i3d-kinetics-400/1").frames_per_clip == 64
    spec = resolve_model(
        "https://tfhub.dev/tensorflow/movinet/a2/base/kinetics-600/classification/3"
    )
    assert spec.name == "movinet-a2-base"
    with pytest.raises(SpecError, match="unknown model"):
        resolve_model("no-such-model")


def test_saved_model_dir_needs_labels(colour_model_dir):
    with pytest.raises(SpecError, match="--label-file"):
        resolve_model(str(colour_model_dir))
    spec = resolve_model(str(colour_model_dir), labels_path=str(colour_model_dir / "labels.txt"))
    assert spec.labels == ("red", "green", "blue")


def test_spec_file_with_relative_paths(tmp_path, colour_model_dir):
    (tmp_path / "classes.txt").write_text("r\ng\nb\n")
    spec_path = tmp_path / "colour.json"
    spec_path.write_text(
        json.dumps(
            {
                "path": str(colour_model_dir),
                "label_file": "classes.txt",
                "size": 16,
                "fps": 5,
                "frames_per_clip": 4,
                "value_range": [0, 1],
            }
        )
    )
    spec = spec_from_file(str(spec_path))
    assert (spec.name, spec.size, spec.labels) == ("colour", 16, ("r", "g", "b"))
    spec_path.write_text(json.dumps({"path": "x", "labels": ["a"], "colour": 1}))
    with pytest.raises(SpecError, match="unknown keys"):
        spec_from_file(str(spec_path))


def solid_clip(rgb, frames=8, size=32) -> np.ndarray:
    clip = np.zeros((frames, size, size, 3), np.uint8)
    clip[...] = rgb
    return clip


def test_clip_model_maps_uint8_to_the_model_range(colour_spec):
    model = ClipModel.load(colour_spec)
    logits = model.predict(np.stack([solid_clip((255, 0, 0)), solid_clip((0, 0, 51))]))
    # The colour model returns 10 x channel means of its [0, 1] input.
    np.testing.assert_allclose(logits, [[10, 0, 0], [0, 0, 2]], atol=1e-3)
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((1, 8, 32, 32, 3), np.float32))


def test_label_count_mismatch_is_a_clear_error(colour_spec):
    import dataclasses

    model = ClipModel.load(dataclasses.replace(colour_spec, labels=("a", "b")))
    with pytest.raises(ValueError, match="label list"):
        model.predict(solid_clip((1, 2, 3))[None])


def test_handler_lifecycle_and_keys(colour_spec):
    handler = build_handler(colour_spec, max_batch_size=2)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 2, "max_batch_size": 2}
    model = handler.load_model()
    keys = [ClipKey("v", "/v", i, 0.0, 1.0) for i in range(2)]
    results = list(
        handler.run_inference(
            [(keys[0], solid_clip((0, 255, 0))), (keys[1], solid_clip((0, 0, 255)))], model
        )
    )
    assert [k for k, _ in results] == keys
    assert all(isinstance(r, PredictionResult) for _, r in results)
    assert [int(np.argmax(r.inference)) for _, r in results] == [1, 2]
    # A short batch is padded to the fixed size; only its own results come back.
    (only,) = handler.run_inference([(keys[0], solid_clip((255, 0, 0)))], model)
    assert int(np.argmax(only[1].inference)) == 0
    unkeyed = ClipModelHandler(colour_spec)
    assert unkeyed.get_num_bytes([solid_clip((0, 0, 0))]) == 8 * 32 * 32 * 3
