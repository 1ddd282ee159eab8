"""Frame-feature + sequence models (kind ``frame_sequence``, the Keras CNN-RNN example).

A tiny CNN (Rescaling inside, conv, global average pool: 16 features a frame) and a
tiny GRU with masking are built and trained here to tell red videos from blue ones,
saved as ``.keras`` files (and as SavedModel exports), described by a YAML spec file
and served end to end through ``python -m beam_pipeline index --model spec.yaml``.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from beam_pipeline.models.sequence_model import (
    SequenceModel,
    SequenceModelHandler,
    pick_frames,
    spread_indices,
)
from beam_pipeline.models.spec import SpecError, spec_from_file
from tests.helpers import REPO, RUNNER_MODES, assert_injected_faults, index_tables, run_cli
from tests.media import write_video
from transforms.records import VideoRef

N_FRAMES = 8
FEATURES = 16
SIZE = 32
COLOURS = {"red": (225, 25, 25), "blue": (25, 25, 225)}


# ------------------------------------------------------------------ the models


@pytest.fixture(scope="module")
def cnn_rnn(tmp_path_factory) -> Path:
    """cnn.keras, seq.keras (and SavedModel exports cnn/, seq/) in one folder."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255.0),  # its own preprocessing: input 0-255
            keras.layers.Conv2D(FEATURES, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
        ]
    )
    features = keras.Input((N_FRAMES, FEATURES), name="frame_features")
    mask = keras.Input((N_FRAMES,), dtype="bool", name="frame_mask")
    hidden = keras.layers.GRU(8)(features, mask=mask)
    seq = keras.Model([features, mask], keras.layers.Dense(2, activation="softmax")(hidden))

    # Training data as the handler will make it: the CNN's features of the real
    # frames, zeros and mask False for the rest.
    rng = np.random.default_rng(0)
    x, m, y = [], [], []
    for i in range(64):
        label = i % 2
        count = int(rng.integers(1, N_FRAMES + 1))
        frames = np.empty((count, SIZE, SIZE, 3), np.float32)
        frames[...] = COLOURS["red" if label == 0 else "blue"]
        frames = np.clip(frames + rng.normal(0, 25, frames.shape), 0, 255)
        padded = np.zeros((N_FRAMES, FEATURES), np.float32)
        padded[:count] = cnn.predict(frames, verbose=0)
        x.append(padded)
        m.append(np.arange(N_FRAMES) < count)
        y.append(label)
    seq.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    seq.fit([np.array(x), np.array(m)], np.array(y), epochs=30, verbose=0)

    folder = tmp_path_factory.mktemp("cnn_rnn")
    cnn.save(folder / "cnn.keras")
    seq.save(folder / "seq.keras")
    cnn.export(str(folder / "cnn"), verbose=False)
    seq.export(str(folder / "seq"), verbose=False)
    return folder


SPEC_YAML = """\
# A Keras CNN-RNN: per-frame CNN features, then a GRU over N frames.
name: colour-cnn-gru
kind: frame_sequence
feature_model: {feature_model}
sequence_model: {sequence_model}
max_frames: 8
feature_dim: 16
frame_selection: {selection}
size: 32
fps: 5
output_kind: probabilities   # the GRU ends in a softmax
labels: [red, blue]
"""


def write_spec(
    folder: Path,
    selection="spread",
    feature_model="cnn.keras",
    sequence_model="seq.keras",
    name="spec.yaml",
) -> Path:
    path = folder / name
    path.write_text(
        SPEC_YAML.format(
            feature_model=feature_model, sequence_model=sequence_model, selection=selection
        )
    )
    return path


def test_spec_file_of_a_frame_sequence_model(tmp_path):
    spec = spec_from_file(str(write_spec(tmp_path)))
    assert spec.kind == "frame_sequence" and spec.name == "colour-cnn-gru"
    assert spec.feature_model == str(tmp_path / "cnn.keras")
    assert spec.sequence_model == str(tmp_path / "seq.keras")
    assert spec.frames_per_clip == 8 and spec.feature_dim == 16 and spec.size == 32
    assert spec.value_range == (0.0, 255.0)  # the CNN scales its own input
    assert spec.source == str(tmp_path / "spec.yaml")
    assert spec.labels == ("red", "blue") and spec.output_kind == "probabilities"

    (tmp_path / "bad.yaml").write_text(
        "kind: frame_sequence\nfeature_model: a.keras\nlabels: [x]\n"
    )
    with pytest.raises(SpecError, match="sequence_model"):
        spec_from_file(str(tmp_path / "bad.yaml"))
    with pytest.raises(SpecError, match="frame_selection"):
        spec_from_file(str(write_spec(tmp_path, selection="middle")))
    (tmp_path / "clip.yaml").write_text("path: m\nmax_frames: 8\nlabels: [x]\n")
    with pytest.raises(SpecError, match="max_frames"):
        spec_from_file(str(tmp_path / "clip.yaml"))


