"""The OpenVINO backend: IR cache, precisions, calibration, and the accuracy gates.

Plumbing runs on the tiny colour SavedModel; the gates (slow) run the real I3D on
clips of ../shared/media against TensorFlow fp32, with IRs cached in the user's cache
as the product caches them (the first run converts and quantizes: a few minutes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from beam_pipeline.models.openvino import convert
from beam_pipeline.models.openvino.cache import export_ir, savedmodel_sha256
from beam_pipeline.models.openvino.calibration import CalibrationSet, calibration_set
from beam_pipeline.models.openvino.ir import ensure_ir
from beam_pipeline.models.openvino.policy import (
    BackendError,
    auto_int8_holds,
    cpu_capabilities,
    float_hint,
    resolve_precision,
)
from beam_pipeline.models.openvino.quantize import QUANTIZE_DEFAULTS, quantize_settings
from tests.helpers import MEDIA, SHARED, table_rows
from tests.media import write_video

# -- precision -----------------------------------------------------------------------


def test_auto_is_bf16_where_the_cpu_has_it_else_int8_for_clip_models_else_f32() -> None:
    assert resolve_precision("auto", {"FP32", "BF16", "INT8"}) == "bf16"
    assert resolve_precision("auto", {"FP32", "INT8", "VNNI"}) == "int8"  # or f32: launcher
    assert resolve_precision("auto", {"FP32", "INT8"}) == "f32"  # no VNNI: int8 may saturate
    assert resolve_precision("auto", {"FP32", "INT8", "VNNI"}, kind="stream") == "f32"
    assert resolve_precision("auto", {"FP32"}) == "f32"
    few = {"sources": [{"uri": f"v{i % 5}.mp4"} for i in range(32)]}
    enough = {"sources": [{"uri": f"v{i % 6}.mp4"} for i in range(32)]}
    assert auto_int8_holds(few) == (False, 5)
    assert auto_int8_holds(enough) == (True, 6)
    with pytest.raises(BackendError, match="only for clip models"):
        resolve_precision("int8", {"FP32", "INT8"}, kind="stream")


def test_bf16_refused_on_a_cpu_without_it() -> None:
    with pytest.raises(BackendError, match="no bf16"):
        resolve_precision("bf16", {"FP32", "INT8"})
    assert resolve_precision("bf16", {"FP32", "BF16"}) == "bf16"
    with pytest.raises(BackendError, match="--precision must be one of"):
        resolve_precision("fp8", {"FP32"})


def test_float_layers_of_int8_run_bf16_only_where_the_cpu_has_it() -> None:
    assert float_hint("int8", {"FP32", "BF16", "INT8"}) == "bf16"
    assert float_hint("int8", {"FP32", "INT8"}) == "f32"
    assert float_hint("f32", {"FP32", "BF16"}) == "f32"


# -- IR cache and the compiled model (colour model) ---------------------------------


def _clips(spec, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (count, spec.frames_per_clip, spec.size, spec.size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def test_float_ir_is_built_once_and_predicts_as_tensorflow(colour_spec, tmp_path) -> None:
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.compiled import OpenVinoCall, compile_ir

    ir = ensure_ir(colour_spec, 3, "f32", cache_dir=tmp_path)
    assert ir.path.is_file() and ir.path.with_suffix(".bin").is_file()
    assert ir.key["input_shape"] == [3, 8, 32, 32, 3]
    assert ir.key["model_sha256"] == savedmodel_sha256(colour_spec.source)
    built = ir.path.stat().st_mtime_ns
    again = ensure_ir(colour_spec, 3, "bf16", cache_dir=tmp_path)
    assert again.path == ir.path and again.path.stat().st_mtime_ns == built  # shared, cached

    model = ClipModel(colour_spec, OpenVinoCall(colour_spec, ir, "f32", compile_ir(ir.path, "f32")))
    clips = _clips(colour_spec, 2)  # fewer than the IR's batch: padded inside
    expected = ClipModel.load(colour_spec).predict(clips)
    np.testing.assert_allclose(model.predict(clips), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at most 3"):
        model.predict(_clips(colour_spec, 4))


def test_ir_carries_the_embedding_output_from_the_same_pass(
    colour_embedding_spec_file, tmp_path
) -> None:
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.compiled import (
        OpenVinoCall,
        OpenVinoEmbeddingCall,
        compile_ir,
    )
    from beam_pipeline.models.registry import resolve_model

    spec = resolve_model(str(colour_embedding_spec_file))
    ir = ensure_ir(spec, 2, "f32", cache_dir=tmp_path)
    assert ir.key["outputs"] == ["logits", "embedding"]
    compiled = compile_ir(ir.path, "f32")
    clips = _clips(spec, 2, seed=3)
    call = OpenVinoEmbeddingCall(spec, ir, "f32", compiled)
    logits, embeddings = ClipModel(spec, OpenVinoCall(spec, ir, "f32", compiled), call) \
        .predict_with_embedding(clips)  # fmt: skip
    tf_logits, tf_embeddings = ClipModel.load(spec, embeddings=True).predict_with_embedding(clips)
    np.testing.assert_allclose(logits, tf_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(embeddings, tf_embeddings, rtol=1e-5, atol=1e-5)
    # the logits-only call of the same IR gives the logits
    np.testing.assert_allclose(OpenVinoCall(spec, ir, "f32", compiled)(clips), logits)

    # a model without an embedding output: a logits-only IR, and a clear refusal
    logits_only = dataclasses.replace(spec, embedding_key=None, embedding_dim=None)
    plain = ensure_ir(logits_only, 2, "f32", cache_dir=tmp_path)
    assert plain.key["outputs"] == ["logits"] and plain.path != ir.path
    with pytest.raises(BackendError, match="no embedding output"):
        OpenVinoEmbeddingCall(spec, plain, "f32", compile_ir(plain.path, "f32"))


def test_int8_without_calibration_or_cached_ir_is_a_one_line_error(colour_spec, tmp_path):
    with pytest.raises(BackendError, match="no int8 IR"):
        ensure_ir(colour_spec, 3, "int8", cache_dir=tmp_path)


def test_int8_irs_are_keyed_by_their_quantize_settings(colour_spec, tmp_path) -> None:
    clips = _clips(colour_spec, 4)
    calibration = CalibrationSet(clips, tuple(("x", i, str(i)) for i in range(4)))
    default = ensure_ir(colour_spec, 3, "int8", calibration, cache_dir=tmp_path)
    mixed = ensure_ir(
        colour_spec, 3, "int8", calibration, tmp_path, quantize_options={"preset": "mixed"}
    )
    assert default.path != mixed.path
    assert default.key["quantize"] == QUANTIZE_DEFAULTS
    assert mixed.key["quantize"]["preset"] == "mixed"
    # A worker (no calibration set) takes the IR the default settings name.
    found = ensure_ir(colour_spec, 3, "int8", cache_dir=tmp_path)
    assert found.path == default.path
    with pytest.raises(ValueError, match="unknown quantize settings: bits"):
        quantize_settings({"bits": 4})


def test_an_ir_carried_beside_the_savedmodel_is_used_without_converting(
    colour_spec, tmp_path, monkeypatch
) -> None:
    import dataclasses
    import shutil

    model_dir = tmp_path / "model"
    shutil.copytree(colour_spec.source, model_dir)
    spec = dataclasses.replace(colour_spec, source=str(model_dir))
    ir = ensure_ir(spec, 3, "f32", cache_dir=tmp_path / "builder")
    export_ir(ir, str(model_dir))

    def no_conversion(*args):
        raise AssertionError("converted although an IR was carried")

    monkeypatch.setattr(convert, "convert_clip", no_conversion)
    carried = ensure_ir(spec, 3, "f32", cache_dir=tmp_path / "worker")
    assert carried.path.parent.parent.parent == model_dir / "openvino" or str(
        carried.path
    ).startswith(str(model_dir))
    assert carried.sha256 == ir.sha256


def test_calibration_set_is_round_robin_over_videos_and_hashed(colour_spec, tmp_path):
    uris = []
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        path = tmp_path / f"v{i}.mkv"
        write_video(path, [np.zeros((48, 48, 3), np.uint8) + np.uint8(colour)] * 40, 10)
        uris.append(str(path))
    uris.append(str(tmp_path / "missing.mp4"))  # a bad video lends nothing
    first = calibration_set(colour_spec, uris, count=3)
    again = calibration_set(colour_spec, uris, count=3)
    assert [(Path(u).name, i) for u, i, _ in first.sources] == [
        ("v0.mkv", 0),
        ("v1.mkv", 0),
        ("v0.mkv", 1),
    ]
    assert first.clips.shape == (3, 8, 32, 32, 3) and first.clips.dtype == np.uint8
    assert first.sha256 == again.sha256
    assert first.clips[0, ..., 0].mean() > 200 and first.clips[1, ..., 1].mean() > 200
    assert json.loads(json.dumps(first.summary()))["clips"] == 3
    with pytest.raises(BackendError, match="no clip"):
        calibration_set(colour_spec, [uris[-1]], count=2)


# -- the job ------------------------------------------------------------------------


def _index_colours(tmp_path, monkeypatch, colours: dict, model, *flags, frames: int = 20):
    """``video-index index`` over one solid-colour video per ``colours`` entry (name ->
    RGB), with its own cache; returns the CLI's result and the output folder."""
    from tests.helpers import run_cli

    videos = tmp_path / "videos"
    videos.mkdir()
    for name, colour in colours.items():
        write_video(videos / f"{name}.mkv", [np.full((40, 40, 3), colour, np.uint8)] * frames, 10)
    out = tmp_path / "out"
    monkeypatch.setenv("VIDEO_INDEX_CACHE", str(tmp_path / "cache"))
    return run_cli("index", f"--input={videos}", f"--output={out}", f"--model={model}", *flags), out


