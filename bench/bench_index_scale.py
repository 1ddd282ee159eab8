"""Archive-scale benchmark of the read side on Lance tables (not a test).

    nice -n 19 python bench/bench_index_scale.py --videos 1000000 --clips-per-video 25 \\
        --vector-clips 1000000 --dir /tmp/bench-index-scale

Builds, under ``--dir`` (never in the repo), two synthetic indexes in the product's
tables (``video_index.table``, columns of ``video_index.schemas``), streamed in batches
of ``--batch-videos`` videos so memory stays flat:

- ``labels/``: N videos x C clips, settled (the standing rows only, as a run's end
  leaves them): 1 in 100 videos a failures row instead; top-5 labels of Kinetics-400
  (80% of a video's clips share its theme class). Its indexes are built
  (``video_index.indexes.ensure_indexes``), then 1 in 100 more videos is committed
  after the build (a later run's rows, in fragments no index covers).
- ``vectors/``: ``--vector-clips`` clips of ``--dim``-d float16 embeddings (the I3D
  width, ``schemas.clips_schema``) in ``--vector-clips / C`` videos; each video's clips
  lie near one of 2,000 centres (noise 0.35 per dimension, then unit length). The
  IVF_PQ index is built, then 1,000 clips are committed after the build. With
  ``--real-vectors`` (a ``.npy`` from ``bench_similar.py real``) the vectors are
  ``bench_similar.synthetic``'s real-derived ones instead (groups of 20 around mixes of
  two real I3D embeddings), their width the embeddings'.

Then each measurement runs in its own process (``/usr/bin/time -v``: wall seconds,
peak RSS): ``video-index search`` by label (events and ``--clips``) through the Lance
prefilter, and the same search's SQL over a full scan of the clips (the code before the
prefilter) side by side, as a ratio; ``video-index query`` (standing counts, the
segments of one label) and ``video-index show``, on both indexes (the second's clips
carry embeddings); ``video-index similar`` (approximate,
and ``--exact``); and, in one process, recall@10 of the approximate search against the
exact one and the median latency of each over 50 query clips (10 of them committed
after the index build). Results as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_query import MODEL, _lists, is_failure, timed  # noqa: E402

from beam_pipeline.models.spec import packaged_labels  # noqa: E402
from video_index.schemas import CLIPS, FAILURES, VIDEOS, clips_schema  # noqa: E402
from video_index.table import SPECS, conform_rows, table_schema  # noqa: E402

RUN_A, RUN_B = "20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb"
CLIP_S = 2.56
LABEL = "playing cricket"


def _names(ids: np.ndarray) -> np.ndarray:
    return np.char.add("v", np.char.zfill(ids.astype(str), 7)).astype(object)


class Rows:
    """Columns of the three tables for a batch of video ids (standing rows only)."""

    def __init__(self, clips_per_video: int, seed: int = 0):
        self.labels = np.array(packaged_labels("kinetics400"), dtype=object)
        self.per_video = clips_per_video
        self.rng = np.random.default_rng(seed)

    def _top5(self, theme: np.ndarray) -> tuple[pa.Array, pa.Array]:
        n = len(theme)
        top1 = np.where(self.rng.random(n) < 0.8, theme, self.rng.integers(0, 400, n))
        labels = np.concatenate([top1[:, None], self.rng.integers(0, 400, (n, 4))], 1).ravel()
        p1 = self.rng.uniform(0.3, 1.0, n)
        scores = np.concatenate([p1[:, None], (1 - p1)[:, None] * [[0.4, 0.3, 0.2, 0.1]]], 1)
        return (
            _lists(self.labels[labels], 5, pa.string()),
            _lists(scores.astype(np.float32).ravel(), 5, pa.float32()),
        )

    def clips(self, ids: np.ndarray, run: str, schema: pa.Schema = CLIPS, **extra) -> pa.Table:
        vid = np.repeat(ids, self.per_video)
        idx = np.tile(np.arange(self.per_video, dtype=np.int32), len(ids))
        labels, scores = self._top5((vid * 7) % 400)
        names = _names(vid)
        columns = {
            "video_id": names,
            "uri": np.char.add("/archive/", names.astype(str)).astype(object),
            "clip_index": idx,
            "start_s": idx * CLIP_S,
            "end_s": idx * CLIP_S + CLIP_S,
            "labels": labels,
            "scores": scores,
            "model": np.full(len(vid), MODEL, dtype=object),
            "run_id": np.full(len(vid), run, dtype=object),
            **extra,
        }
        # As a commit writes them: with the clips table's top-1 columns (schemas.TOP1).
        return conform_rows(pa.table(columns, schema=schema), SPECS["clips"])

    def videos(self, ids: np.ndarray, run: str) -> pa.Table:
        n = len(ids)
        names = _names(ids)
        labels, scores = self._top5((ids * 7) % 400)
        columns = {
            "video_id": names,
            "uri": np.char.add("/archive/", names.astype(str)).astype(object),
            "size": np.full(n, 1_000_000, dtype=np.int64),
            "version": np.full(n, run[:8], dtype=object),
            "duration_s": np.full(n, self.per_video * CLIP_S),
            "fps": np.full(n, 25.0),
            "width": np.full(n, 320, dtype=np.int32),
            "height": np.full(n, 240, dtype=np.int32),
            "num_frames": np.full(n, int(self.per_video * CLIP_S * 25), dtype=np.int64),
            "decode_errors": np.zeros(n, dtype=np.int64),
            "num_clips": np.full(n, self.per_video, dtype=np.int32),
            "labels": labels,
            "scores": scores,
            "model": np.full(n, MODEL, dtype=object),
            "run_id": np.full(n, run, dtype=object),
        }
        for field in VIDEOS:
            columns.setdefault(field.name, pa.nulls(n, field.type))
        return pa.table(columns, schema=VIDEOS)

    def failures(self, ids: np.ndarray, run: str) -> pa.Table:
        n = len(ids)
        names = _names(ids)
        columns = {
            "video_id": names,
            "uri": np.char.add("/archive/", names.astype(str)).astype(object),
            "stage": np.full(n, "decode", dtype=object),
            "error_type": np.full(n, "UnreadableVideo", dtype=object),
            "message": np.full(n, "no video stream", dtype=object),
            "transient": np.zeros(n, dtype=bool),
            "size": np.full(n, 10, dtype=np.int64),
            "version": np.full(n, run[:8], dtype=object),
            "model": np.full(n, MODEL, dtype=object),
            "run_id": np.full(n, run, dtype=object),
        }
        return pa.table(columns, schema=FAILURES)


def _write(uri: str, schema: pa.Schema, tables, mode: str = "create") -> None:
    """Stream ``tables`` (an iterator of pa.Table) into the Lance dataset at ``uri``."""
    import lance

    # Batches of the size a run's commits have: Lance picks a page's encoding per batch,
    # and one batch of 250,000 list rows takes 2.7x the bytes and reads 5-10x slower.
    batches = (batch for table in tables for batch in table.to_batches(max_chunksize=8192))
    reader = pa.RecordBatchReader.from_batches(schema, batches)
    lance.write_dataset(reader, uri, schema=schema, mode=mode)


def _chunks(ids: np.ndarray, size: int):
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def build_labels(out: Path, videos: int, per_video: int, batch: int) -> dict:
    """The label index: settled rows of run A, indexes, then run B's 1 in 100 after."""
    from video_index.indexes import ensure_indexes
    from video_index.table import table_uri

    rows = Rows(per_video)
    ids = np.arange(videos)
    late = ids % 100 == 42  # committed after the index build
    first = ids[~late]
    ok = first[~is_failure(first)]
    started = time.monotonic()
    uri = str(out)
    clips = table_schema("clips")
    _write(table_uri(uri, "clips"), clips, (rows.clips(c, RUN_A) for c in _chunks(ok, batch)))
    _write(table_uri(uri, "videos"), VIDEOS, (rows.videos(c, RUN_A) for c in _chunks(ok, batch)))
    failed = first[is_failure(first)]
    _write(table_uri(str(out), "failures"), FAILURES, [rows.failures(failed, RUN_A)])
    written_s = time.monotonic() - started
    started = time.monotonic()
    built = ensure_indexes(str(out), vectors=False, min_rows=0)
    index_s = time.monotonic() - started
    tail = ids[late]
    late_clips = (rows.clips(c, RUN_B) for c in _chunks(tail, batch))
    _write(table_uri(str(out), "clips"), clips, late_clips, "append")
    _write(table_uri(str(out), "videos"), VIDEOS, [rows.videos(tail, RUN_B)], "append")
    return {
        "videos": int(len(ok) + len(tail)),
        "failures": int(len(failed)),
        "clips": int((len(ok) + len(tail)) * per_video),
        "clips_after_index_build": int(len(tail) * per_video),
        "write_s": round(written_s),
        "index_build_s": round(index_s),
        "indexes": built,
    }


