"""Clip embeddings and ``similar`` at scale: precision, storage, recall, latency, memory.

    python bench/bench_similar.py real  [--stride-s 1.0]      # real I3D embeddings
    python bench/bench_similar.py pick  [--clips 20000]       # usearch vs faiss, same data
                                                              # (pip install usearch==2.26.6)
    python bench/bench_similar.py scale [--clips 1000000]     # the product path at 1M clips

``real``: I3D embeddings (float32) of the clips of the videos in ``../shared/media``
(clip starts ``--stride-s`` apart); recall@10 of the float16 neighbours against the
float32 ones (each clip a query, cosine, its own video left out); bytes per clip of
the ``embedding`` column as zstd Parquet in float16 and float32; thumbnail bytes and
encode time per clip beside the decode time of that clip. Saves the float32
embeddings to ``--vectors`` for the other modes.

``pick`` and ``scale`` use real-derived synthetic embeddings: ``--clips`` vectors in
groups of 20 ("videos"), each group around a centre that mixes two random real
embeddings (weight uniform in [0, 1]), each vector the centre plus Gaussian noise of
0.25 x the per-dimension spread of the real set, clipped at 0 as ReLU features are.
``pick`` builds usearch's HNSW (int8) and faiss's IVF (int8 codes) on the same vectors.
``scale`` writes them as an index folder (float16 ``embedding`` column), builds the
approximate index with the product's code (``video_index.nearest.build_ann_index``) in
a child process (time, peak RSS), then queries it in another child (recall@10
against an exact float32 scan of the stored float16 vectors, latency, peak RSS), and
times the exact DuckDB scan (``exact_neighbours``) the same way.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"
GROUP = 20  # synthetic clips per synthetic video
K = 10


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found)]))


def _top_k_other_video(vectors: np.ndarray, videos: np.ndarray, queries: np.ndarray, k: int):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit[queries] @ unit.T
    sims[videos[queries][:, None] == videos[None, :]] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


# ----------------------------------------------------------------------------- real


def real(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipeline.models.clip_model import ClipModel
    from beam_pipeline.models.registry import resolve_model
    from transforms.reading import read_clips
    from transforms.thumbnails import encode_thumbnail
    from transforms.video_io import DecodeLimits

    spec = resolve_model("i3d-kinetics-400")
    sampling = spec.clip_sampling(stride_s=args.stride_s)
    # --reuse: the embeddings of an earlier run (same media, same stride); decode and
    # thumbnails are measured again, the model is not run.
    model = None if args.reuse else ClipModel.load(spec, embeddings=True)
    names = sorted(
        str(p.relative_to(SHARED / "media"))
        for p in (SHARED / "media").rglob("*")
        if p.suffix in (".mp4", ".gif", ".mkv", ".webm", ".avi", ".mov")
        and "derived" not in p.parts
    )
    embeddings, videos, thumbs, thumb_s, decode_s = [], [], [], [], []
    for video, name in enumerate(names):
        try:
            started = time.process_time()
            with read_clips(
                str(SHARED / "media" / name), sampling, spec.frame_spec(), DecodeLimits()
            ) as reader:
                for clip in reader:
                    decoded = time.process_time()
                    decode_s.append(decoded - started)
                    thumbs.append(encode_thumbnail(clip.frames))
                    thumb_s.append(time.process_time() - decoded)
                    if model is not None:
                        _, vector = model.predict_with_embedding(clip.frames[None])
                        embeddings.append(vector[0])
                    videos.append(video)
                    started = time.process_time()
        except Exception as error:  # noqa: BLE001 - a bad test file is skipped, said so
            print(f"skipped {name}: {type(error).__name__}", file=sys.stderr)
    if model is None:
        vectors = np.load(args.vectors)
        assert len(vectors) == len(videos), "--reuse: the media or stride changed"
    else:
        vectors = np.stack(embeddings)
        np.save(args.vectors, vectors)
    videos = np.asarray(videos)
    queries = np.arange(len(vectors))
    k = min(K, len(vectors) - np.bincount(videos).max())
    f32 = _top_k_other_video(vectors, videos, queries, k)
    f16 = _top_k_other_video(vectors.astype(np.float16).astype(np.float32), videos, queries, k)
    sizes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, dtype in (("float16", np.float16), ("float32", np.float32)):
            flat = pa.array(vectors.astype(dtype).ravel())
            column = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])
            pq.write_table(pa.table({"embedding": column}), f"{tmp}/e.parquet", compression="zstd")
            sizes[name] = Path(f"{tmp}/e.parquet").stat().st_size / len(vectors)
    return {
        "videos": len(names),
        "clips": len(vectors),
        "stride_s": args.stride_s,
        f"recall@{k} float16 vs float32": _recall(f32, f16),
        "same order of the first 10 (share of queries)": float(np.mean((f32 == f16).all(axis=1))),
        "embedding bytes/clip, zstd parquet": {n: round(v) for n, v in sizes.items()},
        "thumbnail bytes/clip": {
            "mean": round(statistics.mean(len(t) for t in thumbs)),
            "max": max(len(t) for t in thumbs),
        },
        "thumbnail encode ms/clip (cpu)": round(1000 * statistics.median(thumb_s), 2),
        "decode+resample+crop ms/clip (cpu)": round(1000 * statistics.median(decode_s), 1),
    }


# ------------------------------------------------------------------------ synthetic


def synthetic(real_vectors: np.ndarray, count: int, seed: int, start: int = 0) -> np.ndarray:
    """Vectors ``start .. start + count`` of the synthetic set (deterministic by group)."""
    spread = real_vectors.std(axis=0)
    out = np.empty((count, real_vectors.shape[1]), np.float32)
    first_group, last_group = start // GROUP, (start + count - 1) // GROUP
    for group in range(first_group, last_group + 1):
        rng = np.random.default_rng((seed, group))
        a, b = rng.integers(0, len(real_vectors), 2)
        w = rng.random()
        centre = w * real_vectors[a] + (1 - w) * real_vectors[b]
        members = centre + rng.normal(0, 1, (GROUP, len(centre))) * 0.25 * spread
        lo = max(start, group * GROUP)
        hi = min(start + count, (group + 1) * GROUP)
        out[lo - start : hi - start] = np.maximum(
            members[lo - group * GROUP : hi - group * GROUP], 0
        )
    return out


def pick(args) -> dict:
    """usearch HNSW (int8) against faiss IVF (int8 codes), same vectors, both threads."""
    import faiss
    from usearch.index import Index

    base = np.load(args.vectors)
    vectors = synthetic(base, args.clips, args.seed)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.random.default_rng(args.seed).choice(len(vectors), args.queries, replace=False)
    truth = np.argsort(-(unit[queries] @ unit.T), axis=1)[:, :K]
    results = {}
    for name in ("usearch-hnsw-i8", "faiss-ivf-sq8"):
        started = time.perf_counter()
        if name == "usearch-hnsw-i8":
            index = Index(
                ndim=unit.shape[1],
                metric="cos",
                dtype="i8",
                connectivity=16,
                expansion_add=128,
                expansion_search=256,
            )
            index.add(np.arange(len(unit), dtype=np.uint64), unit, threads=2)
            built = time.perf_counter() - started
            t0 = time.perf_counter()
            found = np.stack([index.search(unit[q], K).keys for q in queries])
        else:
            lists = max(1, min(1024, len(unit) // 1000))
            index = faiss.IndexIVFScalarQuantizer(
                faiss.IndexFlatIP(unit.shape[1]),
                unit.shape[1],
                lists,
                faiss.ScalarQuantizer.QT_8bit,
                faiss.METRIC_INNER_PRODUCT,
            )
            index.train(unit[: lists * 40])
            index.add(unit)
            built = time.perf_counter() - started
            index.nprobe = 32
            t0 = time.perf_counter()
            found = np.stack([index.search(unit[q : q + 1], K)[1][0] for q in queries])
        per_query = (time.perf_counter() - t0) / len(queries)
        results[name] = {
            "build_s": round(built, 1),
            "clips_added_per_s": round(len(unit) / built),
            "recall@10 (no re-rank)": round(_recall(truth, found), 4),
            "query_ms": round(1000 * per_query, 2),
        }
        del index
    return {"clips": args.clips, "queries": args.queries, **results}


# ---------------------------------------------------------------------------- scale


def _write_index(out: Path, base: np.ndarray, clips: int, seed: int, per_file: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from video_index.schemas import VIDEOS, clips_schema

    schema = clips_schema(base.shape[1], thumbnails=False)
    for table in ("videos", "clips"):
        (out / table).mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, clips, per_file)):
        count = min(per_file, clips - start)
        vectors = synthetic(base, count, seed, start).astype(np.float16)
        ids = np.arange(start, start + count)
        video_ids = [f"v{i // GROUP:07d}" for i in ids]
        index_in_video = (ids % GROUP).astype(np.int32)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), base.shape[1])
        columns = {
            "video_id": pa.array(video_ids),
            "uri": pa.array([f"file:///archive/{v}.mp4" for v in video_ids]),
            "clip_index": pa.array(index_in_video),
            "start_s": pa.array(index_in_video * 2.56),
            "end_s": pa.array(index_in_video * 2.56 + 2.56),
            "labels": pa.array([["x"]] * count, pa.list_(pa.string())),
            "scores": pa.array([[1.0]] * count, pa.list_(pa.float32())),
            "model": pa.array(["synthetic"] * count),
            "run_id": pa.array(["run1"] * count),
            "embedding": embedding,
        }
        pq.write_table(
            pa.table(columns, schema=schema),
            out / "clips" / f"part-{part:04d}.parquet",
            compression="zstd",
        )
        first = [i for i in range(count) if index_in_video[i] == 0]
        videos = pa.table(
            {
                "video_id": pa.array([video_ids[i] for i in first]),
                "uri": pa.array([f"file:///archive/{video_ids[i]}.mp4" for i in first]),
                "num_clips": pa.array([GROUP] * len(first), pa.int32()),
                "model": pa.array(["synthetic"] * len(first)),
                "run_id": pa.array(["run1"] * len(first)),
            }
        )
        columns = {
            f.name: (
                videos.column(f.name)
                if f.name in videos.column_names
                else pa.nulls(len(first), f.type)
            )
            for f in VIDEOS
        }
        pq.write_table(
            pa.table(columns, schema=VIDEOS), out / "videos" / f"part-{part:04d}.parquet"
        )


def _child(code: str, *argv: str) -> tuple[dict, float]:
    """Run ``code`` in a fresh Python; returns (its JSON result, its peak RSS in MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: children run largest-last
    # is not guaranteed, so each child also reports its own.
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result, result.pop("peak_rss_mib", max(before, peak) / 1024)


_PEAK = (
    "import resource; PEAK = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
)

_BUILD = _PEAK + """
import json, sys, time
from video_index.nearest import build_ann_index
t = time.perf_counter()
n = build_ann_index(sys.argv[1])
print(json.dumps({"clips": n, "build_s": time.perf_counter() - t, "peak_rss_mib": PEAK()}))
"""

_QUERY = _PEAK + """
import json, sys, time
import numpy as np
from video_index.nearest import ann_neighbours, ann_state
out, queries = sys.argv[1], json.loads(sys.argv[2])
assert ann_state(out) is None
vectors = np.load(sys.argv[3])
found, times = [], []
for q, video in zip(vectors, queries["videos"]):
    t = time.perf_counter()
    hits = ann_neighbours(out, q, 10, exclude_video=video)
    times.append(time.perf_counter() - t)
    found.append([[h.video_id, h.clip_index] for h in hits])
print(json.dumps({"found": found, "times": times, "peak_rss_mib": PEAK()}))
"""

_EXACT = _PEAK + """
import json, sys, time
import numpy as np
from video_index.nearest import connect, exact_neighbours
con = connect(sys.argv[1])
vectors = np.load(sys.argv[3])
videos = json.loads(sys.argv[2])["videos"]
times, found = [], []
for q, video in zip(vectors, videos):
    t = time.perf_counter()
    hits = exact_neighbours(con, q, 10, exclude_video=video)
    times.append(time.perf_counter() - t)
    found.append([[h.video_id, h.clip_index] for h in hits])
print(json.dumps({"found": found, "times": times, "peak_rss_mib": PEAK()}))
"""


def scale(args) -> dict:
    base = np.load(args.vectors)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out = Path(tmp) / "index"
        t = time.perf_counter()
        _write_index(out, base, args.clips, args.seed, args.per_file)
        write_s = time.perf_counter() - t
        disk = sum(p.stat().st_size for p in (out / "clips").glob("*.parquet"))
        built, build_rss = _child(_BUILD, str(out))
        index_bytes = {
            p.name: p.stat().st_size for p in (out / "_similar").iterdir() if p.is_file()
        }
        rng = np.random.default_rng(args.seed + 1)
        ids = np.sort(rng.choice(args.clips, args.queries, replace=False))
        stored = np.concatenate([synthetic(base, 1, args.seed, int(i)) for i in ids])
        stored = stored.astype(np.float16).astype(np.float32)
        videos = [f"v{i // GROUP:07d}" for i in ids]
        # Exact truth: a float32 scan of the stored float16 vectors, in chunks.
        unit_q = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        best = np.full((len(ids), K), -np.inf)
        best_id = np.zeros((len(ids), K), np.int64)
        for start in range(0, args.clips, args.per_file):
            count = min(args.per_file, args.clips - start)
            chunk = synthetic(base, count, args.seed, start).astype(np.float16).astype(np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            sims = unit_q @ chunk.T
            own = (ids[:, None] // GROUP) == ((start + np.arange(count))[None, :] // GROUP)
            sims[own] = -np.inf
            sims = np.concatenate([best, sims], axis=1)
            idx = np.concatenate(
                [best_id, start + np.arange(count)[None, :].repeat(len(ids), 0)], 1
            )
            order = np.argsort(-sims, axis=1)[:, :K]
            best = np.take_along_axis(sims, order, 1)
            best_id = np.take_along_axis(idx, order, 1)
        truth = [[[f"v{i // GROUP:07d}", int(i % GROUP)] for i in row] for row in best_id]
        query_file = Path(tmp) / "queries.npy"
        np.save(query_file, stored)
        ann, ann_rss = _child(_QUERY, str(out), json.dumps({"videos": videos}), str(query_file))
        np.save(query_file, stored[: args.exact_queries])
        exact, exact_rss = _child(
            _EXACT, str(out), json.dumps({"videos": videos[: args.exact_queries]}), str(query_file)
        )

    def recall(found):
        return _recall(
            [[tuple(x) for x in t] for t in truth[: len(found)]],
            [[tuple(x) for x in f] for f in found],
        )

    def ms(times):
        times = sorted(times)
        return {
            "p50": round(1000 * times[len(times) // 2], 1),
            "p95": round(1000 * times[int(len(times) * 0.95)], 1),
        }

    return {
        "clips": args.clips,
        "dim": int(base.shape[1]),
        "write_index_s": round(write_s, 1),
        "clips_parquet_bytes": disk,
        "ann": {
            "build_s": round(built["build_s"], 1),
            "build_peak_rss_mib": round(build_rss),
            "index_bytes": index_bytes,
            f"recall@{K}": round(recall(ann["found"]), 4),
            "query_ms": ms(ann["times"]),
            "query_peak_rss_mib": round(ann_rss),
            "queries": len(ids),
        },
        "exact_duckdb": {
            f"recall@{K}": round(recall(exact["found"]), 4),
            "query_ms": ms(exact["times"]),
            "peak_rss_mib": round(exact_rss),
            "queries": args.exact_queries,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("real", "pick", "scale"))
    parser.add_argument(
        "--vectors", default=str(Path(tempfile.gettempdir()) / "i3d_embeddings.npy")
    )
    parser.add_argument("--stride-s", type=float, default=1.0)
    parser.add_argument("--reuse", action="store_true", help="real: reuse --vectors")
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exact-queries", type=int, default=5)
    parser.add_argument("--per-file", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="where the synthetic index is written")
    args = parser.parse_args()
    if args.clips is None:
        args.clips = {"pick": 20_000, "scale": 1_000_000}.get(args.mode, 0)
    result = {"real": real, "pick": pick, "scale": scale}[args.mode](args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