def test_index_on_openvino_records_backend_precision_and_ir(
    colour_spec_file, tmp_path, monkeypatch
) -> None:
    done, out = _index_colours(
        tmp_path, monkeypatch, {"red": (250, 0, 0)}, colour_spec_file,
        "--backend=openvino", "--precision=f32", "--run-id=ov", frames=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "runs" / "ov.json").read_text())
    assert record["backend"]["name"] == "openvino"
    assert record["backend"]["precision"] == "f32"
    assert record["backend"]["backend_requested"] == "openvino"
    assert record["backend"]["precision_requested"] == "f32"
    assert len(record["backend"]["ir_sha256"]) == 64

    clips = table_rows(out, "clips")
    assert clips and all(row["labels"][0] == "red" for row in clips)


def test_index_on_openvino_stores_embeddings_that_similar_ranks(
    colour_embedding_spec_file, tmp_path, monkeypatch
) -> None:

    from tests.helpers import run_cli

    colours = {"red": (250, 0, 0), "redder": (240, 10, 0), "blue": (0, 0, 250)}
    done, out = _index_colours(
        tmp_path, monkeypatch, colours, colour_embedding_spec_file,
        "--backend=openvino", "--precision=f32",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = table_rows(out, "clips")
    assert rows and all(len(row["embedding"]) == 6 for row in rows)
    red = next(row for row in rows if row["uri"].endswith("/red.mkv"))
    # the embedding's first half is the clip's mean RGB in [0, 1] (after the codec)
    np.testing.assert_allclose(red["embedding"][:3], [250 / 255, 0, 0], atol=0.05)
    found = run_cli("similar", str(out), "--video", red["video_id"], "--format=json")
    assert found.returncode == 0, found.stderr
    nearest = json.loads(found.stdout)[0]
    assert nearest["uri"].endswith("/redder.mkv"), found.stdout


@pytest.mark.parametrize("videos, expected", [(2, "f32"), (6, "int8")])
def test_auto_on_a_cpu_without_bf16_is_int8_only_when_calibration_spans_six_videos(
    colour_spec_file, tmp_path, monkeypatch, videos, expected
) -> None:
    monkeypatch.setenv("VIDEO_INDEX_OV_CAPABILITIES", "FP32,INT8,VNNI")  # Cascade Lake
    colours = {f"v{i}": (250 - 20 * i, 20 * i, 0) for i in range(videos)}
    done, out = _index_colours(
        tmp_path, monkeypatch, colours, colour_spec_file, "--backend=openvino", "--run-id=auto",
        frames=10,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    backend = json.loads((out / "runs" / "auto.json").read_text())["backend"]
    assert backend["precision"] == expected and backend["precision_requested"] == "auto"
    said = "--precision auto: f32, not int8: the calibration clips come from 2 video(s)"
    assert (said in done.stderr) == (expected == "f32"), done.stderr
    assert ("calibration" in backend) == (expected == "int8")
    # NNCF's log lines and progress bars stay off stdout, where the summary goes
    assert done.stdout.startswith("run auto:"), done.stdout[:500]


def test_int8_job_leaves_a_fifo_and_a_crashing_file_out_of_calibration_and_indexes_the_rest(
    colour_spec_file, tmp_path, monkeypatch
) -> None:
    """The launcher's calibration decodes in the isolated decoder under the job's limits:
    a FIFO (no writer: opening it never returns) times out and a file that crashes the
    decoder crashes its child; both are left out of calibration in one line, and the
    job names both as failures and indexes the rest."""
    import os

    from tests.helpers import index_tables, run_cli
    from tests.media import COLOURS, write_colour_video
    from transforms.decode_worker import TEST_FAULTS_ENV

    monkeypatch.setenv(TEST_FAULTS_ENV, "1")
    monkeypatch.setenv("VIDEO_INDEX_CACHE", str(tmp_path / "cache"))
    videos = tmp_path / "videos"
    videos.mkdir()
    write_colour_video(videos / "blue.mkv", COLOURS["blue"], 2.0)
    write_colour_video(videos / "red.mkv", COLOURS["red"], 2.0)
    os.mkfifo(videos / "pipe.mkv")
    write_colour_video(videos / "x__crash__.mkv", COLOURS["green"], 2.0)
    out = tmp_path / "out"
    done = run_cli(
        "index", f"--input={videos}", f"--output={out}", f"--model={colour_spec_file}",
        "--backend=openvino", "--precision=int8", "--run-id=r",
        "--max-decode-s=6",  # generous: on a loaded machine a crash must not time out
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "left out" in line]
    assert said == [
        "video-index: int8 calibration left out 2 file(s) that did not decode: "
        "pipe.mkv (DecoderTimedOut), x__crash__.mkv (DecoderCrashed)"
    ], done.stderr[-3000:]
    indexed, failures = index_tables(out)
    assert {v: r["labels"][0] for v, r in indexed.items()} == {"red.mkv": "red", "blue.mkv": "blue"}
    assert {v: (r["stage"], r["error_type"]) for v, r in failures.items()} == {
        "pipe.mkv": ("decode", "DecoderTimedOut"),
        "x__crash__.mkv": ("decode", "DecoderCrashed"),
    }
    backend = json.loads((out / "runs" / "r.json").read_text())["backend"]
    assert backend["precision"] == "int8"
    assert {Path(s["uri"]).name for s in backend["calibration"]["sources"]} == {
        "blue.mkv",
        "red.mkv",
    }
    assert [Path(f["uri"]).name for f in backend["calibration"]["left_out"]] == [
        "pipe.mkv",
        "x__crash__.mkv",
    ]
    assert any("clips of 2 video(s) of the input" in s for s in backend["preparation"]), backend


@pytest.mark.skipif(not (SHARED / "models" / "movinet").is_dir(), reason="no MoViNet exports")
def test_a_model_path_of_another_export_on_openvino_is_one_line(tmp_path) -> None:
    # The stream model's registered name on the base export: the launcher converts it
    # for OpenVINO, finds no stream functions, and says so in one line, as TensorFlow's
    # job does (tests/test_stream.py).
    from tests.helpers import run_cli

    write_video(tmp_path / "v.mkv", [np.full((40, 40, 3), 200, np.uint8)] * 10, 10)
    done = run_cli(
        "index", f"--input={tmp_path / 'v.mkv'}", f"--output={tmp_path / 'out'}",
        "--model=movinet-a0-stream", f"--model-path={SHARED / 'models/movinet/a0_base'}",
        "--backend=openvino", "--precision=f32",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("video-index index:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "error: cannot load model movinet-a0-stream from" in errors[0]
    assert "--model-path must be the model's own SavedModel folder" in errors[0]


def test_auto_backend_runs_on_tensorflow_a_model_openvino_cannot_convert(tmp_path, monkeypatch):
    import tensorflow as tf

    from tests.helpers import run_cli

    class Model(tf.Module):  # logits: the singular values of the mean frame's corner (Svd)
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 3], tf.float32)])
        def __call__(self, clips):
            corner = tf.reduce_mean(clips, axis=[1, 4])[:, :3, :3] + tf.eye(3)
            return tf.linalg.svd(corner, compute_uv=False)

    module = Model()
    tf.saved_model.save(module, str(tmp_path / "svd"))
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    spec = {"name": "svd", "path": "svd", "label_file": "labels.txt", "size": 32, "fps": 10,
            "frames_per_clip": 8, "max_batch_size": 2}  # fmt: skip
    (tmp_path / "svd.json").write_text(json.dumps(spec))
    write_video(tmp_path / "v.mkv", [np.full((40, 40, 3), 200, np.uint8)] * 10, 10)
    monkeypatch.setenv("VIDEO_INDEX_CACHE", str(tmp_path / "cache"))
    common = (f"--input={tmp_path / 'v.mkv'}", f"--model={tmp_path / 'svd.json'}")
    done = run_cli("index", *common, f"--output={tmp_path / 'auto'}", "--run-id=r")
    assert done.returncode == 0, done.stderr
    said = "--backend auto: tensorflow, not openvino: OpenVINO cannot convert svd: No conversion"
    assert said in done.stderr and "Svd" in done.stderr.split(said)[1].splitlines()[0]
    record = json.loads((tmp_path / "auto" / "runs" / "r.json").read_text())
    assert record["backend"]["name"] == "tensorflow" and record["counts"]["videos"] == 1
    # asked for explicitly, it is the one-line error it was
    done = run_cli("index", *common, f"--output={tmp_path / 'ov'}", "--backend=openvino")
    assert done.returncode != 0 and "OpenVINO cannot convert svd" in done.stderr
    assert "Traceback" not in done.stderr


