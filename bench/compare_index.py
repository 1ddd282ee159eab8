"""Compare two index outputs row for row: the check that a refactor changed no result.

    python bench/compare_index.py REFERENCE_DIR CANDIDATE_DIR
    python bench/compare_index.py REFERENCE_DIR --run OUT [--input DIR] [-- index flags...]

The second form first runs ``video-index index --input DIR --output OUT
--max-clips-per-video 2`` (flags after ``--`` replace the last two) with the code of
this checkout, into a new folder OUT, then compares. ``DIR`` defaults to
``../shared/media`` as an absolute path; give the reference run the same string (it
is written in the run record). Exit 0 when equal, 1 with the differences.

What is compared: every row of ``videos/``, ``clips/`` and ``failures/`` (all their
Parquet files, ``_``-prefixed paths skipped as every reader does), keyed by
``(video_id, clip_index)`` for clips and ``video_id`` for the others, every column
compared exactly (floats and scores bit for bit), except:

- ``run_id``: a new one per run, by design;
- in the run record (``runs/RUN_ID.json``, one per output): ``run_id``, ``output``
  (a different folder), ``elapsed_s`` (wall-clock time) and ``versions`` (the
  environment: the libraries the product has imported, not a result); every other key
  (input, model, parameters, counts) must be equal.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq

IGNORED_COLUMNS = ("run_id",)
KEYS = {"videos": ("video_id",), "clips": ("video_id", "clip_index"), "failures": ("video_id",)}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEDIA = os.path.join(
    os.environ.get("VIDEO_INDEX_SHARED", os.path.dirname(REPO) + "/shared"), "media"
)


def read_rows(output: str, table: str) -> dict[tuple, dict]:
    """Rows of one table keyed by its key columns; raises ValueError on a repeated key."""
    rows: dict[tuple, dict] = {}
    for path in sorted(glob.glob(os.path.join(output, table, "*.parquet"))):
        for row in pq.read_table(path).to_pylist():
            for column in IGNORED_COLUMNS:
                row.pop(column, None)
            key = tuple(row[k] for k in KEYS[table])
            if key in rows:
                raise ValueError(f"{output}/{table}: key {key} written twice")
            rows[key] = row
    return rows


RUN_RECORD_IGNORED = ("run_id", "output", "elapsed_s", "versions")


def run_records(output: str) -> list[dict]:
    """The output's run records, less the keys that differ per run by design."""
    records = []
    for path in sorted(glob.glob(os.path.join(output, "runs", "*.json"))):
        with open(path) as f:
            record = json.load(f)
        records.append({k: v for k, v in record.items() if k not in RUN_RECORD_IGNORED})
    return records


def compare(reference: str, candidate: str) -> list[str]:
    """Differences between two outputs, one line each; empty when equal."""
    problems = []
    for table in KEYS:
        ref, cand = read_rows(reference, table), read_rows(candidate, table)
        for key in sorted(set(ref) - set(cand), key=repr):
            problems.append(f"{table} {key}: only in the reference")
        for key in sorted(set(cand) - set(ref), key=repr):
            problems.append(f"{table} {key}: only in the candidate")
        for key in sorted(set(ref) & set(cand), key=repr):
            for column in sorted(set(ref[key]) | set(cand[key])):
                if ref[key].get(column) != cand[key].get(column):
                    problems.append(
                        f"{table} {key} {column}: {ref[key].get(column)!r} != "
                        f"{cand[key].get(column)!r}"
                    )
        print(f"{table}: {len(ref)} reference rows, {len(cand)} candidate rows")
    ref_runs, cand_runs = run_records(reference), run_records(candidate)
    if ref_runs != cand_runs:
        problems.append(f"runs/*.json: {ref_runs} != {cand_runs}")
    print(f"runs: {len(ref_runs)} reference records, {len(cand_runs)} candidate records")
    return problems


def main(argv: list[str]) -> int:
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("candidate", nargs="?")
    parser.add_argument("--run", metavar="OUT", help="index --input into OUT first")
    parser.add_argument("--input", default=MEDIA, help=f"what --run indexes (default {MEDIA})")
    args = parser.parse_args(argv)
    candidate = args.candidate or args.run
    if candidate is None:
        parser.error("give CANDIDATE_DIR or --run OUT")
    if args.run:
        if os.path.exists(args.run):
            parser.error(f"{args.run} exists: --run writes a new folder")
        flags = extra or ["--max-clips-per-video", "2"]
        cmd = [sys.executable, "-m", "beam_pipeline", "index", "--input", args.input]
        env = {**os.environ, "PYTHONPATH": REPO}  # this checkout's code, wherever it runs
        subprocess.run(cmd + ["--output", args.run] + flags, check=True, cwd=REPO, env=env)
    problems = compare(args.reference, candidate)
    for line in problems:
        print(line)
    print("equal row for row (run_id aside)" if not problems else f"{len(problems)} differences")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