def _embeddings(rng, centres: np.ndarray, videos: np.ndarray, per_video: int) -> np.ndarray:
    dim = centres.shape[1]
    which = centres[(videos * 7919) % len(centres)]
    vectors = np.repeat(which, per_video, 0)
    vectors += 0.35 * rng.standard_normal(vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float16)


def build_vectors(
    out: Path, clips: int, per_video: int, dim: int, batch: int, real: Optional[str] = None
) -> dict:
    """The embeddings index: ``clips`` embedded clips, IVF_PQ, then 1,000 more clips.
    ``real``: a ``.npy`` of real I3D embeddings (``bench_similar.py real``); the clips'
    vectors are then ``bench_similar.synthetic``'s real-derived ones, not clusters."""
    from video_index.indexes import ensure_indexes
    from video_index.table import table_uri

    rows = Rows(per_video, seed=1)
    rng = np.random.default_rng(2)
    if real:
        from bench_similar import synthetic

        base = np.load(real).astype(np.float32)
        dim = base.shape[1]
    else:
        base = None
        centres = rng.standard_normal((2000, dim)).astype(np.float32)
    schema = clips_schema(embedding_dim=dim)
    clips_table = table_schema("clips", schema)

    def clip_tables(ids, run):
        for chunk in _chunks(ids, batch):
            if base is None:
                vectors = _embeddings(rng, centres, chunk, per_video)
            else:
                start, count = int(chunk[0]) * per_video, len(chunk) * per_video
                vectors = synthetic(base, count, seed=0, start=start).astype(np.float16)
            flat = pa.array(vectors.ravel(), pa.float16())
            embedding = pa.FixedSizeListArray.from_arrays(flat, dim)
            yield rows.clips(chunk, run, schema, embedding=embedding)

    videos = clips // per_video
    late = 1000 // per_video
    ids = np.arange(videos + late)
    started = time.monotonic()
    _write(table_uri(str(out), "clips"), clips_table, clip_tables(ids[:videos], RUN_A))
    _write(table_uri(str(out), "videos"), VIDEOS, [rows.videos(ids[:videos], RUN_A)])
    written_s = time.monotonic() - started
    started = time.monotonic()
    built = ensure_indexes(str(out), vectors=True, min_rows=0)
    index_s = time.monotonic() - started
    _write(table_uri(str(out), "clips"), clips_table, clip_tables(ids[videos:], RUN_B), "append")
    _write(table_uri(str(out), "videos"), VIDEOS, [rows.videos(ids[videos:], RUN_B)], "append")
    return {
        "clips": int(len(ids) * per_video),
        "clips_after_index_build": int(late * per_video),
        "dim": dim,
        "write_s": round(written_s),
        "index_build_s": round(index_s),
        "indexes": built,
    }


