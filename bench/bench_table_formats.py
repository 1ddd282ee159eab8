"""The table-format spike (not a test): Lance, Delta Lake and Iceberg on one synthetic index.

    python bench/bench_table_formats.py --videos 20000 --dir /tmp/bench-formats [--dim 128]
        [--formats lance,delta,iceberg] [--writers 4] [--s3]

Builds the synthetic index of ``bench/bench_query.py`` (run A indexes every video, run
B re-indexes 1 in 20, run C is killed after 10 clips of 1 in 100, 1 in 1000 videos
committed twice by a retried bundle) and puts the same rows into each format, then
measures, side by side in this one run:

- ``load``: the runs appended as commits (one commit per ``--commit-rows`` rows);
- ``supersede``: the standing rule as table operations: a changed video's older rows
  and the killed run's orphan clips deleted, the retried bundle's repeats removed;
  then DuckDB, Polars and pyarrow, with no code of ours, count the standing rows;
- ``retry``: a bundle committed again as a merge on its key (idempotent: no new rows);
- ``writers``: ``--writers`` processes committing at once (local disk; ``--s3`` also
  on moto's S3 server), each its own rows: rows lost or doubled, commits that failed;
- ``reader during compaction``: a reader on the current snapshot, opened again and
  counted in a loop while another process compacts: wrong counts and errors;
- ``compaction``: files before and after, then old files removed by the library with
  a retention window (a reader pinned to an old version still reads inside it);
- ``time travel``: the index as of the end of run A;
- ``damage``: the metadata (``_versions/``, ``_delta_log/``, the catalog's metadata
  file) removed, a stray Parquet file, a truncated data file: what a reader says;
- ``label search``: clips with a label (with a scalar index where the format has one);
- ``vector search``: an ANN index over clip embeddings (clustered synthetic vectors,
  ``--dim``), recall@10 against exact, latency, and rows appended after the build;
- ``install``: the package's size on disk with its own dependencies.

Prints one JSON object; ``docs/table-format.md`` holds a run of it with the command.
Lance is a product requirement; the others are installed for this script only:
``pip install deltalake==1.6.6 'pyiceberg[sql-sqlite]==0.12.0' polars==2.1.0``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import bench_query  # noqa: E402  (the synthetic index)

TABLES = ("videos", "clips", "failures")
KEY = {"videos": ["video_id", "uri"], "failures": ["video_id", "uri"]}
KEY["clips"] = ["video_id", "uri", "clip_index"]


# ------------------------------------------------------------------------ formats


class Lance:
    name = "lance"

    def __init__(self, root: Path, storage_options: dict | None = None, uri: str | None = None):
        import lance

        self.lance = lance
        self.base = uri or str(root / "lance")
        self.options = storage_options

    def uri(self, table: str) -> str:
        return f"{self.base}/{table}.lance"

    def ds(self, table: str, version=None):
        return self.lance.dataset(self.uri(table), version=version, storage_options=self.options)

    def append(self, table: str, data: pa.Table) -> None:
        mode = "append" if self.exists(table) else "create"
        self.lance.write_dataset(data, self.uri(table), mode=mode, storage_options=self.options)

    def exists(self, table: str) -> bool:
        try:
            self.ds(table)
            return True
        except (ValueError, FileNotFoundError, OSError):
            return False

    def delete(self, table: str, predicate: str) -> None:
        self.ds(table).delete(predicate)

    def merge(self, table: str, data: pa.Table) -> None:
        ds = self.ds(table)
        ds.merge_insert(KEY[table]).when_not_matched_insert_all().execute(data)

    def version(self, table: str) -> int:
        return self.ds(table).version

    def count(self, table: str, version=None) -> int:
        return self.ds(table, version).count_rows()

    def arrow(self, table: str, columns=None):
        return self.ds(table).scanner(columns=columns)

    def pyarrow_dataset(self, table: str):
        return self.ds(table)  # a LanceDataset is a pyarrow Dataset

    def polars_count(self, table: str) -> int:
        import polars as pl

        return pl.scan_pyarrow_dataset(self.ds(table)).select(pl.len()).collect().item()

    def files(self, table: str) -> int:
        return sum(len(f.data_files()) for f in self.ds(table).get_fragments())

    def compact(self, table: str) -> None:
        self.ds(table).optimize.compact_files()

    def cleanup(self, table: str, older_than_s: float) -> int:
        stats = self.ds(table).cleanup_old_versions(older_than=timedelta(seconds=older_than_s))
        return stats.old_versions

    def metadata(self, table: str) -> Path:
        return Path(self.uri(table)) / "_versions"

    def data_dir(self, table: str) -> Path:
        return Path(self.uri(table)) / "data"

    def label_index(self, table: str) -> None:
        self.ds(table).create_scalar_index("labels", "LABEL_LIST")

    def label_query(self, table: str, label: str) -> int:
        return self.ds(table).count_rows(filter=f"array_has_any(labels, ['{label}'])")


class Delta:
    name = "delta"

    def __init__(self, root: Path, storage_options: dict | None = None, uri: str | None = None):
        import deltalake

        self.dl = deltalake
        self.base = uri or str(root / "delta")
        self.options = storage_options

    def uri(self, table: str) -> str:
        return f"{self.base}/{table}"

    def dt(self, table: str, version=None):
        return self.dl.DeltaTable(self.uri(table), version=version, storage_options=self.options)

    def exists(self, table: str) -> bool:
        return self.dl.DeltaTable.is_deltatable(self.uri(table), storage_options=self.options)

    def append(self, table: str, data: pa.Table) -> None:
        self.dl.write_deltalake(
            self.uri(table), _no_half(data), mode="append", storage_options=self.options
        )

    def delete(self, table: str, predicate: str) -> None:
        self.dt(table).delete(predicate)

    def merge(self, table: str, data: pa.Table) -> None:
        on = " AND ".join(f"s.{k} = t.{k}" for k in KEY[table])
        dt = self.dt(table)
        dt.merge(
            _no_half(data), on, source_alias="s", target_alias="t"
        ).when_not_matched_insert_all().execute()

    def version(self, table: str) -> int:
        return self.dt(table).version()

    def count(self, table: str, version=None) -> int:
        return self.dt(table, version).to_pyarrow_dataset().count_rows()

    def pyarrow_dataset(self, table: str):
        return self.dt(table).to_pyarrow_dataset()

    def polars_count(self, table: str) -> int:
        import polars as pl

        return pl.scan_delta(self.uri(table)).select(pl.len()).collect().item()

    def files(self, table: str) -> int:
        return len(self.dt(table).file_uris())

    def compact(self, table: str) -> None:
        self.dt(table).optimize.compact()

    def cleanup(self, table: str, older_than_s: float) -> int:
        hours = older_than_s / 3600
        removed = self.dt(table).vacuum(
            retention_hours=int(hours), enforce_retention_duration=False, dry_run=False
        )
        return len(removed)

    def metadata(self, table: str) -> Path:
        return Path(self.uri(table)) / "_delta_log"

    def data_dir(self, table: str) -> Path:
        return Path(self.uri(table))

    def label_index(self, table: str) -> None:
        return None  # Delta has no secondary indexes (file statistics only)

    def label_query(self, table: str, label: str) -> int:
        import duckdb

        con = duckdb.connect()
        con.register("data", self.pyarrow_dataset(table))
        sql = f"SELECT count(*) FROM data WHERE list_has_any(labels, ['{label}'])"
        return con.sql(sql).fetchall()[0][0]


class Iceberg:
    name = "iceberg"

    def __init__(self, root: Path, storage_options: dict | None = None, uri: str | None = None):
        from pyiceberg.catalog.sql import SqlCatalog

        self.root = root / "iceberg"
        self.root.mkdir(parents=True, exist_ok=True)
        self.catalog = SqlCatalog(
            "bench", uri=f"sqlite:///{self.root}/catalog.db", warehouse=f"file://{self.root}"
        )
        try:
            self.catalog.create_namespace("idx")
        except Exception:  # noqa: BLE001 - exists
            pass

    def tbl(self, table: str):
        return self.catalog.load_table(f"idx.{table}")

    def exists(self, table: str) -> bool:
        return self.catalog.table_exists(f"idx.{table}")

    def append(self, table: str, data: pa.Table) -> None:
        data = _no_half(data)
        if not self.exists(table):
            self.catalog.create_table(f"idx.{table}", schema=_nullable(data.schema))
        self.tbl(table).append(data.cast(_nullable(data.schema)))

    def delete(self, table: str, predicate: str) -> None:
        self.tbl(table).delete(predicate)

    def merge(self, table: str, data: pa.Table) -> None:
        data = _no_half(data)
        self.tbl(table).upsert(
            data.cast(_nullable(data.schema)), join_cols=KEY[table], when_matched_update_all=False
        )

    def version(self, table: str) -> int:
        return self.tbl(table).current_snapshot().snapshot_id

    def count(self, table: str, version=None) -> int:
        return self.tbl(table).scan(snapshot_id=version).to_arrow().num_rows

    def pyarrow_dataset(self, table: str):
        return self.tbl(table).scan().to_arrow()  # pyiceberg gives a table, not a dataset

    def polars_count(self, table: str) -> int:
        import polars as pl

        return pl.scan_iceberg(self.tbl(table)).select(pl.len()).collect().item()

    def files(self, table: str) -> int:
        return len(list(self.tbl(table).scan().plan_files()))

    def compact(self, table: str) -> None:
        raise NotImplementedError("pyiceberg 0.12 has no data-file compaction")

    def cleanup(self, table: str, older_than_s: float) -> int:
        tbl = self.tbl(table)
        from datetime import datetime, timezone

        cutoff = datetime.now(timezone.utc) - timedelta(seconds=older_than_s)
        tbl.maintenance.expire_snapshots().older_than(cutoff).commit()
        return -1  # expiry drops snapshots from the metadata; no orphan-file removal

    def metadata(self, table: str) -> Path:
        return Path(self.tbl(table).metadata_location.removeprefix("file://"))

    def data_dir(self, table: str) -> Path:
        return self.root / "idx" / table / "data"

    def label_index(self, table: str) -> None:
        return None  # no secondary indexes in Iceberg

    def label_query(self, table: str, label: str) -> int:
        import duckdb

        con = duckdb.connect()
        con.register("data", self.tbl(table).scan(selected_fields=("labels",)).to_arrow())
        sql = f"SELECT count(*) FROM data WHERE list_has_any(labels, ['{label}'])"
        return con.sql(sql).fetchall()[0][0]


FORMATS = {"lance": Lance, "delta": Delta, "iceberg": Iceberg}


def _no_half(data: pa.Table) -> pa.Table:
    """float16 is not a Delta or Iceberg type: their embeddings are float32."""
    for i, field in enumerate(data.schema):
        if pa.types.is_fixed_size_list(field.type) and field.type.value_type == pa.float16():
            new = pa.list_(pa.float32(), field.type.list_size)
            data = data.set_column(i, pa.field(field.name, new), data.column(i).cast(new))
    return data


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


# ---------------------------------------------------------------------- helpers


def _timed(fn, *args):
    started = time.perf_counter()
    value = fn(*args)
    return value, round(time.perf_counter() - started, 3)


def _run_tables(parquet: Path, run: str, table: str) -> pa.Table | None:
    files = sorted((parquet / table).glob(f"{run}-*.parquet"))
    return pads.dataset(files).to_table() if files else None


def _chunks(data: pa.Table, rows: int):
    for start in range(0, data.num_rows, rows):
        yield data.slice(start, rows)


def _dedupe(data: pa.Table, table: str) -> pa.Table:
    import duckdb

    keys = ", ".join(KEY[table])
    con = duckdb.connect()
    sql = f"SELECT * FROM data QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
    return con.sql(sql).to_arrow_table()


def _install_mib(*packages: str) -> float:
    import importlib.util

    total = 0
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            total += sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return round(total / 2**20, 1)


INSTALL = {
    "lance": ("lance", "lance_namespace", "lance_namespace_urllib3_client"),
    "delta": ("deltalake", "arro3"),
    "iceberg": ("pyiceberg", "sqlalchemy", "pyroaring", "strictyaml", "pydantic", "rich"),
}


# ------------------------------------------------------------------ measurements


def load(fmt, parquet: Path, commit_rows: int) -> dict:
    """Runs A, B, C appended in order, as the job commits them; returns timings."""
    started = time.perf_counter()
    commits, versions = 0, {}
    for run in (bench_query.RUN_A, bench_query.RUN_B, bench_query.RUN_C):
        for table in TABLES:
            data = _run_tables(parquet, run, table)
            if data is None:
                continue
            for chunk in _chunks(data, commit_rows):
                fmt.append(table, chunk)
                commits += 1
        if run == bench_query.RUN_A:
            versions = {t: fmt.version(t) for t in TABLES if fmt.exists(t)}
    return {
        "s": round(time.perf_counter() - started, 1),
        "commits": commits,
        "after_run_a": versions,
    }


def supersede(fmt, parquet: Path, standing: dict) -> dict:
    """The standing rule in the table: old rows of re-indexed videos, orphans, repeats."""
    again = _run_tables(parquet, bench_query.RUN_B, "videos").column("video_id").to_pylist()
    listed = ", ".join(f"'{v}'" for v in again)
    out = {}
    started = time.perf_counter()
    for table in ("videos", "clips"):
        fmt.delete(table, f"run_id = '{bench_query.RUN_A}' AND video_id IN ({listed})")
    fmt.delete("clips", f"run_id = '{bench_query.RUN_C}'")
    out["delete_s"] = round(time.perf_counter() - started, 2)
    # A retried bundle's repeats: the product never writes them (commits merge on the
    # key); here the rows of repeated videos are rewritten once.
    started = time.perf_counter()
    again_set = set(again)
    repeated = [f"v{i:07d}" for i in range(5, standing["num_videos"], 1000)]
    repeated = [v for v in repeated if int(v[1:]) % 100 != 7 and v not in again_set]
    rep = ", ".join(f"'{v}'" for v in repeated)
    import duckdb
    import pyarrow.compute as pc

    for table in ("videos", "clips"):
        data = fmt.pyarrow_dataset(table)
        subset = pc.field("video_id").isin(repeated)
        if isinstance(data, pa.Table):
            rows = data.filter(subset)
        else:
            try:
                rows = data.to_table(filter=subset)
            except pa.ArrowNotImplementedError as error:  # delta-rs statistics vs pyarrow
                out["pyarrow_filter_error"] = f"{type(error).__name__}: {error}"[:160]
                rows = data.to_table().filter(subset)
        con = duckdb.connect()
        keep = con.sql(
            f"SELECT * FROM rows QUALIFY row_number() OVER (PARTITION BY {', '.join(KEY[table])}) = 1"
        ).to_arrow_table()
        fmt.delete(table, f"video_id IN ({rep})")
        fmt.append(table, keep.cast(rows.schema))
    out["dedupe_s"] = round(time.perf_counter() - started, 2)
    out["counts"] = engine_counts(fmt)
    out["counts_right"] = all(
        out["counts"][engine][t] == standing[t] for engine in out["counts"] for t in TABLES
    )
    return out


def _schema_of(fmt, table: str, data: pa.Table) -> pa.Schema:
    ds = fmt.pyarrow_dataset(table)
    schema = ds.schema
    return pa.schema([schema.field(n) for n in data.column_names])


def engine_counts(fmt) -> dict:
    import duckdb

    counts = {"pyarrow": {}, "duckdb": {}, "polars": {}}
    for table in TABLES:
        data = fmt.pyarrow_dataset(table)
        counts["pyarrow"][table] = (
            data.count_rows() if hasattr(data, "count_rows") else data.num_rows
        )
        con = duckdb.connect()
        column = "video_id"
        if hasattr(data, "scanner"):
            data = data.scanner(columns=[column])  # DuckDB cannot bind float16 columns
        counts["duckdb"][table] = con.sql(f"SELECT count({column}) FROM data").fetchall()[0][0]
        counts["polars"][table] = fmt.polars_count(table)
    return counts


def retry(fmt, parquet: Path) -> dict:
    """A bundle committed twice: merged on the key, the second commit adds nothing."""
    before = fmt.count("clips")
    bundle = _dedupe(_run_tables(parquet, bench_query.RUN_A, "clips").slice(0, 5000), "clips")
    bundle = bundle.cast(_schema_of(fmt, "clips", bundle))
    _, seconds = _timed(fmt.merge, "clips", bundle)
    return {"merge_s": seconds, "rows_added": fmt.count("clips") - before}


def _writer(fmt_name: str, root: str, options, uri, index: int, commits: int, rows: int, q):
    fmt = FORMATS[fmt_name](Path(root), options, uri)
    failed = 0
    for commit in range(commits):
        data = pa.table(
            {
                "writer": pa.array([index] * rows, pa.int32()),
                "commit": pa.array([commit] * rows, pa.int32()),
                "row": pa.array(np.arange(rows, dtype=np.int32)),
            }
        )
        try:
            fmt.append("concurrent", data)
        except Exception as error:  # noqa: BLE001 - counted
            failed += 1
            q.put(f"{type(error).__name__}: {str(error)[:200]}")
    q.put(failed)


def writers(fmt_name: str, root: Path, count: int, options=None, uri=None) -> dict:
    """``count`` processes append at once, each ``commits`` commits of its own rows."""
    fmt = FORMATS[fmt_name](root, options, uri)
    seed = pa.table(
        {"writer": pa.array([-1], pa.int32()), "commit": pa.array([0], pa.int32()),
         "row": pa.array([0], pa.int32())}
    )  # fmt: skip
    fmt.append("concurrent", seed)
    commits, rows = 5, 1000
    q = multiprocessing.get_context("spawn").Queue()
    procs = [
        multiprocessing.get_context("spawn").Process(
            target=_writer, args=(fmt_name, str(root), options, uri, i, commits, rows, q)
        )
        for i in range(count)
    ]
    started = time.perf_counter()
    for p in procs:
        p.start()
    failed, errors = 0, []
    for _ in procs:
        while True:
            item = q.get()
            if isinstance(item, int):
                failed += item
                break
            errors.append(item)
    for p in procs:
        p.join()
    seconds = round(time.perf_counter() - started, 2)
    data = fmt.pyarrow_dataset("concurrent")
    table = data.to_table() if hasattr(data, "to_table") else data
    distinct = len(
        {
            (w, c, r)
            for w, c, r in zip(*(table.column(n).to_pylist() for n in ("writer", "commit", "row")))
        }
    )
    expected = count * commits * rows + 1
    return {
        "s": seconds,
        "commits_failed": failed,
        "rows": table.num_rows,
        "expected_rows": expected,
        "lost": expected - distinct,
        "doubled": table.num_rows - distinct,
        "first_error": errors[0] if errors else None,
    }


_COMPACT_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import bench_table_formats as b
fmt = b.FORMATS[sys.argv[1]](Path(sys.argv[2]))
for table in ("clips", "videos"):
    fmt.compact(table)
print("done")
"""


