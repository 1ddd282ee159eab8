"""Benchmarks of the spine (not tests): throughput ratio and memory ratio.

    python bench/bench_index.py throughput [--model i3d-kinetics-400] [--rounds 2]
        [--backend tensorflow|openvino --precision f32|bf16]
    python bench/bench_index.py memory [--long-min 30] [--short-min 1] [--backend auto]
    python bench/bench_index.py decode
    python bench/bench_index.py length [--rounds 3]
    python bench/bench_index.py isolation [--rounds 3]

throughput: on a corpus built from ../shared/media, (a) the whole job's clips/s
(LocalRunner, in this process: list, decode, classify, summarise, write, with the
pipeline's start-up and model load on the clock), (b) the model alone on the same
clips in the same batches (decoded beforehand, off the clock) and (c) the job on one
clip of one video (what a run costs before its second clip), alternated in one run.
Prints each round and two ratios of medians: (a) / (b), and the running job's rate,
(clips - 1) / (seconds of a - seconds of c), over (b), in which start-up cancels.

decode: CPU seconds of decode + resample + preprocess per clip, per corpus file (what
sizing a GPU worker's vCPUs needs).

length: what finding a video's true length from packet timestamps (demux only, what
``--max-clips-per-video`` adds) costs against decoding it for clips; CPU seconds of
each, alternated per file and round; prints per-file and corpus ratios of medians.

isolation: clips/s of decode + resample + preprocess in a child process
(``transforms.decode_worker``, what the job does) over the same in this process, on the
corpus, alternated per file and round (wall clock: the child works while the parent
waits); the child is started once before the clock, as a worker keeps it.

memory: generates a long and a short low-resolution video, indexes each in its own
child process, and also decodes each alone (read_clips, no model) in another; prints
each child's peak RSS and the long / short ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("VIDEO_INDEX_SHARED", REPO.parent / "shared"))
CORPUS = [  # real clips of several codecs and sizes
    "mmaction2/test.mp4",
    "mmaction2/test.avi",
    "mmaction2/test_video_structuralize.mp4",
    "moviepy/chaplin.mp4",
    "kinetics-i3d/v_CricketShot_g04_c01_rgb.gif",
    "derived/mpeg4.mkv",
]


def throughput(args) -> dict:
    import statistics

    import apache_beam as beam
    import numpy as np
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipeline.models.backend import backend_for
    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.options import IndexConfig
    from beam_pipeline.pipeline import build_pipeline
    from beam_pipeline.report import current_rows
    from beam_pipeline.runner import LocalRunner
    from transforms.reading import read_clips

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "corpus.txt"
        manifest.write_text("\n".join(str(SHARED / "media" / c) for c in CORPUS) + "\n")
        stride = args.stride_s

        def argv(corpus: str) -> list[str]:
            flags = [f"--model={args.model}", f"--clip-stride-s={stride}"]
            if corpus == "one":  # one clip of one video: what a run costs before clip 2
                flags += [f"--input={SHARED / 'media' / CORPUS[0]}", "--max-clips-per-video=1"]
            else:
                flags.append(f"--input={manifest}")
            if args.batch_size:
                flags.append(f"--batch-size={args.batch_size}")
            return flags + [f"--backend={args.backend}", f"--precision={args.precision}"]

        config = IndexConfig.from_options(PipelineOptions(argv("all") + [f"--output={tmp}/o"]))
        spec, batch = config.spec, config.batch_size
        clips = []  # the corpus's clips, for the model alone
        for name in CORPUS:
            with read_clips(
                str(SHARED / "media" / name), config.sampling, spec.frame_spec(), config.limits
            ) as reader:
                clips += [clip.frames for clip in reader]

        def model_only() -> float:
            # A fresh load each round, as the pipeline does; the clock starts after it
            # and after one call at the batch size the pipeline uses (tracing, kernels).
            # Batches as the pipeline makes them: always `batch` clips, the tail padded.
            # The job's backend and precision, with embeddings where the job stores them.
            backend = backend_for(config.backend, batch, config.precision)
            model = ClipModel.load(spec, backend, config.embeddings)
            predict = model.predict_with_embedding if config.embeddings else model.predict
            predict(np.stack(clips[:batch]))
            started = time.perf_counter()
            for i in range(0, len(clips), batch):
                part = clips[i : i + batch]
                predict(np.stack(part + [part[-1]] * (batch - len(part))))
            return len(clips) / (time.perf_counter() - started)

        def end_to_end(corpus: str, round_: int) -> tuple[int, float]:
            out = f"{tmp}/out-{corpus}-{round_}"
            options = PipelineOptions(argv(corpus) + [f"--output={out}"])
            config_round = IndexConfig.from_options(options)
            started = time.perf_counter()
            with beam.Pipeline(runner=LocalRunner(), options=options) as p:
                build_pipeline(p, config_round)
            elapsed = time.perf_counter() - started
            return current_rows(out)["clips"].num_rows, elapsed

        rounds = []
        for round_ in range(args.rounds):  # A B C A B C: drift in machine speed hits all
            model_rate = model_only()
            one = end_to_end("one", round_)
            whole = end_to_end("all", round_)
            rounds.append((model_rate, one, whole))

    model_rate = statistics.median(r[0] for r in rounds)
    whole = statistics.median(r[2][0] / r[2][1] for r in rounds)
    # The running job's rate: the clips after the first over the time after a
    # one-clip run, so start-up, listing and model load (paid once) cancel out.
    running = statistics.median((r[2][0] - r[1][0]) / (r[2][1] - r[1][1]) for r in rounds)
    return {
        "model": spec.name,
        "backend": f"{config.backend}/{config.precision}",
        "batch_size": batch,
        "clips": rounds[0][2][0],
        "rounds": args.rounds,
        "model_only_clips_per_s": [round(r[0], 3) for r in rounds],
        "end_to_end_clips_per_s": [round(r[2][0] / r[2][1], 3) for r in rounds],
        "one_clip_run_s": [round(r[1][1], 1) for r in rounds],
        "ratio_end_to_end_over_model": round(whole / model_rate, 3),
        "ratio_running_job_over_model": round(running / model_rate, 3),
        "note": "end to end: start-up, listing, decode, model load and writing on the clock; "
        "running job: (clips - 1) / (seconds - seconds of a one-clip run)",
    }


def decode(args) -> dict:
    """Core-seconds of decode + resample + preprocess per I3D clip, per corpus file."""
    from beam_pipeline.models.registry import registered
    from transforms.reading import read_clips

    spec = registered()[args.model]
    sampling = spec.clip_sampling(stride_s=args.stride_s)
    rows = {}
    for name in CORPUS + ["moviepy/smpte-2997.mp4"]:
        started = time.process_time()
        with read_clips(str(SHARED / "media" / name), sampling, spec.frame_spec()) as reader:
            count = sum(1 for _ in reader)
            source = f"{reader.info.width}x{reader.info.height}"
        cpu = time.process_time() - started
        rows[name] = {"source": source, "clips": count, "cpu_s_per_clip": round(cpu / count, 3)}
    return rows


def length(args) -> dict:
    """CPU seconds: measure_length (demux) vs read_clips (decode + resample + preprocess)."""
    import statistics

    from beam_pipeline.models.registry import registered
    from transforms.reading import read_clips
    from transforms.video_io import measure_length

    spec = registered()[args.model]
    sampling = spec.clip_sampling()
    files = CORPUS + ["moviepy/smpte-2997.mp4"]
    probe: dict[str, list[float]] = {name: [] for name in files}
    clips: dict[str, list[float]] = {name: [] for name in files}
    for _ in range(args.rounds):
        for name in files:
            path = str(SHARED / "media" / name)
            started = time.process_time()
            measure_length(path)
            probe[name].append(time.process_time() - started)
            started = time.process_time()
            with read_clips(path, sampling, spec.frame_spec()) as reader:
                sum(1 for _ in reader)
            clips[name].append(time.process_time() - started)
    rows = {
        name: {
            "demux_cpu_s": round(statistics.median(probe[name]), 4),
            "clips_cpu_s": round(statistics.median(clips[name]), 3),
            "ratio": round(statistics.median(probe[name]) / statistics.median(clips[name]), 4),
        }
        for name in files
    }
    total_probe = sum(statistics.median(v) for v in probe.values())
    total_clips = sum(statistics.median(v) for v in clips.values())
    rows["corpus"] = {"ratio": round(total_probe / total_clips, 4), "rounds": args.rounds}
    return rows


def isolation(args) -> dict:
    """Wall-clock items/s: isolated decode over in-process decode, ratio of sums of medians.

    Clips (``read_clips`` at ``--model``'s sampling, what clip models read) and frames
    (``read_frames`` at ``--frames-model``'s rate and size, what stream and
    frame-sequence models read), each file in both modes, the order alternating by round.
    """
    import statistics

    from beam_pipeline.models.registry import registered
    from transforms.decode_worker import IsolatedDecoder
    from transforms.reading import read_clips, read_frames

    spec = registered()[args.model]
    frames_spec = registered()[args.frames_model]
    sampling = spec.clip_sampling(stride_s=args.stride_s)
    files = CORPUS + ["moviepy/smpte-2997.mp4"]
    decoder = IsolatedDecoder()
    decoder._start()  # a worker starts its decoder once, in setup()
    readers = {
        "clips": {
            "in_process": lambda path: read_clips(path, sampling, spec.frame_spec()),
            "isolated": lambda path: decoder.read_clips(path, sampling, spec.frame_spec()),
        },
        "frames": {
            "in_process": lambda path: read_frames(path, frames_spec.fps, frames_spec.frame_spec()),
            "isolated": lambda path: decoder.read_frames(
                path, frames_spec.fps, frames_spec.frame_spec()
            ),
        },
    }
    times = {(kind, mode): {} for kind in readers for mode in ("in_process", "isolated")}
    counts: dict[tuple[str, str], int] = {}
    try:
        for round_ in range(args.rounds):
            for name in files:
                path = str(SHARED / "media" / name)
                order = (
                    ("in_process", "isolated") if round_ % 2 == 0 else ("isolated", "in_process")
                )
                for kind, modes in readers.items():
                    for mode in order:
                        started = time.perf_counter()
                        with modes[mode](path) as reader:
                            counts[kind, name] = sum(1 for _ in reader)
                        times[kind, mode].setdefault(name, []).append(time.perf_counter() - started)
    finally:
        decoder.close()
    result: dict = {"rounds": args.rounds}
    for kind in readers:
        total = sum(n for (k, _), n in counts.items() if k == kind)
        rate = {
            mode: total / sum(statistics.median(v) for v in times[kind, mode].values())
            for mode in ("in_process", "isolated")
        }
        result[kind] = {
            "count": total,
            "in_process_per_s": round(rate["in_process"], 2),
            "isolated_per_s": round(rate["isolated"], 2),
            "isolated_over_in_process": round(rate["isolated"] / rate["in_process"], 3),
        }
    return result


def write_long_video(path: Path, minutes: float, fps: int = 25, size=(160, 120)) -> None:
    """A low-resolution test pattern that moves, so the encoder has real work."""
    import av
    import numpy as np

    frames = int(minutes * 60 * fps)
    base = np.zeros((size[1], size[0], 3), np.uint8)
    xs = np.arange(size[0], dtype=np.uint16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            base[:, :, 0] = ((xs + i) % 256).astype(np.uint8)
            base[:, :, 1] = (i * 3) % 256
            frame = av.VideoFrame.from_ndarray(base, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# Started by a small Python process rather than by the bench itself: Linux carries a
# process's RSS high-water mark across exec, so wait4's ru_maxrss of a child forked from
# a bench holding models and clips would be at least the bench's own RSS at the fork.
_PEAK_RSS = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def peak_rss_of(cmd: list[str]) -> tuple[int, float]:
    """Run a command; its peak RSS in MiB (wait4's rusage: the command or, if larger,
    any child it waited for) and wall seconds."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _PEAK_RSS, *cmd], stdout=subprocess.PIPE, stderr=err
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{cmd} failed: {err.read().decode(errors='replace')[-2000:]}")
    return int(done.stdout.split()[-1]) // 1024, elapsed


_DECODE_ONLY = """
import sys
from transforms.reading import read_clips
from transforms.preprocess import FrameSpec
from transforms.sampling import ClipSampling
sampling = ClipSampling(64, 25.0, stride_s=float(sys.argv[2]))
with read_clips(sys.argv[1], sampling, FrameSpec(224, 256)) as reader:
    print(sum(1 for _ in reader))
"""


def memory(args) -> dict:
    """Peak RSS of each child: the whole job, and decode + sampling + preprocess alone."""
    results = {"backend": args.backend}
    with tempfile.TemporaryDirectory() as tmp:
        for name, minutes in (("short", args.short_min), ("long", args.long_min)):
            video = Path(tmp) / f"{name}.mp4"
            write_long_video(video, minutes)
            cmd = [
                sys.executable, "-m", "beam_pipeline", "index",
                f"--input={video}", f"--output={tmp}/out-{name}",
                f"--model={args.model}", f"--clip-stride-s={args.stride_s}",
                f"--backend={args.backend}",
            ]  # fmt: skip
            rss, wall = peak_rss_of(cmd)
            decode_rss, _ = peak_rss_of(
                [sys.executable, "-c", _DECODE_ONLY, str(video), str(args.stride_s)]
            )
            results[name] = {
                "minutes": minutes,
                "job_peak_rss_mib": rss,
                "decode_only_peak_rss_mib": decode_rss,
                "job_wall_s": round(wall, 1),
            }
    for key in ("job_peak_rss_mib", "decode_only_peak_rss_mib"):
        results[f"ratio_long_over_short_{key}"] = round(
            results["long"][key] / results["short"][key], 3
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--model", default="i3d-kinetics-400")
    t.add_argument(
        "--stride-s", type=float, default=0.64, help="a quarter clip: more clips per video"
    )
    t.add_argument("--rounds", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--backend", default="tensorflow", help="tensorflow or openvino")
    t.add_argument(
        "--precision", default="f32", help="f32 or bf16 (int8 calibrates on the launcher)"
    )
    d = sub.add_parser("decode")
    d.add_argument("--model", default="i3d-kinetics-400")
    d.add_argument("--stride-s", type=float, default=None)
    n = sub.add_parser("length")
    n.add_argument("--model", default="i3d-kinetics-400")
    n.add_argument("--rounds", type=int, default=3)
    i = sub.add_parser("isolation")
    i.add_argument("--model", default="i3d-kinetics-400")
    i.add_argument("--stride-s", type=float, default=None)
    i.add_argument("--rounds", type=int, default=3)
    i.add_argument("--frames-model", default="movinet-a0-stream")
    m = sub.add_parser("memory")
    m.add_argument("--model", default="i3d-kinetics-400")
    m.add_argument("--backend", default="auto", help="auto | tensorflow | openvino")
    m.add_argument("--long-min", type=float, default=30.0)
    m.add_argument("--short-min", type=float, default=1.0)
    m.add_argument(
        "--stride-s",
        type=float,
        default=15.0,
        help="keeps model time small yet gives the short video full batches; decode reads every frame",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    modes = {
        "throughput": throughput,
        "memory": memory,
        "decode": decode,
        "length": length,
        "isolation": isolation,
    }
    result = modes[args.what](args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
