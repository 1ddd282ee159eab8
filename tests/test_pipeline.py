"""Whole graphs on a TestPipeline (tier 3): build_pipeline over generated videos.

The colour model (conftest) names a clip's dominant colour, so each video's label
is known before the run; the real I3D is exercised in test_cli.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.report import current_rows
from tests.helpers import make_config
from tests.media import COLOURS, write_colour_video
from transforms.video_io import DecodeLimits


@pytest.fixture
def colour_archive(tmp_path) -> Path:
    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 3.0)
    write_colour_video(archive / "green.mkv", COLOURS["green"], 0.5)  # shorter than a clip
    write_colour_video(archive / "blue.mkv", COLOURS["blue"], 1.6)
    (archive / "notes.mp4").write_text("this is not a video")
    (archive / "empty.webm").write_bytes(b"")
    return archive


def test_every_video_lands_in_exactly_one_table(colour_spec, colour_archive, tmp_path):
    out = tmp_path / "out"
    config = make_config(colour_spec, str(colour_archive), str(out))
    with TestPipeline() as p:
        build_pipeline(p, config)
    tables = current_rows(str(out))
    videos = {r["video_id"]: r for r in tables["videos"].to_pylist()}
    failures = {r["video_id"]: r for r in tables["failures"].to_pylist()}
    assert set(videos) == {"red.mkv", "green.mkv", "blue.mkv"}
    assert set(failures) == {"notes.mp4", "empty.webm"}
    for name, row in videos.items():
        assert row["labels"][0] == name.split(".")[0]
        assert row["scores"][0] > 0.9
        assert row["model"] == "colour" and row["run_id"] == "test-run"
    assert all(f["stage"] == "decode" and f["message"] for f in failures.values())
    # 3 s at 10 fps in 8-frame clips: 0-0.8, 0.8-1.6, 1.6-2.4 and one aligned to the end.
    red = sorted(
        (c["start_s"], c["end_s"])
        for c in tables["clips"].to_pylist()
        if c["video_id"] == "red.mkv"
    )
    expected = [(0.0, 0.8), (0.8, 1.6), (1.6, 2.4), (2.2, 3.0)]
    assert [t for pair in red for t in pair] == pytest.approx(
        [t for pair in expected for t in pair]
    )
    assert videos["red.mkv"]["num_clips"] == 4
    assert videos["green.mkv"]["num_clips"] == 1  # looped to fill one clip
    assert videos["red.mkv"]["duration_s"] == pytest.approx(3.0, abs=0.11)
    assert (videos["red.mkv"]["width"], videos["red.mkv"]["height"]) == (48, 32)


def test_decode_limits_become_failure_rows(colour_spec, colour_archive, tmp_path):
    out = tmp_path / "out"
    config = make_config(
        colour_spec, str(colour_archive), str(out), limits=DecodeLimits(max_duration_s=2.0)
    )
    with TestPipeline() as p:
        build_pipeline(p, config)
    tables = current_rows(str(out))
    failures = {r["video_id"]: r for r in tables["failures"].to_pylist()}
    assert failures["red.mkv"]["error_type"] == "DecodeLimitExceeded"
    assert "red.mkv" not in tables["clips"].column("video_id").to_pylist()
    assert {r["video_id"] for r in tables["videos"].to_pylist()} == {"green.mkv", "blue.mkv"}


def test_multiprocess_direct_runner_gives_the_same_index(colour_spec, colour_archive, tmp_path):
    import apache_beam as beam

    from beam_pipeline.runner import LocalRunner

    out = tmp_path / "out"
    config = make_config(colour_spec, str(colour_archive), str(out))
    options = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    with beam.Pipeline(runner=LocalRunner(), options=options) as p:
        build_pipeline(p, config)
    tables = current_rows(str(out))
    assert tables["videos"].num_rows == 3 and tables["failures"].num_rows == 2
    assert tables["clips"].num_rows == 4 + 1 + 2