def test_openvino_takes_stream_models_but_not_in_int8_and_tensorflow_refuses_int8() -> None:
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.options import ConfigError, IndexConfig

    def config(*flags):
        return IndexConfig.from_options(
            PipelineOptions(["--input=x.mp4", "--output=o", *flags]), check_input=False
        )

    stream = ("--model=movinet-a0-stream", "--backend=openvino")
    assert config(*stream, "--precision=f32").precision == "f32"
    with pytest.raises(ConfigError, match="int8: only for clip models, not stream models"):
        config(*stream, "--precision=int8")
    with pytest.raises(ConfigError, match="only f32 on --backend tensorflow"):
        config("--backend=tensorflow", "--precision=int8")
    with pytest.raises(ConfigError, match="--backend must be one of"):
        config("--backend=onnx")
    assert config("--backend=openvino", "--precision=f32").precision == "f32"
    # --backend auto: openvino where the workers are this machine (clip and stream
    # models), tensorflow for remote workers, whose CPU or GPU the launcher cannot see.
    assert config().backend == "openvino" and config().auto_backend
    assert config(*stream[:1]).backend == "openvino"
    remote = ("--runner=DataflowRunner", "--project=p", "--region=r", "--temp_location=gs://b/t")
    assert config(*remote).backend == "tensorflow" and config(*remote).precision == "f32"
    with pytest.raises(ConfigError, match=r"--backend auto chose tensorflow\); pass --backend"):
        config(*remote, "--precision=bf16")
    assert config("--backend=tensorflow").backend == "tensorflow"
    # The clip IR carries the embedding output: both backends store it.
    assert config().embeddings and config("--backend=openvino").embeddings
    assert not config("--backend=openvino", "--no-embeddings").embeddings


