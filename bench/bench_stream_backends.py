"""MoViNet stream on TensorFlow and OpenVINO, the lockstep loop the job runs (not a test).

    python bench/bench_stream_backends.py [--model-path ../shared/models/movinet/a0_stream]
        [--videos 8] [--rounds 2] [--precisions f32,bf16]

The first ``--videos`` files of ``bench_backends.CORPUS`` (``../shared/media``), classified in
one lockstep batch of ``--videos`` by ``classify_streams`` (what ``StreamModelHandler``
runs), decode included, through TensorFlow (``StreamModel``, today's path) and the
OpenVINO stream IR at each precision; one untimed pass of each first, then the paths
alternate within each round. Prints JSON: wall seconds per pass (median; decode in this
process included), frames per second (frames of all videos / wall), the ratio to
TensorFlow, the seconds inside the model's ``step`` calls and their ratio (model only), and the largest
difference of per-second top-1 log-probabilities against TensorFlow (the shared
exports have random weights: agreement of scores, not of meaning).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
SHARED = REPO.parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-path", default=str(SHARED / "models/movinet/a0_stream"))
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", default="f32,bf16")
    args = parser.parse_args()

    from beam_pipeline.models.openvino.backend import OpenVinoBackend
    from beam_pipeline.models.registry import resolve_model
    from beam_pipeline.models.stream_model import StreamModel, classify_streams
    from transforms.reading import read_frames
    from transforms.records import VideoRef

    spec = resolve_model("movinet-a0-stream", model_path=args.model_path)
    from bench_backends import CORPUS  # real footage of several codecs and sizes

    refs = [VideoRef(name, str(SHARED / "media" / name)) for name in CORPUS[: args.videos]]
    models = {"tensorflow/f32": StreamModel.load(spec)}
    for precision in args.precisions.split(","):
        backend = OpenVinoBackend(len(refs), precision)
        models[f"openvino/{precision}"] = backend.stream_model(spec)

    class Timed:
        """The model, its ``step`` calls timed (the model's share of the wall)."""

        def __init__(self, model):
            self.model, self.step_s = model, 0.0
            self.spec, self.per_video_keys = model.spec, model.per_video_keys
            self.init, self.keep = model.init, model.keep

        def step(self, frames, states):
            started = time.perf_counter()
            out = self.model.step(frames, states)
            self.step_s += time.perf_counter() - started
            return out

    step_s = {name: [] for name in models}

    def run(model, name=None):
        timed = Timed(model)
        outcomes = classify_streams(
            timed, refs, lambda uri: read_frames(uri, spec.fps, spec.frame_spec()), 5
        )
        if name:
            step_s[name].append(timed.step_s)
        return outcomes

    results = {name: run(model) for name, model in models.items()}  # untimed first pass
    times = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            run(model, name)
            times[name].append(time.perf_counter() - started)
    reference = results["tensorflow/f32"]
    frames = sum(
        round((float(c.end_s) - float(c.start_s)) * spec.fps)
        for outcome in reference
        if outcome.failure is None
        for c in outcome.clips
    )
    tf_s = statistics.median(times["tensorflow/f32"])
    tf_step_s = statistics.median(step_s["tensorflow/f32"])
    report = {"videos": len(refs), "frames": frames, "rounds": args.rounds, "paths": {}}
    for name, outcomes in results.items():
        wall = statistics.median(times[name])
        diffs = [
            abs(np.log(a.scores[0]) - np.log(b.scores[0]))
            for got, want in zip(outcomes, reference)
            if got.failure is None and want.failure is None
            for a, b in zip(got.clips, want.clips)
        ]
        report["paths"][name] = {
            "wall_s": round(wall, 2),
            "frames_per_s": round(frames / wall, 1),
            "vs_tensorflow": round(tf_s / wall, 2),
            "model_step_s": round(statistics.median(step_s[name]), 2),
            "model_vs_tensorflow": round(tf_step_s / statistics.median(step_s[name]), 2),
            "max_abs_dlogp_top1": float(max(diffs)) if diffs else None,
            "failures": sum(o.failure is not None for o in outcomes),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