# -------------------------------------------------------------- frame selection


def test_spread_indices_are_the_middles_of_equal_stretches():
    assert spread_indices(None, 8) is None  # unknown length: the first N
    assert spread_indices(8, 8) is None and spread_indices(3, 8) is None  # all of them
    assert spread_indices(16, 4) == [2, 6, 10, 14]
    many = spread_indices(100, 8)
    assert many == sorted(set(many)) and many[0] == 6 and many[-1] == 93


@dataclasses.dataclass
class _Info:
    duration_s: Optional[float]


class CountingVideo:
    """Frames whose pixel value is their index, 1/5 s apart; counts what was pulled."""

    def __init__(self, count: int, duration_s: Optional[float]):
        self.count = count
        self.info = _Info(duration_s)
        self.pulled = 0

    def __iter__(self):
        for i in range(self.count):
            self.pulled += 1
            yield Fraction(i, 5), np.full((2, 2, 3), i, np.uint8)


def test_pick_first_spread_and_the_fallback():
    video = CountingVideo(20, duration_s=4.0)
    frames, times, to_end = pick_frames(video, 4, 5.0, "first")
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3] and not to_end
    assert video.pulled == 4  # decode stops at the last frame it needs
    assert times == [0, Fraction(1, 5), Fraction(2, 5), Fraction(3, 5)]

    video = CountingVideo(20, duration_s=4.0)
    frames, _, _ = pick_frames(video, 4, 5.0, "spread")
    assert [int(f[0, 0, 0]) for f in frames] == [2, 7, 12, 17]

    # No container duration: spread cannot be planned, the first N it is.
    frames, _, _ = pick_frames(CountingVideo(20, duration_s=None), 4, 5.0, "spread")
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3]

    # Shorter than N: every frame, and decode ran to the end.
    frames, _, to_end = pick_frames(CountingVideo(3, duration_s=0.6), 8, 5.0, "spread")
    assert len(frames) == 3 and to_end


# -------------------------------------------------------------------- the model


def coloured_clip(colour: str, real: int, padding_value: int = 0) -> np.ndarray:
    clip = np.full((N_FRAMES, SIZE, SIZE, 3), padding_value, np.uint8)
    clip[:real] = COLOURS[colour]
    return clip


def test_padding_is_masked_and_keras_file_equals_savedmodel(cnn_rnn):
    spec = spec_from_file(str(write_spec(cnn_rnn)))
    model = SequenceModel.load(spec)
    mask = np.array([np.arange(N_FRAMES) < 3, np.arange(N_FRAMES) < 8])
    zeros = np.stack([coloured_clip("red", 3), coloured_clip("blue", 8)])
    garbage = np.stack([coloured_clip("red", 3, padding_value=255), coloured_clip("blue", 8)])
    logits = model.predict(zeros, mask)
    # What lies under mask False never reaches the model.
    np.testing.assert_array_equal(logits, model.predict(garbage, mask))
    assert list(np.argmax(logits, axis=1)) == [0, 1]
    # A softmax head comes back as log-probabilities.
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, rtol=1e-5)

    exported = SequenceModel.load(
        spec_from_file(
            str(write_spec(cnn_rnn, feature_model="cnn", sequence_model="seq", name="sm.yaml"))
        )
    )
    np.testing.assert_allclose(exported.predict(zeros, mask), logits, atol=1e-5)

    wrong = SequenceModel.load(dataclasses.replace(spec, feature_dim=12))
    with pytest.raises(ValueError, match="feature_dim 12"):
        wrong.predict(zeros, mask)


# ---------------------------------------------------------------- end to end


def solid_frames(colour: str, count: int, texture_seed: Optional[int] = None):
    rng = np.random.default_rng(texture_seed)
    for _ in range(count):
        frame = np.empty((48, 64, 3), np.uint8)
        frame[...] = COLOURS[colour]
        if texture_seed is not None:
            noise = rng.integers(-30, 30, frame.shape)
            frame = np.clip(frame.astype(int) + noise, 0, 255).astype(np.uint8)
        yield frame