def test_backend_is_chosen_by_name_and_pickles() -> None:
    import pickle

    from beam_pipeline.models.backend import DEFAULT_BACKEND, backend_for
    from beam_pipeline.models.openvino.backend import OpenVinoBackend

    assert backend_for("tensorflow", 4) is DEFAULT_BACKEND
    backend = backend_for("openvino", 4, "int8", "ab" * 32)
    assert backend == OpenVinoBackend(4, "int8", "ab" * 32) and backend.name == "openvino"
    assert pickle.loads(pickle.dumps(backend)) == backend
    with pytest.raises(ValueError, match="unknown backend"):
        backend_for("onnx", 4)


# -- accuracy gates: the real I3D on ../shared/media against TensorFlow fp32 ----------

# Real footage of several codecs and sizes; at most GATE_CLIPS_PER_VIDEO clips of each.
GATE_FILES = (
    "mmaction2/test.mp4",
    "mmaction2/test.avi",
    "mmaction2/test_video_structuralize.mp4",
    "mmaction2/demo_spatiotemporal_det.mp4",
    "mmaction2/part_0.mp4",
    "moviepy/chaplin.mp4",
    "moviepy/pigs_in_a_polka.gif",
    "derived/mpeg4.mkv",
    "derived/gif_10fps.gif",
    "tf-examples/carving_ice_rpi.mp4",
    "tf-examples/example_video01.mp4",
    CRICKET := "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif",
)
GATE_CLIPS_PER_VIDEO = 2
# int8 calibrates as a job over these twelve files would (the product default: up to 32
# clips of the job's input, round-robin over the videos), so the gate clips are among
# its calibration clips: the gates hold for the job that calibrated. On clips it never
# saw (calibrated on 3 of the files) int8 misses them: README, int8 recipes.
CALIBRATION_FILES = GATE_FILES
# Two halves of GATE_FILES with no content in common, for int8 on videos its calibration
# never saw: part_0.mp4 is test.mp4's clip, and gif_10fps.gif and mpeg4.mkv are derived
# from the demo clip demo_spatiotemporal_det.mp4 (MANIFEST.tsv; first frames compared),
# so each group stays on one side.
HELD_OUT_HALF = (
    "mmaction2/test.avi",
    "mmaction2/demo_spatiotemporal_det.mp4",
    "moviepy/chaplin.mp4",
    "derived/mpeg4.mkv",
    "derived/gif_10fps.gif",
    CRICKET,
)
HELD_OUT_FOLDS = (HELD_OUT_HALF, tuple(f for f in GATE_FILES if f not in HELD_OUT_HALF))


