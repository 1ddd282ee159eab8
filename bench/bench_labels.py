"""CPU cost of free-text search's encoder: build, class embeddings, and one query.

    python bench/bench_labels.py [--rounds 5]

Prints, for all-MiniLM-L6-v2 on OpenVINO (video_index/text_encoder.py): the time to
build and compile the network, to embed the 400 Kinetics class names (done once, then
cached), and per query (tokenize + one inference + ranking against cached class
embeddings), as CPU seconds and wall seconds, the median over the rounds of the
40 everyday queries of tests/test_text_encoder.py; and their top-1 / top-3 score.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from beam_pipeline.models.spec import packaged_labels  # noqa: E402
from tests.test_text_encoder import EVERYDAY  # noqa: E402
from video_index import text_encoder  # noqa: E402


def _timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    labels = list(packaged_labels("kinetics400"))
    encoder, wall, cpu = _timed(text_encoder.TextEncoder)
    print(f"build + compile: {wall:.2f} s wall, {cpu:.2f} s CPU")
    embeddings, wall, cpu = _timed(lambda: encoder.encode(labels))
    print(f"400 class names: {wall:.2f} s wall, {cpu:.2f} s CPU (once; then cached)")
    walls, cpus = [], []
    for _ in range(args.rounds):
        for query, _meant in EVERYDAY:
            _, wall, cpu = _timed(lambda q=query: embeddings @ encoder.encode([q])[0])
            walls.append(wall)
            cpus.append(cpu)
    print(
        f"per query ({args.rounds} rounds x {len(EVERYDAY)}): median "
        f"{1000 * statistics.median(walls):.1f} ms wall, {1000 * statistics.median(cpus):.1f} ms CPU"
    )
    top1 = top3 = 0
    for query, meant in EVERYDAY:
        found = [label for label, _ in text_encoder.nearest_labels(query, labels, 3, encoder)]
        top1 += found[0] == meant
        top3 += meant in found
    print(f"everyday queries: top-1 {top1}/{len(EVERYDAY)}, top-3 {top3}/{len(EVERYDAY)}")


if __name__ == "__main__":
    main()