def test_index_end_to_end_with_a_spec_file(cnn_rnn, tmp_path):
    from beam_pipeline.report import current_rows

    archive = tmp_path / "archive"
    archive.mkdir()
    write_video(archive / "red.mkv", solid_frames("red", 20), 10)  # 2 s
    write_video(archive / "blue.mkv", solid_frames("blue", 6), 10)  # 0.6 s: 3 of 8 frames
    (archive / "notes.mp4").write_text("not a video")
    spec = write_spec(cnn_rnn)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "beam_pipeline",
            "index",
            "--input",
            str(archive),
            "--output",
            str(out),
            "--model",
            str(spec),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tables = current_rows(str(out))
    videos = {r["video_id"]: r for r in tables["videos"].to_pylist()}
    assert {v: r["labels"][0] for v, r in videos.items()} == {"red.mkv": "red", "blue.mkv": "blue"}
    assert all(r["scores"][0] > 0.9 and r["num_clips"] == 1 for r in videos.values())
    assert all(r["model"] == "colour-cnn-gru" for r in videos.values())
    clips = {r["video_id"]: r for r in tables["clips"].to_pylist()}
    # red: 10 frames at 5 fps, 8 spread = indices 0 1 3 4 5 6 8 9 -> 0.0 to 2.0 s.
    assert (clips["red.mkv"]["start_s"], clips["red.mkv"]["end_s"]) == pytest.approx((0.0, 2.0))
    assert (clips["blue.mkv"]["start_s"], clips["blue.mkv"]["end_s"]) == pytest.approx((0.0, 0.6))
    assert clips["red.mkv"]["labels"] == videos["red.mkv"]["labels"]
    (failure,) = tables["failures"].to_pylist()
    assert (failure["video_id"], failure["stage"]) == ("notes.mp4", "decode")


def test_same_video_in_three_containers_same_top1(cnn_rnn, tmp_path):
    """A textured red video as lossless FFV1 .mkv, PNG .mov and lossy MJPEG .avi."""
    frames = list(solid_frames("red", 15, texture_seed=1))
    paths = [
        write_video(tmp_path / "v.mkv", frames, 10, "ffv1", "bgr0"),
        write_video(tmp_path / "v.mov", frames, 10, "png", "rgb24"),
        write_video(
            tmp_path / "v.avi", frames, 10, "mjpeg", "yuvj444p", {"qmin": "1", "qmax": "2"}
        ),
    ]
    spec = spec_from_file(str(write_spec(cnn_rnn, selection="first")))
    handler = SequenceModelHandler(spec, top_k=2)
    results = handler.run_inference([VideoRef(p.name, str(p)) for p in paths], handler.load_model())
    assert [r.labels[0] for r in results] == ["red"] * 3
    mkv, mov, avi = (np.array(r.scores) for r in results)
    np.testing.assert_allclose(mkv, mov, atol=1e-6)  # lossless: the same frames
    assert [(c.start_s, c.end_s) for r in results for c in r.clips] == [(0.0, 1.6)] * 3


def test_a_model_error_is_an_inference_failure_per_video(cnn_rnn, tmp_path):
    red = write_video(tmp_path / "red.mkv", solid_frames("red", 10), 10)
    (tmp_path / "bad.mp4").write_text("not a video")
    spec = dataclasses.replace(spec_from_file(str(write_spec(cnn_rnn))), feature_dim=12)
    handler = SequenceModelHandler(spec, top_k=2)
    results = handler.run_inference(
        [VideoRef("red", str(red)), VideoRef("bad", str(tmp_path / "bad.mp4"))],
        handler.load_model(),
    )
    failures = [(r.failure.stage, r.failure.error_type) for r in results]
    assert failures == [("inference", "ValueError"), ("decode", "UnreadableVideo")]


@pytest.mark.parametrize("runner_flags", RUNNER_MODES.values(), ids=RUNNER_MODES)
def test_a_crashing_or_hanging_decoder_fails_its_video_only(
    cnn_rnn, tmp_path, monkeypatch, runner_flags
):
    """The frame-sequence handler decodes in a child process (transforms.decode_worker):
    an injected segfault and an injected native hang each end as a decode failure row."""
    from transforms.decode_worker import TEST_FAULTS_ENV

    monkeypatch.setenv(TEST_FAULTS_ENV, "1")
    archive = tmp_path / "archive"
    archive.mkdir()
    write_video(archive / "red.mkv", solid_frames("red", 20), 10)
    write_video(archive / "blue.mkv", solid_frames("blue", 20), 10)
    write_video(archive / "x__crash__.mkv", solid_frames("red", 20), 10)
    write_video(archive / "y__hang__.mkv", solid_frames("blue", 20), 10)
    out = tmp_path / "out"
    result = run_cli(
        "index", "--input", str(archive), "--output", str(out), "--model",
        str(write_spec(cnn_rnn)),
        "--max-decode-s", "6",  # generous: on a loaded machine a crash must not time out
        *runner_flags,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    videos, failures = index_tables(out)
    assert {v: r["labels"][0] for v, r in videos.items()} == {"red.mkv": "red", "blue.mkv": "blue"}
    assert_injected_faults(failures)