@pytest.fixture(scope="module")
def i3d_gate_clips(media_dir):
    from beam_pipeline.models.agreement import decode_clips
    from beam_pipeline.models.registry import resolve_model

    spec = resolve_model("i3d-kinetics-400")
    sampling = spec.clip_sampling(max_clips=GATE_CLIPS_PER_VIDEO)
    clips, videos = decode_clips(spec, [(n, str(media_dir / n)) for n in GATE_FILES], sampling)
    return spec, clips, videos


@pytest.fixture(scope="module")
def i3d_tf_outputs(i3d_gate_clips):
    """TensorFlow fp32's (logits, embeddings) of the gate clips."""
    from beam_pipeline.models.agreement import predict_in_batches
    from beam_pipeline.models.clip_model import ClipModel

    spec, clips, _ = i3d_gate_clips
    model = ClipModel.load(spec, embeddings=True)
    return predict_in_batches(model, clips, spec.max_batch_size, embeddings=True)


# The least cosine similarity between a clip's OpenVINO and TensorFlow fp32 embeddings
# (what `similar` ranks by) on the gate clips; measured: README, accuracy gates.
MIN_EMBEDDING_COSINE = {"f32": 0.9999, "bf16": 0.999, "int8": 0.99}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["f32", "bf16", "int8"])
def test_accuracy_gates_against_tensorflow_fp32(precision, i3d_gate_clips, i3d_tf_outputs):
    from beam_pipeline.models.agreement import compare, embedding_cosines, predict_in_batches
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.backend import OpenVinoBackend
    from transforms.scores import softmax

    capabilities = cpu_capabilities()
    if precision == "bf16" and "BF16" not in capabilities:
        pytest.skip("this CPU has no bf16 (AVX512-BF16 or AMX): --precision bf16 is refused")
    spec, clips, videos = i3d_gate_clips
    batch = spec.max_batch_size
    calibration = None
    if precision == "int8":
        uris = [str(MEDIA / name) for name in CALIBRATION_FILES]
        calibration = calibration_set(spec, uris)
    ir = ensure_ir(spec, batch, precision, calibration)
    # the product's path: the backend finds the IR just built (int8: by its calibration)
    backend = OpenVinoBackend(batch, precision, calibration.sha256 if calibration else None)
    model = ClipModel.load(spec, backend, embeddings=True)
    assert model._embedding_call.ir.sha256 == ir.sha256
    logits, embeddings = predict_in_batches(model, clips, batch, embeddings=True)

    tf_logits, tf_embeddings = i3d_tf_outputs
    agreement = compare(tf_logits, logits, videos)
    assert agreement.passed, agreement.summary()
    cosines = embedding_cosines(tf_embeddings, embeddings)
    assert cosines.min() >= MIN_EMBEDDING_COSINE[precision], np.round(np.sort(cosines), 4)
    cricket = np.array([v == CRICKET for v in videos])
    for reference_or_ours in (tf_logits, logits):
        probs = softmax(reference_or_ours[cricket]).mean(0)
        assert spec.labels[probs.argmax()] == "playing cricket" and probs.max() >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("float_layers", ["f32", "bf16"])