# The search's SQL over a full scan of the clips: what `search` did before the prefilter.
SCAN_SEARCH = """
import sys
from beam_pipeline.query_cli import search_sql
from video_index.query import connect
con = connect(sys.argv[1])
kind = sys.argv[3]
rows = con.execute(search_sql([sys.argv[2]], kind), {"min_score": 0.5, "limit": 20}).fetchall()
print(len(rows), rows[:1])
"""

# `search --label` in one process, timed after the imports (a median of 3; the first
# also reads the files from disk where the OS has not cached them).
SEARCH_TIMED = """
import io, json, sys, time, contextlib
from beam_pipeline.query_cli import search_command
times = []
for _ in range(3):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        search_command([sys.argv[1], "--label", "playing cricket"], "video-index")
    times.append(time.perf_counter() - t)
print(json.dumps({"first_s": round(times[0], 2), "median_s": round(sorted(times)[1], 2)}))
"""

# In one process: recall@10 of the approximate search against the exact one (the query's
# own video left out, as `similar` does), latencies, at four search settings; and
# whether each clip committed after the index build is its own nearest.
RECALL = """
import json, sys, time
import numpy as np
from video_index import clip_vectors
out, ids, late = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
index = clip_vectors.ClipVectors(out)
key = lambda n: (n.video_id, n.clip_index)
queries, exact, exact_ms = [], [], []
for i in ids:
    video_id = f"v{i:07d}"
    clip = index.query_clip(video_id, 1.0)
    t = time.perf_counter()
    exact.append({key(n) for n in index.neighbours(clip.embedding, 10, video_id, exact=True)})
    exact_ms.append(1000 * (time.perf_counter() - t))
    queries.append((video_id, clip.embedding))
result = {"queries": len(ids), "exact_median_ms": round(float(np.median(exact_ms)), 1)}
for nprobes, refine in ((20, 10), (40, 20), (80, 50), (160, 100)):
    clip_vectors.NPROBES, clip_vectors.REFINE_FACTOR = nprobes, refine
    recalls, ms = [], []
    for (video_id, q), truth in zip(queries, exact):
        t = time.perf_counter()
        found = index.neighbours(q, 10, video_id)
        ms.append(1000 * (time.perf_counter() - t))
        recalls.append(len(truth & {key(n) for n in found}) / 10)
    result[f"nprobes {nprobes}, refine x{refine}"] = {
        "recall@10": round(float(np.mean(recalls)), 3),
        "median_ms": round(float(np.median(ms)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
    }
own = 0
for i in late:
    clip = index.query_clip(f"v{i:07d}", 1.0)
    own += key(index.neighbours(clip.embedding, 1)[0]) == (f"v{i:07d}", clip.clip_index)
result["committed_after_the_build_found_as_own_nearest"] = f"{own}/{len(late)}"
print(json.dumps(result))
"""


