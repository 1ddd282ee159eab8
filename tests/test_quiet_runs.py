"""Noise and last lines: a run without a fault prints no error lines, and a failed
command's last line is its reason. Each test was seen failing before its fix."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.helpers import clip_row, run_cli, video_row


def test_a_bucket_read_prints_no_asyncio_task_noise(gcs_emulator):
    """Reads through gcsfs: an index not yet upgraded, on gs://, read by DuckDB (an
    upgraded index is read by Lance's own object store)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from video_index.schemas import TABLES

    out = gcs_emulator.uri(f"quiet-{uuid.uuid4().hex[:8]}")
    for table, rows in (("clips", [clip_row("x", "r1", i) for i in range(3)]),
                        ("videos", [video_row("x", "r1")])):  # fmt: skip
        with gcs_emulator.fs.open(f"{out.split('://', 1)[1]}/{table}/r1.parquet", "wb") as f:
            pq.write_table(pa.Table.from_pylist(rows, schema=TABLES[table]), f)
    for args in (["query", out, "SELECT count(*) AS n FROM clips", "--format", "json"],
                 ["show", out]):  # fmt: skip
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        assert "Task was destroyed" not in done.stderr, done.stderr[-2000:]
        assert "ERROR" not in done.stderr, done.stderr[-2000:]
    assert json.loads(run_cli("query", out, "SELECT count(*) AS n FROM clips",
                              "--format", "json").stdout) == [{"n": 3}]  # fmt: skip


def test_a_failed_jobs_line_is_its_reason_not_a_traceback_caret():
    from beam_pipeline.models.prepare import last_line as _last_line

    # How Beam wraps a worker's error: the worker's traceback, text, inside the message.
    embedded = (
        "Traceback (most recent call last):\n"
        '  File "transforms/manifest.py", line 300, in process\n'
        "    for item in list_input(input_uri):\n"
        "OSError: Forbidden: gs://nobody-bucket/videos [while running 'ReadManifest/List']\n"
        '  File "video_index/storage.py", line 220, in retrying\n'
        "    return fn(*args, **kwargs)\n"
        "           ^^^^^^^^^^^^^^^^^^^\n"
        "  ~~~~~~^^^^^\n"
    )
    assert _last_line(RuntimeError(embedded)) == (
        "OSError: Forbidden: gs://nobody-bucket/videos [while running 'ReadManifest/List']"
    )
    assert _last_line(RuntimeError("no traceback\nsecond line")) == "second line"


@pytest.mark.parametrize(
    "missing, kind", [("size", "clip"), ("fps", "clip"), ("frames_per_clip", "clip"),
                      ("size", "frame_sequence"), ("fps", "stream")]  # fmt: skip
)
def test_a_spec_file_without_a_field_the_model_needs_is_one_clear_error(tmp_path, missing, kind):
    from beam_pipeline.models.spec import SpecError, spec_from_file

    fields = {"path": "m", "labels": ["a", "b"], "kind": kind, "size": 32, "fps": 10,
              "frames_per_clip": 8}  # fmt: skip
    if kind == "frame_sequence":
        fields.update(feature_model="cnn.keras", sequence_model="seq.keras", max_frames=8)
        del fields["frames_per_clip"]
    if kind == "stream":
        del fields["frames_per_clip"]
    complete = tmp_path / "complete.json"
    complete.write_text(json.dumps(fields))
    assert spec_from_file(str(complete)).size == 32
    del fields[missing]
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(fields))
    with pytest.raises(SpecError, match=f"missing '{missing}'") as raised:
        spec_from_file(str(spec_path))
    assert "\n" not in str(raised.value)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.mp4").write_bytes(b"x")
    done = run_cli("index", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o"),
                   "--model", str(spec_path))  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and f"missing '{missing}'" in lines[0], lines


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--input", "{local}", "--output", "gs://b/out", "--temp_location", "gs://b/tmp"],
         "--input"),
        (["--input", "gs://b/in", "--output", "{local}", "--temp_location", "gs://b/tmp"],
         "--output"),
        (["--input", "gs://b/in", "--output", "gs://b/out"], "--temp_location"),
    ],
)  # fmt: skip
def test_dataflow_with_paths_its_workers_cannot_reach_is_one_line(tmp_path, flags, named):
    args = [f.format(local=tmp_path) for f in flags]
    # A dry run may name local paths (it only translates: tests/test_scale_out.py).
    dry_run = ["--dry_run", "True"] if named == "--temp_location" else []
    done = run_cli("index", *args, "--runner", "DataflowRunner", *dry_run,
                   "--project", "p", "--region", "europe-west1", timeout=120)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and named in lines[0], done.stderr[-2000:]