def test_int8_holds_on_videos_its_calibration_never_saw(
    float_layers, i3d_gate_clips, i3d_tf_outputs
) -> None:
    """Two folds (``HELD_OUT_FOLDS``, no content in common): int8 calibrated as a job over
    one half of the gate files (6 videos) gives the clips of the other half; the gates
    over both folds' clips, each clip classified by a model whose calibration never saw
    its video or its content. ``f32`` float layers: what ``auto``
    runs on a CPU without bf16; ``bf16``: what ``--precision int8`` runs here."""
    from beam_pipeline.models.agreement import compare, predict_in_batches
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.compiled import OpenVinoCall, compile_ir

    if float_layers == "bf16" and "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 (AVX512-BF16 or AMX)")
    spec, clips, videos = i3d_gate_clips
    batch = spec.max_batch_size
    tf_logits, _ = i3d_tf_outputs
    logits = np.zeros_like(tf_logits)
    for fold in HELD_OUT_FOLDS:
        calibration = calibration_set(spec, [str(MEDIA / name) for name in fold])
        assert auto_int8_holds(calibration.summary()) == (True, 6)
        ir = ensure_ir(spec, batch, "int8", calibration)
        model = ClipModel(spec, OpenVinoCall(spec, ir, "int8", compile_ir(ir.path, float_layers)))
        unseen = np.array([video not in fold for video in videos])
        logits[unseen] = predict_in_batches(model, clips[unseen], batch)
    agreement = compare(tf_logits, logits, videos)
    assert agreement.passed, agreement.summary()


