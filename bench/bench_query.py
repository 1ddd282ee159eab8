"""Scale benchmark of the read side (not a test): a synthetic index, then each command.

    python bench/bench_query.py --videos 1000000 --dir /tmp/bench-query [--keep]

Writes an index of N videos x 25 clips in the product's schemas (video_index.schemas)
the way runs leave it: run A indexes every video (1 in 100 a failure row instead,
1 in 1000 committed twice as a retried bundle does); run B re-indexes 1 in 20 videos
(their A rows no longer stand); run C is killed after committing 10 clips of 1 in
100 videos and no video rows (orphan clips). Files hold 200 videos or 5,000 clips,
as the writer's periodic commits leave them.

Then runs each command as its own process (``/usr/bin/time -v``: wall seconds and
peak RSS) and a plain DuckDB scan of the same files (every column of every file of
the three tables, one aggregate), and prints seconds, peak RSS and the ratio of
each command's seconds to the plain scan's; searches also to a "label scan" (the same
clips files, the label filter and the ranking, no standing rule: the naive search). Commands: ``show``, ``show --html``,
``search cricket`` (events and ``--clips``), ``query`` (standing counts, and the
segments view), ``compact``, then the scan, ``search`` and ``query`` again on the
compacted index. Standing counts from ``query`` are checked against what the
generator knows. Results as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from beam_pipeline.models.spec import packaged_labels  # noqa: E402
from video_index.schemas import CLIPS, FAILURES, VIDEOS  # noqa: E402

CLIPS_PER_VIDEO = 25
VIDEOS_PER_FILE = 200
RUN_A, RUN_B, RUN_C = (
    "20260101T000000Z-aaaaaa",
    "20260102T000000Z-bbbbbb",
    "20260103T000000Z-cccccc",
)
MODEL = "i3d-kinetics-400"


def is_failure(i: np.ndarray) -> np.ndarray:
    return i % 100 == 7


def is_reindexed(i: np.ndarray) -> np.ndarray:
    return (i % 20 == 3) & ~is_failure(i)


def is_orphaned(i: np.ndarray) -> np.ndarray:
    return i % 100 == 11


def is_repeated(i: np.ndarray) -> np.ndarray:
    return (i % 1000 == 5) & ~is_failure(i)


def _lists(values: np.ndarray, per_row: int, type_: pa.DataType) -> pa.Array:
    offsets = np.arange(0, len(values) + 1, per_row, dtype=np.int32) if len(values) else [0]
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, type_))


class Generator:
    def __init__(self, out: Path, seed: int = 0):
        self.out = out
        self.labels = np.array(packaged_labels("kinetics400"), dtype=object)
        self.rng = np.random.default_rng(seed)
        self.files = 0
        self.repeat = False
        for table in ("videos", "clips", "failures"):
            (out / table).mkdir(parents=True, exist_ok=True)

    def _write(self, table: str, schema: pa.Schema, columns: dict, run: str) -> None:
        n = len(next(iter(columns.values())))
        for field in schema:  # columns this generator does not fill (newer ones) are null
            columns.setdefault(field.name, pa.nulls(n, field.type))
        data = pa.table(columns, schema=schema)
        # A retried bundle commits the very same rows again, in a file of its own.
        for _ in range(2 if self.repeat else 1):
            path = self.out / table / f"{run}-bench-{self.files:07d}.parquet"
            pq.write_table(data, path, compression="zstd")
            self.files += 1

    def _top5(self, theme: np.ndarray) -> tuple[pa.Array, pa.Array]:
        n = len(theme)
        top1 = np.where(self.rng.random(n) < 0.8, theme, self.rng.integers(0, 400, n))
        rest = self.rng.integers(0, 400, (n, 4))
        labels = np.concatenate([top1[:, None], rest], axis=1).ravel()
        p1 = self.rng.uniform(0.3, 1.0, n)
        scores = np.concatenate([p1[:, None], (1 - p1)[:, None] * [[0.4, 0.3, 0.2, 0.1]]], 1)
        return (
            _lists(self.labels[labels], 5, pa.string()),
            _lists(scores.astype(np.float32).ravel(), 5, pa.float32()),
        )

    def clips(self, ids: np.ndarray, run: str, per_video: int, theme_shift: int) -> None:
        if not len(ids):
            return
        vid = np.repeat(ids, per_video)
        idx = np.tile(np.arange(per_video, dtype=np.int32), len(ids))
        labels, scores = self._top5((vid * 7 + theme_shift) % 400)
        names = np.char.add("v", np.char.zfill(vid.astype(str), 7)).astype(object)
        self._write(
            "clips",
            CLIPS,
            {
                "video_id": names,
                "uri": np.char.add("/archive/", names.astype(str)).astype(object),
                "clip_index": idx,
                "start_s": idx * 2.56,
                "end_s": idx * 2.56 + 2.56,
                "labels": labels,
                "scores": scores,
                "model": np.full(len(vid), MODEL, dtype=object),
                "run_id": np.full(len(vid), run, dtype=object),
            },
            run,
        )

    def videos(self, ids: np.ndarray, run: str, theme_shift: int) -> None:
        if not len(ids):
            return
        n = len(ids)
        names = np.char.add("v", np.char.zfill(ids.astype(str), 7)).astype(object)
        labels, scores = self._top5((ids * 7 + theme_shift) % 400)
        self._write(
            "videos",
            VIDEOS,
            {
                "video_id": names,
                "uri": np.char.add("/archive/", names.astype(str)).astype(object),
                "size": np.full(n, 1_000_000, dtype=np.int64),
                "version": np.full(n, run[:8], dtype=object),
                "duration_s": np.full(n, CLIPS_PER_VIDEO * 2.56),
                "fps": np.full(n, 25.0),
                "width": np.full(n, 320, dtype=np.int32),
                "height": np.full(n, 240, dtype=np.int32),
                "num_frames": np.full(n, 1600, dtype=np.int64),
                "decode_errors": np.zeros(n, dtype=np.int64),
                "num_clips": np.full(n, CLIPS_PER_VIDEO, dtype=np.int32),
                "labels": labels,
                "scores": scores,
                "model": np.full(n, MODEL, dtype=object),
                "run_id": np.full(n, run, dtype=object),
            },
            run,
        )

    def failures(self, ids: np.ndarray, run: str) -> None:
        if not len(ids):
            return
        n = len(ids)
        names = np.char.add("v", np.char.zfill(ids.astype(str), 7)).astype(object)
        self._write(
            "failures",
            FAILURES,
            {
                "video_id": names,
                "uri": np.char.add("/archive/", names.astype(str)).astype(object),
                "stage": np.full(n, "decode", dtype=object),
                "error_type": np.full(n, "UnreadableVideo", dtype=object),
                "message": np.full(n, "no video stream", dtype=object),
                "size": np.full(n, 10, dtype=np.int64),
                "version": np.full(n, run[:8], dtype=object),
                "model": np.full(n, MODEL, dtype=object),
                "run_id": np.full(n, run, dtype=object),
            },
            run,
        )


def generate(out: Path, num_videos: int) -> dict:
    """Write the index; returns the standing counts it must have."""
    gen = Generator(out)
    for start in range(0, num_videos, VIDEOS_PER_FILE):
        ids = np.arange(start, min(start + VIDEOS_PER_FILE, num_videos))
        ok = ids[~is_failure(ids)]
        once, repeated = ok[~is_repeated(ok)], ok[is_repeated(ok)]
        gen.clips(once, RUN_A, CLIPS_PER_VIDEO, 0)
        gen.videos(once, RUN_A, 0)
        gen.failures(ids[is_failure(ids)], RUN_A)
        gen.repeat = True
        gen.clips(repeated, RUN_A, CLIPS_PER_VIDEO, 0)
        gen.videos(repeated, RUN_A, 0)
        gen.repeat = False
    for start in range(0, num_videos, VIDEOS_PER_FILE * 20):
        ids = np.arange(start, min(start + VIDEOS_PER_FILE * 20, num_videos))
        again = ids[is_reindexed(ids)]
        gen.clips(again, RUN_B, CLIPS_PER_VIDEO, 1)
        gen.videos(again, RUN_B, 1)
        gen.clips(ids[is_orphaned(ids)], RUN_C, 10, 2)
    all_ids = np.arange(num_videos)
    failed = int(is_failure(all_ids).sum())
    return {
        "videos": num_videos - failed,
        "failures": failed,
        "clips": (num_videos - failed) * CLIPS_PER_VIDEO,
        "files": gen.files,
    }


def timed(cmd: list[str], stdout=subprocess.PIPE) -> dict:
    """Wall seconds and peak RSS of ``cmd`` in its own process (GNU time -v)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], cwd=REPO, env=env, stdout=stdout,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {done.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])
    return {"s": round(seconds, 2), "rss_mib": round(rss_kb / 1024), "stdout": done.stdout}