def measure(root: Path, args) -> dict:
    labels, vectors = str(root / "labels"), str(root / "vectors")
    vi = [sys.executable, "-m", "beam_pipeline"]
    counts_sql = (
        "SELECT (SELECT count(*) FROM videos) AS videos, (SELECT count(*) FROM clips) AS clips,"
        " (SELECT count(*) FROM failures) AS failures"
    )
    segments_sql = f"SELECT count(*) AS n FROM segments WHERE label = '{LABEL}'"
    videos = args.vector_clips // args.clips_per_video
    probe = [int(i) for i in np.linspace(0, videos - 1, 50)]
    late = list(range(videos, videos + 1000 // args.clips_per_video))
    scan = [sys.executable, "-c", SCAN_SEARCH, labels, LABEL]
    similar = [*vi, "similar", vectors, "--video", "v0000007", "--at", "1"]
    json_ = ["--format", "json"]
    commands = {}
    if args.videos:
        commands.update(
            {
                "search --label (events)": [*vi, "search", labels, "--label", LABEL],
                "search --label, full scan (events)": [*scan, "events"],
                "search --label --clips": [*vi, "search", labels, "--label", LABEL, "--clips"],
                "search --label --clips, full scan": [*scan, "clips"],
                "search --label, in one process": [sys.executable, "-c", SEARCH_TIMED, labels],
                "query counts": [*vi, "query", labels, counts_sql, "--format", "json"],
                "query segments of a label": [*vi, "query", labels, segments_sql, *json_],
                "show": [*vi, "show", labels],
            }
        )  # fmt: skip
    if args.vector_clips:
        commands.update(
            {
                "query counts, clips with embeddings": [*vi, "query", vectors, counts_sql, *json_],
                "show, clips with embeddings": [*vi, "show", vectors],
                "similar": similar,
                "similar --exact": [*similar, "--exact"],
                "similar recall and latency": [
                    sys.executable, "-c", RECALL, vectors, json.dumps(probe), json.dumps(late)
                ],
            }
        )  # fmt: skip
    results = {}
    for name, cmd in commands.items():
        result = timed(cmd)
        if name.endswith("full scan") or name.endswith("full scan (events)"):
            own = results[name.replace(", full scan", "")]
            own["full_scan_s"] = result["s"]
            own["full_scan_rss_mib"] = result["rss_mib"]
            own["ratio_to_full_scan"] = round(own["s"] / result["s"], 3)
        if name.startswith("query counts"):
            result["counts"] = json.loads(result["stdout"])[0]
        if name in ("similar recall and latency", "search --label, in one process"):
            result.update(json.loads(result["stdout"].strip().splitlines()[-1]))
        result.pop("stdout")
        results[name] = result
        more = {k: v for k, v in result.items() if k not in ("s", "rss_mib")}
        print(f"{name:<38} {result['s']:>7.2f} s  {result['rss_mib']:>6} MiB  {more}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=1_000_000, help="0: no label index")
    parser.add_argument("--clips-per-video", type=int, default=25)
    parser.add_argument("--vector-clips", type=int, default=1_000_000, help="0: no vectors")
    parser.add_argument("--dim", type=int, default=1024, help="embedding width (I3D: 1024)")
    parser.add_argument("--batch-videos", type=int, default=10_000)
    parser.add_argument("--dir", default="/tmp/bench-index-scale")
    parser.add_argument("--reuse", action="store_true", help="measure the indexes in --dir")
    parser.add_argument("--keep", action="store_true", help="keep the indexes afterwards")
    parser.add_argument("--build-only", action="store_true", help="build, measure nothing (keeps)")
    parser.add_argument(
        "--real-vectors",
        default=None,
        help="a .npy of real I3D embeddings (bench_similar.py real): real-derived vectors",
    )
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    if REPO in root.parents or root == REPO:
        parser.error("--dir must be outside the repository")
    built = {}
    if not args.reuse:
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        if args.videos:
            built["labels"] = build_labels(
                root / "labels", args.videos, args.clips_per_video, args.batch_videos
            )
            print(f"labels index: {built['labels']}", flush=True)
        if args.vector_clips:
            built["vectors"] = build_vectors(
                root / "vectors", args.vector_clips, args.clips_per_video, args.dim,
                max(1, args.batch_videos // 10),  # 1024-d float32 vectors: 10x the bytes
                args.real_vectors,
            )  # fmt: skip
            print(f"vectors index: {built['vectors']}", flush=True)
    if args.build_only:
        print(json.dumps({"args": vars(args), "built": built}))
        return
    results = measure(root, args)
    print(json.dumps({"args": vars(args), "built": built, "results": results}))
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
