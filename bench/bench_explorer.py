"""The explorer site of a synthetic 1M-video index: time, memory, page sizes, and it opens.

    python bench/bench_explorer.py [--videos 1000000] [--clips-per-video 2]

Writes an index folder of ``--videos`` synthetic videos (``--clips-per-video`` clips
each, Kinetics-400 labels drawn at random, scores from a Dirichlet; no embeddings or
thumbnails: those are bounded per page by the same page size) plus 1 % failures, runs
``beam_pipeline.explorer.write_site`` on it in a child process (wall time, peak RSS),
and reports the number of pages and the largest page. Then loads ``index.html``, the
first and the last video page and the largest page in Debian's chromium (Playwright),
checking that each fires ``load`` with no console error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def write_index(out: Path, videos: int, per_video: int, per_file: int = 100_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from beam_pipeline.models.spec import packaged_labels
    from video_index.schemas import CLIPS, FAILURES, VIDEOS

    labels = np.asarray(packaged_labels("kinetics400"))
    rng = np.random.default_rng(0)
    for table in ("videos", "clips", "failures"):
        (out / table).mkdir(parents=True, exist_ok=True)

    def table_of(schema, columns, n):
        return pa.table(
            {f.name: columns.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema
        )

    for part, start in enumerate(range(0, videos, per_file)):
        n = min(per_file, videos - start)
        ids = [f"archive/{i // 1000:04d}/video-{i:07d}.mp4" for i in range(start, start + n)]
        uris = [f"gs://bucket/{v}" for v in ids]
        top = rng.integers(0, len(labels), (n, 3))
        probs = np.sort(rng.dirichlet(np.ones(5) * 0.3, n)[:, :3], axis=1)[:, ::-1]
        videos_columns = {
            "video_id": pa.array(ids),
            "uri": pa.array(uris),
            "duration_s": pa.array(np.full(n, per_video * 2.56)),
            "num_clips": pa.array(np.full(n, per_video, np.int32)),
            "labels": pa.array(labels[top].tolist(), pa.list_(pa.string())),
            "scores": pa.array(probs.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "model": pa.array(["synthetic"] * n),
            "run_id": pa.array(["run1"] * n),
        }
        pq.write_table(table_of(VIDEOS, videos_columns, n), out / "videos" / f"p{part:04d}.parquet")
        m = n * per_video
        clip_top = rng.integers(0, len(labels), (m, 3))
        clip_probs = np.sort(rng.dirichlet(np.ones(5) * 0.3, m)[:, :3], axis=1)[:, ::-1]
        index = np.tile(np.arange(per_video, dtype=np.int32), n)
        clips_columns = {
            "video_id": pa.array(np.repeat(ids, per_video).tolist()),
            "uri": pa.array(np.repeat(uris, per_video).tolist()),
            "clip_index": pa.array(index),
            "start_s": pa.array(index * 2.56),
            "end_s": pa.array(index * 2.56 + 2.56),
            "labels": pa.array(labels[clip_top].tolist(), pa.list_(pa.string())),
            "scores": pa.array(clip_probs.astype(np.float32).tolist(), pa.list_(pa.float32())),
            "model": pa.array(["synthetic"] * m),
            "run_id": pa.array(["run1"] * m),
        }
        pq.write_table(table_of(CLIPS, clips_columns, m), out / "clips" / f"p{part:04d}.parquet")
        f = n // 100
        failures_columns = {
            "video_id": pa.array([f"broken/{start + i:07d}.mp4" for i in range(f)]),
            "uri": pa.array([f"gs://bucket/broken/{start + i:07d}.mp4" for i in range(f)]),
            "stage": pa.array(["decode"] * f),
            "error_type": pa.array(["UnreadableVideo"] * f),
            "message": pa.array(["no decodable video stream"] * f),
            "model": pa.array(["synthetic"] * f),
            "run_id": pa.array(["run1"] * f),
        }
        pq.write_table(
            table_of(FAILURES, failures_columns, f), out / "failures" / f"p{part:04d}.parquet"
        )


_SITE = """
import json, resource, sys, time
from beam_pipeline.explorer import write_site
t = time.perf_counter()
result = write_site(sys.argv[1], sys.argv[2])
result["seconds"] = time.perf_counter() - t
result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def open_in_browser(pages: list[Path]) -> dict:
    from playwright.sync_api import sync_playwright

    opened = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"))
        for path in pages:
            page = browser.new_page()
            errors = []
            page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else None)
            t = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")
            opened[path.name if path.parent.name != "videos" else f"videos/{path.name}"] = {
                "load_s": round(time.perf_counter() - t, 2),
                "console_errors": len(errors),
                "elements": page.evaluate("document.getElementsByTagName('*').length"),
            }
            page.close()
        browser.close()
    return opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--clips-per-video", type=int, default=2)
    parser.add_argument("--tmp", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        out, site = Path(tmp) / "index", Path(tmp) / "site"
        t = time.perf_counter()
        write_index(out, args.videos, args.clips_per_video)
        written = time.perf_counter() - t
        done = subprocess.run(
            [sys.executable, "-c", _SITE, str(out), str(site)],
            capture_output=True, text=True, cwd=REPO,
        )  # fmt: skip
        if done.returncode:
            raise SystemExit(done.stderr[-3000:])
        result = json.loads(done.stdout.strip().splitlines()[-1])
        sizes = sorted((p.stat().st_size, p) for p in site.rglob("*.html"))
        video_pages = sorted((site / "videos").glob("*.html"))
        result.update(
            {
                "write_index_s": round(written, 1),
                "html_files": len(sizes),
                "site_bytes": sum(s for s, _ in sizes),
                "largest_page": str(sizes[-1][1].relative_to(site)),
                "index_html_bytes": (site / "index.html").stat().st_size,
                "opened": open_in_browser(
                    [site / "index.html", video_pages[0], video_pages[-1], sizes[-1][1]]
                ),
            }
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
