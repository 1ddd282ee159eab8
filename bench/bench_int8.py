"""I3D int8 recipes against the accuracy gates, in one process (not a test).

    python bench/bench_int8.py [--configs baseline,mixed,...] [--hints bf16,f32]
        [--reference /tmp/tf_logits.npz]

The clips are the int8 gate test's (tests/test_openvino.py): up to 2 clips of each of
12 files of ../shared/media. Calibration: the product's ``calibration_set`` over 3 of
those files (10 clips, most gate clips unseen), over all 12 (32 clips, as the test
and a job over those files calibrate), or over half the files (``holdout_content_a``
/ ``_b``: halves with no content in common, as the held-out test; ``holdout_even`` /
``_odd``: every other file), gated on the other 6 files' clips only; see CONFIGS.
Each config builds its int8 IR through the product's ``ensure_ir`` (so the IR lands in the user cache under a key that names the settings, and the gate test
finds the one the defaults name) and is run with the float layers in each ``--hints``
precision. Per config and hint: the gates against TensorFlow fp32
(beam_pipeline/models/agreement.py), the cricket GIF's video-level p, and model-only
s/clip on the gate clips, timed in the same process as TensorFlow fp32 and OpenVINO
bf16 (one untimed call each first). Prints one JSON line per result as it goes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))

# The calibration sets: "three" (as a job over test.mp4, the cricket GIF and chaplin.mp4
# calibrates: 10 clips, most gate clips unseen) or "gates" (as a job over the 12 gate
# files calibrates: 32 clips, every gate clip among them, as in tests/test_openvino.py).
THREE_FILES = (
    "mmaction2/test.mp4",
    "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif",
    "moviepy/chaplin.mp4",
)
FAST = {"fast_bias_correction": True}  # NNCF's default; the product's default is False
# name -> settings over openvino.quantize.QUANTIZE_DEFAULTS (and "calibration", default "three")
CONFIGS = {
    "baseline": FAST,  # performance, fast bias correction, first + last conv in float
    "mixed": {**FAST, "preset": "mixed"},
    "bias_correction": {},  # the product's defaults
    "float_5c": {**FAST, "float_last_convs": 7},  # Mixed_5c and the logits in float
    "float_5bc": {**FAST, "float_last_convs": 13},  # Mixed_5b, Mixed_5c, logits in float
    "float_stem": {**FAST, "float_first_convs": 3},  # Conv3d_1a, 2b, 2c in float
    "float_3b": {**FAST, "float_first_convs": 9},  # the stem and Mixed_3b in float
    "minmax": {**FAST, "activation_range": "minmax"},
    "accuracy_control": {**FAST, "max_drop": 0.01},
    "baseline_cal_gates": {**FAST, "calibration": "gates"},
    "minmax_cal_gates": {**FAST, "calibration": "gates", "activation_range": "minmax"},
    "bias_correction_cal_gates": {"calibration": "gates"},  # what the gate test builds
    # Held-out videos: calibrated on every other gate file (6 files, up to 32 clips),
    # gated on the clips of the other 6 only (videos the calibration never saw).
    "holdout_even": {"calibration": "even"},
    "holdout_odd": {"calibration": "odd"},
    # Halves with no content in common (tests/test_openvino.py HELD_OUT_FOLDS): what the
    # test gates; even / odd above put gif_10fps.gif and mpeg4.mkv, one clip's content,
    # on both sides.
    "holdout_content_a": {"calibration": "content_a"},
    "holdout_content_b": {"calibration": "content_b"},
}


def _emit(row: dict) -> None:
    print(json.dumps(row, default=str), flush=True)


def _time(model, clips, batch) -> tuple[float, object]:
    from beam_pipeline.models.agreement import predict_in_batches

    model.predict(clips[:batch])  # untimed: kernels, caches
    started = time.perf_counter()
    logits = predict_in_batches(model, clips, batch)
    return (time.perf_counter() - started) / len(clips), logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="baseline,float_5c,accuracy_control")
    parser.add_argument("--hints", default="bf16")
    parser.add_argument(
        "--reference",
        help="npz of TF fp32 logits and s/clip: loaded if it exists (TF not re-run, its "
        "timing then from that earlier run), else written (for quick sweeps)",
    )
    args = parser.parse_args()

    import numpy as np

    from beam_pipeline.models.agreement import compare, decode_clips
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.calibration import calibration_set
    from beam_pipeline.models.openvino.compiled import OpenVinoCall, compile_ir
    from beam_pipeline.models.openvino.ir import ensure_ir
    from beam_pipeline.models.registry import resolve_model
    from tests.test_openvino import CRICKET, GATE_CLIPS_PER_VIDEO, GATE_FILES, HELD_OUT_FOLDS
    from transforms.scores import softmax

    spec = resolve_model("i3d-kinetics-400")
    batch = spec.max_batch_size
    sampling = spec.clip_sampling(max_clips=GATE_CLIPS_PER_VIDEO)
    paths = [(name, str(SHARED / "media" / name)) for name in GATE_FILES]
    clips, videos = decode_clips(spec, paths, sampling)
    cricket = np.array([v == CRICKET for v in videos])
    files = {
        "three": THREE_FILES,
        "gates": GATE_FILES,
        "even": GATE_FILES[0::2],
        "odd": GATE_FILES[1::2],
    }
    files["content_a"], files["content_b"] = HELD_OUT_FOLDS

    calibrations = {}

    if args.reference and os.path.exists(args.reference):
        saved = np.load(args.reference)
        tf_s, reference = float(saved["s_per_clip"]), saved["logits"]
    else:
        tf_s, reference = _time(ClipModel.load(spec), clips, batch)
        if args.reference:
            np.savez(args.reference, logits=reference, s_per_clip=tf_s)
    _emit({"path": "tensorflow/f32", "clips": len(clips), "s_per_clip": round(tf_s, 3)})

    def run(name: str, ir, precision: str, hint: str, extra: dict, seen=()) -> None:
        """Gates over the clips of the videos not in ``seen`` (all, by default)."""
        model = ClipModel(spec, OpenVinoCall(spec, ir, precision, compile_ir(ir.path, hint)))
        s, logits = _time(model, clips, batch)
        kept = np.array([v not in seen for v in videos])
        names = [v for v, k in zip(videos, kept) if k]
        agreement = compare(reference[kept], logits[kept], names)
        ref_p, ours = softmax(reference), softmax(logits)
        flips = [
            {
                "video": videos[i],
                "clip": int(i),
                "tf": [spec.labels[ref_p[i].argmax()], round(float(ref_p[i].max()), 3)],
                "ov": [spec.labels[ours[i].argmax()], round(float(ours[i].max()), 3)],
            }
            for i in np.flatnonzero((ref_p.argmax(1) != ours.argmax(1)) & kept)
        ]
        p = softmax(logits[cricket]).mean(0)
        cricket_ok = bool(spec.labels[p.argmax()] == "playing cricket" and p.max() >= 0.9)
        _emit(
            {
                "path": f"openvino/{precision}",
                "config": name,
                "float_layers": hint,
                **extra,
                "s_per_clip": round(s, 3),
                "vs_tf_fp32": round(tf_s / s, 2),
                "gates": agreement.summary(),
                "cricket_p": round(float(p.max()), 3),
                "flips": flips,
                "passed": bool(agreement.passed and cricket_ok),
            }
        )

    float_ir = ensure_ir(spec, batch, "f32")
    run("float", float_ir, "bf16", "bf16", {})
    for name in args.configs.split(","):
        started = time.perf_counter()
        options = dict(CONFIGS[name])
        which = options.pop("calibration", "three")
        if which not in calibrations:
            uris = [str(SHARED / "media" / n) for n in files[which]]
            calibrations[which] = calibration_set(spec, uris)
        calibration = calibrations[which]
        try:
            ir = ensure_ir(spec, batch, "int8", calibration, quantize_options=options)
        except Exception as error:  # noqa: BLE001 - report and go on to the next config
            _emit({"config": name, "error": f"{type(error).__name__}: {error}"})
            continue
        extra = {
            "settings": ir.key["quantize"],
            "calibration": f"{which}: {len(calibration.sources)} clips",
            "prepare_s": round(time.perf_counter() - started, 1),
            "build_s": ir.key.get("build_s"),
        }
        seen = files[which] if which not in ("three", "gates") else ()
        if seen:
            extra["gated_on"] = "the clips of the other 6 files (unseen videos)"
        for hint in args.hints.split(","):
            run(name, ir, "int8", hint, extra, seen)


if __name__ == "__main__":
    main()