def reader_during_compaction(fmt_name: str, root: Path) -> dict:
    """Counts read in a loop (each on a fresh snapshot) while a child compacts."""
    fmt = FORMATS[fmt_name](root)
    expected = fmt.count("clips")
    files_before = fmt.files("clips")
    child = subprocess.Popen(
        [sys.executable, "-c", _COMPACT_CHILD, fmt_name, str(root), str(REPO / "bench")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reads, wrong, errors, first = 0, 0, 0, None
    started = time.perf_counter()
    while child.poll() is None:
        try:
            got = fmt.count("clips")
            reads += 1
            wrong += got != expected
        except Exception as error:  # noqa: BLE001 - counted
            errors += 1
            first = first or f"{type(error).__name__}: {str(error)[:200]}"
    seconds = round(time.perf_counter() - started, 2)
    _, err = child.communicate()
    if child.returncode:
        return {"compaction": f"failed: {err.strip().splitlines()[-1][:200]}", "reads": reads}
    return {
        "compaction_s": seconds,
        "files_before": files_before,
        "files_after": fmt.files("clips"),
        "reads": reads,
        "wrong_counts": wrong,
        "errors": errors,
        "first_error": first,
        "count_after": fmt.count("clips") == expected,
    }


def retention(fmt, old_version) -> dict:
    """Old files removed by the library, inside and past a retention window."""
    out = {}
    before = fmt.count("clips", old_version)
    _, out["cleanup_1h_s"] = _timed(fmt.cleanup, "clips", 3600)
    try:
        out["old_version_readable_within_1h"] = fmt.count("clips", old_version) == before
    except Exception as error:  # noqa: BLE001
        out["old_version_readable_within_1h"] = f"{type(error).__name__}"
    removed, out["cleanup_0s_s"] = _timed(fmt.cleanup, "clips", 0)
    out["removed_at_0s"] = removed
    try:
        fmt.count("clips", old_version)
        out["old_version_after_0s"] = "readable"
    except Exception as error:  # noqa: BLE001
        out["old_version_after_0s"] = f"gone ({type(error).__name__})"
    return out


def damage(fmt_name: str, root: Path) -> dict:
    """On a copy of the clips table: metadata removed, a stray file, a truncated file."""
    out = {}
    fmt = FORMATS[fmt_name](root)
    expected = fmt.count("failures")
    data = fmt.data_dir("failures")
    # A stray Parquet file in the data folder.
    stray = data / "stray.parquet"
    pq.write_table(pa.table({"x": [1]}), stray)
    try:
        out["stray_file"] = "ignored" if fmt.count("failures") == expected else "counted"
    except Exception as error:  # noqa: BLE001
        out["stray_file"] = f"error: {type(error).__name__}"
    stray.unlink()
    # A truncated data file.
    victim = max((p for p in data.rglob("*") if p.is_file() and p.suffix in (".lance", ".parquet")),
                 key=lambda p: p.stat().st_size)  # fmt: skip
    saved = victim.read_bytes()
    victim.write_bytes(saved[: len(saved) // 2])
    try:
        got = fmt.count("failures")
        fmt.polars_count("failures")
        con_rows = fmt.pyarrow_dataset("failures")
        (con_rows.to_table() if hasattr(con_rows, "to_table") else con_rows)
        out["truncated_file"] = f"no error, {got} rows"
    except Exception as error:  # noqa: BLE001
        text = str(error)
        out["truncated_file"] = f"{type(error).__name__}, names the file: {victim.name in text}"
    victim.write_bytes(saved)
    # The metadata removed (a sync that skips _-prefixed paths does this).
    meta = fmt.metadata("failures")
    hidden = meta.with_name(meta.name + ".hidden")
    meta.rename(hidden)
    try:
        got = FORMATS[fmt_name](root).count("failures")
        out["metadata_removed"] = f"read {got} rows" + (" (EMPTY)" if got == 0 else "")
    except Exception as error:  # noqa: BLE001
        out["metadata_removed"] = f"error: {type(error).__name__}"
    hidden.rename(meta)
    return out


def label_search(fmt, labels: list[str]) -> dict:
    out = {}
    times = []
    for label in labels:
        _, seconds = _timed(fmt.label_query, "clips", label)
        times.append(seconds)
    out["scan_median_s"] = float(np.median(times))
    _, seconds = _timed(fmt.label_index, "clips")
    if fmt.name == "lance":
        out["index_build_s"] = seconds
        times = [_timed(fmt.label_query, "clips", label)[1] for label in labels]
        out["indexed_median_s"] = float(np.median(times))
    else:
        out["index"] = "none in the format"
    return out


def clustered(count: int, dim: int, seed: int, centres: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), count)
    vectors = centres[which] + 0.35 * rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def vector_search(root: Path, clips: int, dim: int) -> dict:
    """Lance only: IVF_PQ over clip embeddings; recall@10, latency, rows added after."""
    import lance

    rng = np.random.default_rng(1)
    centres = rng.standard_normal((2000, dim)).astype(np.float32)
    vectors = clustered(clips, dim, 2, centres).astype(np.float16)
    data = pa.table(
        {
            "clip": pa.array(np.arange(clips, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        }
    )
    uri = str(root / "vectors.lance")
    ds = lance.write_dataset(data, uri)
    partitions = max(16, int(np.sqrt(clips)))
    _, build = _timed(
        lambda: ds.create_index("embedding", "IVF_PQ", metric="cosine", num_partitions=partitions,
                                num_sub_vectors=dim // 8)  # fmt: skip
    )
    # Rows appended after the build: not in the index, searched exactly (fast_search off).
    extra = clustered(1000, dim, 3, centres).astype(np.float16)
    lance.write_dataset(
        pa.table({"clip": pa.array(np.arange(clips, clips + 1000, dtype=np.int64)),
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(extra.ravel()), dim)}),
        uri, mode="append",
    )  # fmt: skip
    ds = lance.dataset(uri)
    everything = np.concatenate([vectors, extra]).astype(np.float32)
    queries = list(range(0, clips, clips // 50)) + [clips + i for i in range(0, 1000, 100)]
    truths = {q: set(np.argsort(-(everything @ everything[q]))[:10].tolist()) for q in queries}
    searches = {}
    for nprobes, refine in ((20, 5), (60, 10), (150, 20)):
        recalls, times, found_new = [], [], 0
        for q in queries:
            started = time.perf_counter()
            hits = ds.to_table(
                columns=["clip"],
                nearest={"column": "embedding", "q": everything[q], "k": 10,
                         "metric": "cosine", "nprobes": nprobes, "refine_factor": refine},
            )  # fmt: skip
            times.append(time.perf_counter() - started)
            got = set(hits.column("clip").to_pylist())
            recalls.append(len(got & truths[q]) / 10)
            found_new += q >= clips and q in got
        searches[f"nprobes {nprobes}, refine x{refine}"] = {
            "recall@10": round(float(np.mean(recalls)), 3),
            "median_ms": round(1000 * float(np.median(times)), 1),
            "appended_after_build_found_as_own_nearest": f"{found_new}/10",
        }
    return {
        "clips": clips,
        "dim": dim,
        "index": f"IVF_PQ {partitions} lists, {dim // 8} sub-vectors",
        "build_s": build,
        "searches": searches,
    }


def s3_writers(formats: list[str], root: Path, count: int) -> dict:
    """The writers trial on moto's S3 server (conditional PUT decides commits)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    results = {}
    for name in formats:
        options = {
            "aws_endpoint": endpoint,
            "allow_http": "true",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
        }
        if name == "delta":
            options["conditional_put"] = "etag"  # delta-rs: S3 commits by conditional PUT
        if name == "iceberg":
            results[name] = "not measured: the sqlite catalog is not shared by workers"
            continue
        try:
            results[name] = writers(name, root / f"s3-{name}", count, options, f"s3://bench/{name}")
        except Exception as error:  # noqa: BLE001
            results[name] = f"{type(error).__name__}: {str(error)[:300]}"
    server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=20000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-formats"))
    parser.add_argument("--formats", default="lance,delta,iceberg")
    parser.add_argument("--commit-rows", type=int, default=100_000)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--vector-clips", type=int, default=200_000)
    parser.add_argument("--s3", action="store_true")
    parser.add_argument("--vectors-only", action="store_true", help="only the vector search")
    args = parser.parse_args()
    if args.vectors_only:
        shutil.rmtree(args.dir, ignore_errors=True)
        args.dir.mkdir(parents=True)
        print(json.dumps(vector_search(args.dir, args.vector_clips, args.dim), indent=1))
        return
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    parquet = args.dir / "parquet"
    standing = bench_query.generate(parquet, args.videos)
    standing["num_videos"] = args.videos
    formats = args.formats.split(",")
    results = {"videos": args.videos, "standing": standing, "formats": {}}
    labels = [
        "playing cricket",
        "dancing ballet",
        "riding a bike",
        "juggling balls",
        "surfing water",
    ]
    for name in formats:
        fmt = FORMATS[name](args.dir)
        r = results["formats"][name] = {"install_mib": _install_mib(*INSTALL[name])}
        r["load"] = load(fmt, parquet, args.commit_rows)
        r["files_after_load"] = fmt.files("clips")
        r["supersede"] = supersede(fmt, parquet, standing)
        r["retry"] = retry(fmt, parquet)
        r["writers_local"] = writers(name, args.dir, args.writers)
        old = r["load"]["after_run_a"].get("clips")
        try:
            r["reader_during_compaction"] = reader_during_compaction(name, args.dir)
        except NotImplementedError as error:
            r["reader_during_compaction"] = str(error)
        r["time_travel_after_run_a"] = fmt.count("clips", old)
        r["retention"] = retention(fmt, old)
        r["damage"] = damage(name, args.dir)
        r["label_search"] = label_search(fmt, labels)
        print(json.dumps({name: r}), file=sys.stderr, flush=True)
    if "lance" in formats:
        results["vector_search_lance"] = vector_search(args.dir, args.vector_clips, args.dim)
    if args.s3:
        results["writers_s3"] = s3_writers(formats, args.dir, args.writers)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
