"""Benchmarks of the models alone (not tests): seconds per clip, seconds per frame.

    python bench/bench_models.py [--repeats 3] [--steps 30] [--models i3d,a0-base,a0-stream]

- clip classifiers (I3D Kinetics-400, MoViNet-A0 base): seconds per clip through
  ``ClipModel.predict`` (uint8 in, logits out), at batch 1 and at the spec's batch;
- MoViNet-A0 stream: seconds per frame through ``StreamModel.step`` at B=1 and B=8
  (one frame of each of B videos per step), by the path the handler uses (the Keras
  object in a tf.function) and by the export's XLA-compiled ``call`` signature.

Inputs are random uint8 frames at the model's size (the cost does not depend on the
pixels). Every measurement follows one untimed warm-up call (tracing, compiling).
The MoViNet exports are the random-weight ones in ``../shared/models`` (same
architecture, same cost as the hub models). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))
MOVINET = SHARED / "models" / "movinet"


def _timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def bench_clip(spec, repeats: int) -> dict:
    import numpy as np

    from beam_pipeline.models.clip_model import ClipModel

    started = time.perf_counter()
    model = ClipModel.load(spec)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(0)
    row = {
        "kind": spec.kind,
        "input": f"{spec.frames_per_clip}x{spec.size}x{spec.size}",
        "clip_s": round(spec.clip_seconds, 3),
        "load_s": round(load_s, 1),
    }
    for batch in sorted({1, spec.max_batch_size}):
        clips = rng.integers(
            0, 256, (batch, spec.frames_per_clip, spec.size, spec.size, 3), np.uint8
        )
        seconds = _timed(lambda clips=clips: model.predict(clips), repeats)
        row[f"s_per_clip_b{batch}"] = round(seconds / batch, 3)
    return row


def bench_stream(spec, steps: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from beam_pipeline.models.stream_model import StreamModel

    started = time.perf_counter()
    model = StreamModel.load(spec)
    load_s = time.perf_counter() - started
    loaded = model._loaded
    rng = np.random.default_rng(0)
    row = {
        "kind": spec.kind,
        "input": f"1x{spec.size}x{spec.size} per video per step",
        "load_s": round(load_s, 1),
    }
    signature_call = loaded.signatures["call"]
    signature_init = loaded.signatures["init_states"]
    for batch in (1, 8):
        frames = rng.integers(0, 256, (batch, spec.size, spec.size, 3), np.uint8)

        states = [model.init(batch)]

        def handler_step(frames=frames, states=states):
            _, states[0] = model.step(frames, states[0])

        x = tf.cast(frames[:, None], tf.float32) / 255.0
        shape = tf.constant([batch, 1, spec.size, spec.size, 3], tf.int32)
        sig_states = [dict(signature_init(input_shape=shape))]

        def signature_step(x=x, sig_states=sig_states):
            outputs = dict(signature_call(image=x, **sig_states[0]))
            outputs.pop("logits").numpy()
            sig_states[0] = outputs

        for name, step in (("handler", handler_step), ("call_signature", signature_step)):
            step()  # warm-up: trace / compile this batch size
            started = time.perf_counter()
            for _ in range(steps):
                step()
            per_step = (time.perf_counter() - started) / steps
            row[f"{name}_s_per_step_b{batch}"] = round(per_step, 4)
            row[f"{name}_s_per_frame_b{batch}"] = round(per_step / batch, 4)
    row["lockstep_speedup_b8"] = round(
        row["handler_s_per_frame_b1"] / row["handler_s_per_frame_b8"], 2
    )
    # One second of video is `fps` frames: seconds of CPU per second of video.
    row["s_per_video_second_b8"] = round(row["handler_s_per_frame_b8"] * spec.fps, 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per clip measurement")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per stream measurement")
    parser.add_argument("--models", default="i3d,a0-base,a0-stream")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import tensorflow as tf

    from beam_pipeline.models.registry import resolve_model

    wanted = set(args.models.split(","))
    results = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "tensorflow": tf.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")),
            # Other work on the machine skews every number: look at this first.
            "load_average_1m_before": round(os.getloadavg()[0], 2),
        }
    }
    if "i3d" in wanted:
        results["i3d-kinetics-400"] = bench_clip(resolve_model("i3d-kinetics-400"), args.repeats)
    if "a0-base" in wanted:
        spec = resolve_model("movinet-a0-base", model_path=str(MOVINET / "a0_base"))
        results["movinet-a0-base"] = bench_clip(spec, args.repeats)
    if "a0-stream" in wanted:
        spec = resolve_model("movinet-a0-stream", model_path=str(MOVINET / "a0_stream"))
        results["movinet-a0-stream"] = bench_stream(spec, args.steps)
    results["machine"]["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