# The naive search: the same files, the label filter, no standing rule.
LABEL_SCAN = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET memory_limit = '1GB'")
print(con.execute(
    f"SELECT video_id, start_s, end_s, scores[1] FROM read_parquet('{sys.argv[1]}/clips/*.parquet')"
    " WHERE labels[1] = 'playing cricket' ORDER BY scores[1] DESC LIMIT 20").fetchall())
"""

PLAIN_SCAN = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET memory_limit = '1GB'")
for table in ("videos", "clips", "failures"):
    print(table, con.execute(
        f"SELECT count(*), max(COLUMNS(*)::VARCHAR) FROM read_parquet('{sys.argv[1]}/' || ? || '/*.parquet', union_by_name = true)",
        [table]).fetchone()[0])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--dir", default="/tmp/bench-query")
    parser.add_argument("--keep", action="store_true", help="keep the index afterwards")
    args = parser.parse_args()
    root = Path(args.dir)
    if root.exists():
        shutil.rmtree(root)
    out = root / "index"
    started = time.monotonic()
    expected = generate(out, args.videos)
    print(f"generated {args.videos} videos, {expected['files']} files in "
          f"{time.monotonic() - started:.0f} s: {expected}", flush=True)  # fmt: skip
    vi = [sys.executable, "-m", "beam_pipeline"]
    counts_sql = (
        "SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM clips) AS clips,"
        " (SELECT count(*) FROM failures) AS failures"
    )
    commands = {
        "plain scan": [sys.executable, "-c", PLAIN_SCAN, str(out)],
        "label scan": [sys.executable, "-c", LABEL_SCAN, str(out)],
        "show": [*vi, "show", str(out)],
        "show --html": [*vi, "show", str(out), "--html", str(root / "report.html")],
        "search cricket": [*vi, "search", str(out), "cricket"],
        "search cricket --clips": [*vi, "search", str(out), "cricket", "--clips"],
        "query counts": [*vi, "query", str(out), counts_sql, "--format", "json"],
        "query segments": [
            *vi, "query", str(out), "SELECT count(*) AS n, sum(num_clips) AS c FROM segments",
        ],  # fmt: skip
        "compact": [*vi, "compact", str(out)],
        "plain scan, compacted": [sys.executable, "-c", PLAIN_SCAN, str(out)],
        "label scan, compacted": [sys.executable, "-c", LABEL_SCAN, str(out)],
        "search cricket, compacted": [*vi, "search", str(out), "cricket"],
        "query counts, compacted": [*vi, "query", str(out), counts_sql, "--format", "json"],
    }
    results = {}
    for name, cmd in commands.items():
        result = timed(cmd)
        suffix = ", compacted" if "compacted" in name else ""
        base = results.get("plain scan" + suffix)
        result["ratio"] = round(result["s"] / base["s"], 2) if base else 1.0
        if name.startswith("search"):  # and against the naive search of the same files
            result["ratio_label_scan"] = round(result["s"] / results["label scan" + suffix]["s"], 2)
        if name.startswith("query counts"):
            got = json.loads(result["stdout"])[0]
            result["counts_exact"] = got == {k: expected[k] for k in got}
            result["counts"] = got
        if name == "show --html":
            result["html_mib"] = round((root / "report.html").stat().st_size / 2**20, 2)
        result.pop("stdout")
        results[name] = result
        print(f"{name:<28} {result['s']:>8.1f} s  {result['rss_mib']:>6} MiB  "
              f"x{result['ratio']:<6} {result.get('ratio_label_scan', '')} "
              f"{result.get('counts_exact', '')}", flush=True)  # fmt: skip
    print(json.dumps({"videos": args.videos, "expected": expected, "results": results}))
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
