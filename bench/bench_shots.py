"""Shot detection: accuracy against PySceneDetect's default, and its CPU cost (not tests).

    python bench/bench_shots.py accuracy
    python bench/bench_shots.py cost [--rounds 3]
    python bench/bench_shots.py job [--rounds 2] [--model i3d-kinetics-400]
    python bench/bench_shots.py placement [--rounds 1]

accuracy: on the edited videos the tests use (``tests.media.shot_corpus``: real clips of
../shared/media joined with hard cuts, fades through black, one-second cross-dissolves,
one-second shots, and one-shot controls), recall and precision of (a) the job's
detector (``read_clips(..., shots=True)``, the frames the decode makes) and (b)
PySceneDetect's ``detect(path, ContentDetector())`` with its defaults, side by side. A
found boundary matches a true one within one frame (a cut) or half a second of the
transition's middle (a fade, a dissolve); each matches once.

cost: CPU seconds of ``read_clips`` with shots over the same without (decode,
resample, preprocess for the default model's clips), per corpus file, alternated per
file and round; the corpus is bench_index's real clips plus a 1080p one.

job: CPU seconds (user + system, the job's process and its children) of the whole
job, ``video-index index`` on the default model over that corpus, with shots and with
``--no-shots``, alternated per round; prints the shots' share of the job's CPU.

placement: ``read_clips`` with shots, the plain plan against ``--clips-per-shot`` 1
and 3, on the edited videos, the cost corpus and a 2-minute one-shot video: CPU
seconds (alternated per file and round), and in a separate pass the peak of memory
Python's allocators hold while reading each file (tracemalloc, which sees numpy's
arrays: the frames held back and the clips); clips per mode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_index import CORPUS, REPO, SHARED

MEDIA = SHARED / "media"
COST_CORPUS = CORPUS + ["moviepy/smpte-2997.mp4"]  # bench_index's real clips, and a 1080p one


def _score(results: list[tuple[str, list, list]]) -> dict:
    from tests.media import match_boundaries

    truth = hits = found_total = 0
    per_video = {}
    for name, true, found in results:
        matches = match_boundaries(found, true)
        hit = sum(m is not None for m in matches)
        truth, hits, found_total = truth + len(true), hits + hit, found_total + len(found)
        per_video[name] = f"{hit}/{len(true)} found, {len(found) - hit} false"
    return {
        "recall": round(hits / truth, 3),
        "precision": round(hits / max(found_total, 1), 3),
        "boundaries": truth,
        "found": found_total,
        "per_video": per_video,
    }


def accuracy(args) -> dict:
    from scenedetect import ContentDetector, detect

    from beam_pipeline.models.registry import registered
    from tests.media import shot_corpus
    from transforms.reading import read_clips

    spec = registered()[args.model]
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for video in shot_corpus(Path(tmp), MEDIA):
            with read_clips(
                str(video.path), spec.clip_sampling(), spec.frame_spec(), shots=True
            ) as reader:
                for _ in reader:
                    pass
                found = [(s.kind, s.start_s) for s in reader.shots[1:]]
            ours.append((video.path.name, video.boundaries, found))
            scenes = detect(str(video.path), ContentDetector(), backend="pyav")
            found = [("cut", start.seconds) for start, _ in scenes[1:]]
            theirs.append((video.path.name, video.boundaries, found))
    return {"ours": _score(ours), "pyscenedetect_content_default": _score(theirs)}


def cost(args) -> dict:
    from beam_pipeline.models.registry import registered
    from transforms.reading import read_clips

    spec = registered()[args.model]
    sampling = spec.clip_sampling()
    seconds: dict[tuple[str, bool], list[float]] = {}
    for _ in range(args.rounds):
        for name in COST_CORPUS:
            for shots in (False, True):  # alternated per file: drift hits both
                started = time.process_time()
                with read_clips(str(MEDIA / name), sampling, spec.frame_spec(), shots=shots) as r:
                    for _ in r:
                        pass
                seconds.setdefault((name, shots), []).append(time.process_time() - started)
    rows = {}
    for name in COST_CORPUS:
        off = statistics.median(seconds[(name, False)])
        on = statistics.median(seconds[(name, True)])
        rows[name] = {"decode_cpu_s": round(off, 3), "with_shots_over_without": round(on / off, 3)}
    off = sum(statistics.median(seconds[(n, False)]) for n in COST_CORPUS)
    on = sum(statistics.median(seconds[(n, True)]) for n in COST_CORPUS)
    return {"per_file": rows, "corpus_with_shots_over_without": round(on / off, 3)}


def placement(args) -> dict:
    import dataclasses
    import tracemalloc

    from beam_pipeline.models.registry import registered
    from tests.media import clip_frames, shot_corpus, write_edited_video
    from transforms.reading import read_clips

    spec = registered()[args.model]
    plain = spec.clip_sampling()
    modes = {
        "plain": plain,
        "clips_per_shot_1": dataclasses.replace(plain, clips_per_shot=1),
        "clips_per_shot_3": dataclasses.replace(plain, clips_per_shot=3),
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(v.path) for v in shot_corpus(Path(tmp), MEDIA)]
        files += [str(MEDIA / name) for name in COST_CORPUS]
        # One 2-minute shot: the hand-held street clip played forward and back 6 times.
        street = clip_frames(MEDIA / "mmaction2" / "test_video_structuralize.mp4", 10)
        long_shot = (street + street[::-1]) * 6
        files.append(str(write_edited_video(Path(tmp) / "long_shot.mp4", [long_shot], []).path))

        def read(path, sampling) -> int:
            with read_clips(path, sampling, spec.frame_spec(), shots=True) as reader:
                return sum(1 for _ in reader)

        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        clips: dict[str, int] = {mode: 0 for mode in modes}
        for round_ in range(args.rounds):
            totals = dict.fromkeys(modes, 0.0)
            for path in files:
                for mode, sampling in modes.items():  # alternated per file
                    started = time.process_time()
                    count = read(path, sampling)
                    totals[mode] += time.process_time() - started
                    if round_ == 0:
                        clips[mode] += count
            for mode in modes:
                cpu[mode].append(totals[mode])
        peak_mb: dict[str, list[float]] = {mode: [] for mode in modes}
        tracemalloc.start()
        for path in files:
            for mode, sampling in modes.items():
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
                read(path, sampling)
                peak_mb[mode].append((tracemalloc.get_traced_memory()[1] - base) / 2**20)
        tracemalloc.stop()
    plain_cpu = statistics.median(cpu["plain"])
    return {
        "files": len(files),
        "clips": clips,
        "cpu_s": {mode: [round(s, 1) for s in cpu[mode]] for mode in modes},
        "cpu_over_plain": {
            mode: round(statistics.median(cpu[mode]) / plain_cpu, 3) for mode in modes
        },
        "peak_mb_median_per_file": {
            mode: round(statistics.median(peak_mb[mode]), 1) for mode in modes
        },
        "peak_mb_max": {mode: round(max(peak_mb[mode]), 1) for mode in modes},
        "peak_mb_long_shot": {mode: round(peak_mb[mode][-1], 1) for mode in modes},
    }


def _cpu_of(cmd: list[str]) -> float:
    """User + system CPU seconds of a command and its children (wait4's rusage)."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode()[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def job(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "corpus.txt"
        manifest.write_text("\n".join(str(MEDIA / name) for name in COST_CORPUS) + "\n")
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for round_ in range(args.rounds):
            for shots in (True, False):
                cmd = [sys.executable, "-m", "beam_pipeline", "index", f"--input={manifest}"]
                cmd += [f"--output={tmp}/out-{shots}-{round_}", f"--model={args.model}"]
                cmd += [] if shots else ["--no-shots"]
                cpu[shots].append(_cpu_of(cmd))
    on, off = statistics.median(cpu[True]), statistics.median(cpu[False])
    return {
        "model": args.model,
        "rounds": args.rounds,
        "job_cpu_s_with_shots": [round(s, 1) for s in cpu[True]],
        "job_cpu_s_no_shots": [round(s, 1) for s in cpu[False]],
        "shots_share_of_job_cpu": round((on - off) / on, 3),
        "note": "user + system CPU of the job and its children (decoder, workers)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["accuracy", "cost", "job", "placement"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="i3d-kinetics-400")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    result = {"accuracy": accuracy, "cost": cost, "job": job, "placement": placement}[args.what](
        args
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
