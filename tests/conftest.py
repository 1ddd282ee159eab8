"""Fixtures shared by the tiers: the ../shared folder and a tiny colour model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import MEDIA, SHARED

COLOUR_LABELS = ("red", "green", "blue")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: needs the real I3D model or long media")


def pytest_terminal_summary(terminalreporter):
    """Say how many tests skipped for want of ../shared: those whose skip reason names it
    (the wider media, cases and MoViNet exports; the tests that matter use repo files)."""
    skipped = terminalreporter.stats.get("skipped", [])
    wanting = [
        r for r in skipped if any(s in str(r.longrepr) for s in (str(SHARED), "../shared"))
    ]
    if wanting:
        terminalreporter.write_line(
            f"{len(wanting)} of {len(skipped)} skipped tests need {SHARED}, which is not "
            "here (it holds the wider media, cases and MoViNet exports; set VIDEO_INDEX_SHARED)"
        )


@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"shared media not found at {MEDIA} (set VIDEO_INDEX_SHARED)")
    return MEDIA


@pytest.fixture(scope="session")
def colour_model_dir(tmp_path_factory) -> Path:
    """A SavedModel that names a clip's dominant colour: [B,T,H,W,3] in [0,1] -> [B,3].

    Its logits are 10 x the mean of each channel, so a red clip's top-1 is 'red';
    plumbing tests use it where the real I3D would only add minutes.
    """
    import tensorflow as tf

    class ColourModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)])
        def __call__(self, clips):
            return 10.0 * tf.reduce_mean(clips, axis=[1, 2, 3])

    path = tmp_path_factory.mktemp("models") / "colour"
    module = ColourModel()
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.__call__.get_concrete_function()}
    )
    (path / "labels.txt").write_text("\n".join(COLOUR_LABELS) + "\n")
    return path


@pytest.fixture(scope="session")
def colour_spec_file(colour_model_dir) -> Path:
    """The colour model as a spec file: what `--model` takes for a model of one's own."""
    import json

    path = colour_model_dir.parent / "colour.json"
    path.write_text(
        json.dumps(
            {
                "name": "colour",
                "path": "colour",
                "label_file": "colour/labels.txt",
                "size": 32,
                "fps": 10,
                "frames_per_clip": 8,
                "max_batch_size": 3,
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def colour_spec(colour_model_dir):
    from beam_pipeline.models.spec import ModelSpec

    return ModelSpec(
        name="colour",
        source=str(colour_model_dir),
        size=32,
        fps=10.0,
        frames_per_clip=8,
        labels=COLOUR_LABELS,
        max_batch_size=3,
    )


@pytest.fixture(scope="session")
def colour_embedding_spec_file(tmp_path_factory) -> Path:
    """A colour classifier whose signature also gives an embedding, as a spec file:
    logits 10 x the mean of each channel, embedding [mean RGB, spread RGB + 0.01] (6)."""
    import json

    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)])
        def serve(self, clips):
            mean = tf.reduce_mean(clips, axis=[1, 2, 3])
            spread = tf.math.reduce_std(clips, axis=[1, 2, 3])
            return {"logits": 10.0 * mean, "embedding": tf.concat([mean, spread + 0.01], 1)}

    root = tmp_path_factory.mktemp("embedding-model")
    module = Model()
    tf.saved_model.save(module, str(root / "colour"), signatures={"serving_default": module.serve})
    (root / "labels.txt").write_text("\n".join(COLOUR_LABELS) + "\n")
    spec = {
        "name": "colour-embedding",
        "path": "colour",
        "label_file": "labels.txt",
        "size": 32,
        "fps": 10,
        "frames_per_clip": 8,
        "output_key": "logits",
        "embedding_key": "embedding",
        "embedding_dim": 6,
    }
    (root / "spec.json").write_text(json.dumps(spec))
    return root / "spec.json"


from tests.cloud import gcs_emulator, s3_server, store  # noqa: E402,F401 - fixtures