# -- stream models -------------------------------------------------------------------

MOVINET_STREAM = SHARED / "models" / "movinet" / "a0_stream"
STREAM_VIDEOS = ("tf-examples/carving_ice_rpi.mp4", "tf-examples/example_video01.mp4")


@pytest.fixture(scope="module")
def stream_spec():
    if not MOVINET_STREAM.is_dir() or not MEDIA.is_dir():
        pytest.skip("needs ../shared/models/movinet/a0_stream and ../shared/media")
    from beam_pipeline.models.registry import resolve_model

    return resolve_model("movinet-a0-stream", model_path=str(MOVINET_STREAM))


@pytest.fixture(scope="module")
def stream_tf_outcomes(stream_spec):
    """TensorFlow's lockstep results over the two tf-examples videos (the reference)."""
    from beam_pipeline.models.stream_model import StreamModel

    return _classify(StreamModel.load(stream_spec), stream_spec)


def _classify(model, spec):
    from beam_pipeline.models.stream_model import classify_streams
    from transforms.reading import read_frames
    from transforms.records import VideoRef

    refs = [VideoRef(name, str(MEDIA / name)) for name in STREAM_VIDEOS]
    return classify_streams(
        model,
        refs,
        lambda uri: read_frames(uri, spec.fps, spec.frame_spec()),
        top_k_labels=5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_stream_model_on_openvino_classifies_as_tensorflow(
    precision, stream_spec, stream_tf_outcomes
) -> None:
    """The lockstep loop on the OpenVINO stream IR: two videos of different lengths in a
    batch of 8 (padded, then shrinking when the shorter ends), every per-second row and
    the final scores as TensorFlow's (random weights: the scores are compared, not the
    labels' meaning)."""
    from beam_pipeline.models.openvino.backend import OpenVinoBackend

    if precision == "bf16" and "BF16" not in cpu_capabilities():
        pytest.skip("this CPU has no bf16 (AVX512-BF16 or AMX)")
    model = OpenVinoBackend(stream_spec.max_batch_size, precision).stream_model(stream_spec)
    assert model.precision == precision and len(model.ir.sha256) == 64
    outcomes = _classify(model, stream_spec)
    # In log space (random weights give near-uniform probabilities, ~1/600). Measured
    # max |d log p|: f32 1.5e-6, bf16 0.0033 (rows and final scores of both videos).
    tolerance = 1e-4 if precision == "f32" else 0.02
    for got, want in zip(outcomes, stream_tf_outcomes, strict=True):
        assert got.failure is None and want.failure is None
        assert len(got.clips) == len(want.clips) >= 3
        for a, b in zip(got.clips, want.clips):
            assert (a.start_s, a.end_s) == (b.start_s, b.end_s)
            np.testing.assert_allclose(np.log(a.scores[0]), np.log(b.scores[0]), atol=tolerance)
        np.testing.assert_allclose(np.log(got.scores), np.log(want.scores), atol=tolerance)
        if precision == "f32":
            assert got.labels == want.labels


@pytest.mark.slow
def test_index_with_a_stream_model_on_openvino(stream_spec, stream_tf_outcomes, tmp_path):
    from beam_pipeline.report import current_rows
    from tests.helpers import run_cli

    out = tmp_path / "out"
    done = run_cli(
        "index", f"--input={MEDIA / 'tf-examples'}", f"--output={out}",
        "--model=movinet-a0-stream", f"--model-path={MOVINET_STREAM}",
        "--backend=openvino", "--precision=f32", "--run-id=ov",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "runs" / "ov.json").read_text())
    assert (record["backend"]["name"], record["backend"]["precision"]) == ("openvino", "f32")
    assert len(record["backend"]["ir_sha256"]) == 64
    videos = {r["uri"]: r for r in current_rows(str(out))["videos"].to_pylist()}
    want = {str(MEDIA / o.ref.uri.split(str(MEDIA) + "/")[-1]): o for o in stream_tf_outcomes}
    assert set(videos) == set(want)
    for uri, row in videos.items():
        assert row["labels"] == list(want[uri].labels)
        assert row["num_clips"] == len(want[uri].clips)
