"""Backends x precisions on the same clips and batch, in one run (not a test).

    python bench/bench_backends.py [--model i3d-kinetics-400] [--clips 40] [--rounds 2]
        [--precisions f32,bf16,int8] [--e2e-files 3] [--e2e-rounds 2]
    python bench/bench_backends.py --model movinet-a0-base \
        --model-path ../shared/models/movinet/a0_base --batch-size 1 --clips 4 --e2e-files 0

model only: the corpus's clips (../shared/media, decoded by the product) through TF fp32
and OpenVINO at each precision, in the pipeline's batches (tail padded), one untimed
call first; the backends alternate within each round (A B C D A B C D) so drift in
machine speed hits all; s/clip is the median over rounds. Agreement: the accuracy gates
(beam_pipeline/models/agreement.py) of each path against TF fp32 on those clips, and
the cricket GIF's video-level p. int8 calibrates as the product does on the e2e job's
input: up to 32 clips, round-robin over the first ``--calibration-files`` corpus files
(the same clips, so the same cached IR as the e2e runs).

end to end: ``video-index index`` on the first ``--e2e-files`` corpus files, one child
process per run (caches warm: one untimed run of each path first), alternating; wall
seconds, clips/s and the child's peak RSS (wait4), and per round the top-1 labels each
OpenVINO run wrote (clips and videos) against that round's TensorFlow run.

Prints one JSON object with ratios to TF fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))
CORPUS = [  # real footage of several codecs and sizes; the cricket GIF has a golden label
    "mmaction2/test.mp4",
    "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif",
    "moviepy/chaplin.mp4",
    "mmaction2/test.avi",
    "mmaction2/test_video_structuralize.mp4",
    "mmaction2/demo_spatiotemporal_det.mp4",
    "derived/mpeg4.mkv",
    "moviepy/pigs_in_a_polka.gif",
    "tf-examples/carving_ice_rpi.mp4",
    "tf-examples/example_video01.mp4",
    "derived/gif_10fps.gif",
    "mmaction2/part_0.mp4",
]
CRICKET = "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif"


def _decode(spec, stride_s: float, limit: int):
    from beam_pipeline.models.agreement import decode_clips

    sampling = spec.clip_sampling(stride_s=stride_s)
    paths = [(name, str(SHARED / "media" / name)) for name in CORPUS]
    clips, videos = decode_clips(spec, paths, sampling)
    # Every video's clips, then cut at `limit` round-robin so every file keeps some.
    order = sorted(range(len(clips)), key=lambda i: (videos[:i].count(videos[i]), i))[:limit]
    order.sort()
    return clips[order], [videos[i] for i in order]


def model_only(args, spec) -> dict:
    import numpy as np

    from beam_pipeline.models.agreement import compare, embedding_cosines, predict_in_batches
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.openvino.calibration import calibration_set
    from beam_pipeline.models.openvino.compiled import (
        OpenVinoCall,
        OpenVinoEmbeddingCall,
        compile_ir,
    )
    from beam_pipeline.models.openvino.ir import ensure_ir
    from beam_pipeline.models.openvino.policy import cpu_capabilities, float_hint
    from transforms.scores import softmax

    batch = args.batch_size or spec.max_batch_size
    clips, videos = _decode(spec, args.stride_s, args.clips)
    caps = cpu_capabilities()
    # with embeddings, as the job runs by default where the model gives them
    embeddings = spec.embedding_key is not None
    models = {"tensorflow/f32": ClipModel.load(spec, embeddings=embeddings)}
    irs = {}
    for precision in args.precisions:
        if precision == "bf16" and "BF16" not in caps:
            continue
        calibration = None
        if precision == "int8":
            files = CORPUS[: args.calibration_files]
            uris = [str(SHARED / "media" / name) for name in files]
            calibration = calibration_set(spec, uris, args.calibration_clips)
        started = time.perf_counter()
        ir = ensure_ir(spec, batch, precision, calibration)
        irs[precision] = {
            "ir_sha256": ir.sha256,
            "prepare_s": round(time.perf_counter() - started, 1),
        }
        hint = float_hint(precision, caps)
        compiled = compile_ir(ir.path, hint)
        call = OpenVinoCall(spec, ir, precision, compiled)
        vectors = OpenVinoEmbeddingCall(spec, ir, precision, compiled) if embeddings else None
        models[f"openvino/{precision}"] = ClipModel(spec, call, vectors)
    for model in models.values():  # the untimed first call: tracing, kernels
        predict_in_batches(model, clips[:batch], batch, embeddings)
    seconds = {name: [] for name in models}
    logits = {}
    for _ in range(args.rounds):
        for name, model in models.items():
            started = time.perf_counter()
            logits[name] = predict_in_batches(model, clips, batch, embeddings)
            seconds[name].append((time.perf_counter() - started) / len(clips))
    vectors = {}
    if embeddings:
        vectors = {name: pair[1] for name, pair in logits.items()}
        logits = {name: pair[0] for name, pair in logits.items()}
    reference = logits["tensorflow/f32"]
    ref_s = statistics.median(seconds["tensorflow/f32"])
    rows = {}
    for name in models:
        s = statistics.median(seconds[name])
        row = {
            "s_per_clip": round(s, 4),
            "rounds_s_per_clip": [round(x, 4) for x in seconds[name]],
            "speedup_vs_tf_f32": round(ref_s / s, 2),
        }
        if name != "tensorflow/f32":
            row["agreement"] = compare(reference, logits[name], videos).summary()
            if vectors:
                cosines = embedding_cosines(vectors["tensorflow/f32"], vectors[name])
                row["embedding_cosine_min"] = round(float(cosines.min()), 6)
            row.update(irs[name.split("/")[1]])
        cricket = np.array([v == CRICKET for v in videos])
        if cricket.any():
            probs = softmax(logits[name][cricket]).mean(0)
            row["cricket"] = [spec.labels[int(probs.argmax())], round(float(probs.max()), 4)]
        rows[name] = row
    return {"clips": len(clips), "videos": len(set(videos)), "batch_size": batch, "paths": rows}


def _top1(folder: str, table: str) -> dict:
    import pyarrow.parquet as pq

    key = ["uri", "clip_index"] if table == "clips" else ["uri"]
    rows = pq.read_table(f"{folder}/{table}", columns=[*key, "labels", "scores"]).to_pylist()
    return {tuple(r[k] for k in key): (r["labels"][0], r["scores"][0]) for r in rows}


def _same_labels(reference: str, candidate: str) -> dict:
    """Top-1 of each clip and video an index wrote, against the reference index's:
    how many agree, over all and where the reference's p >= 0.5 (the gates' confident)."""
    from beam_pipeline.models.agreement import CONFIDENT

    counts = {}
    for table in ("clips", "videos"):
        ref, ours = _top1(reference, table), _top1(candidate, table)
        confident = [k for k, (_, p) in ref.items() if p >= CONFIDENT]
        counts[table] = {
            "agreeing": sum(ours.get(k, (None,))[0] == label for k, (label, _) in ref.items()),
            "of": len(ref),
            "confident_agreeing": sum(ours.get(k, (None,))[0] == ref[k][0] for k in confident),
            "confident": len(confident),
        }
    return counts


def end_to_end(args, paths: list[tuple[str, str]]) -> dict:
    import pyarrow.parquet as pq
    from bench_index import peak_rss_of

    files = CORPUS[: args.e2e_files]
    results = {f"{b}/{p}": {"wall_s": [], "peak_rss_mib": []} for b, p in paths}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "input.txt"
        manifest.write_text("".join(f"{SHARED / 'media' / f}\n" for f in files))

        def job(backend: str, precision: str, tag: str) -> tuple[int, float, str]:
            out = f"{tmp}/out-{backend}-{precision}-{tag}"
            cmd = [sys.executable, "-m", "beam_pipeline", "index", f"--input={manifest}",
                   f"--output={out}", f"--model={args.model}", f"--backend={backend}",
                   f"--precision={precision}"]  # fmt: skip
            if args.model_path:
                cmd.append(f"--model-path={args.model_path}")
            if args.batch_size:
                cmd.append(f"--batch-size={args.batch_size}")
            rss, wall = peak_rss_of(cmd)
            return rss, wall, out

        clips = {}
        for backend, precision in paths:  # warm the caches (IR, calibration), untimed
            _, _, out = job(backend, precision, "warm")
            clips[f"{backend}/{precision}"] = pq.read_table(f"{out}/clips").num_rows
        for round_ in range(args.e2e_rounds):
            outputs = {}
            for backend, precision in paths:
                rss, wall, outputs[f"{backend}/{precision}"] = job(backend, precision, str(round_))
                results[f"{backend}/{precision}"]["wall_s"].append(round(wall, 1))
                results[f"{backend}/{precision}"]["peak_rss_mib"].append(rss)
            for name, out in outputs.items():  # the labels each round wrote, against TF's
                if name != "tensorflow/f32":
                    labels = _same_labels(outputs["tensorflow/f32"], out)
                    results[name].setdefault("labels", []).append(labels)
    ref = statistics.median(results["tensorflow/f32"]["wall_s"])
    for name, row in results.items():
        wall = statistics.median(row["wall_s"])
        row["clips"] = clips[name]
        row["clips_per_s"] = round(clips[name] / wall, 3)
        row["wall_ratio_to_tf_f32"] = round(wall / ref, 3)
        row["speedup_vs_tf_f32"] = round(ref / wall, 2)
    return {"files": files, "paths": results}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="i3d-kinetics-400")
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--stride-s", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", default="f32,bf16,int8")
    parser.add_argument("--calibration-clips", type=int, default=32)
    parser.add_argument(
        "--calibration-files",
        type=int,
        default=3,
        help="int8 calibrates on the first N corpus files (as the e2e job, on its own input)",
    )
    parser.add_argument("--e2e-files", type=int, default=3)
    parser.add_argument("--e2e-rounds", type=int, default=2)
    parser.add_argument("--e2e-precisions", default="int8")
    args = parser.parse_args()
    args.precisions = [p for p in args.precisions.split(",") if p]

    from beam_pipeline.models.registry import resolve_model

    spec = resolve_model(args.model, model_path=args.model_path)
    result = {"model": spec.name, "model_only": model_only(args, spec) if args.clips else None}
    if args.e2e_files:
        paths = [("tensorflow", "f32")] + [("openvino", p) for p in args.e2e_precisions.split(",")]
        result["end_to_end"] = end_to_end(args, paths)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
