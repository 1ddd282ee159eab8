"""The video-index command: one-line errors, the models list, and a full local run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_cli


@pytest.mark.parametrize(
    "args, message",
    [
        (["index", "--output", "x"], "--input is required"),
        (["index", "--input", "/no/such/dir", "--output", "x"], "input not found"),
        (
            ["index", "--input", ".", "--output", "x", "--clip-strid-s", "2"],
            "unknown argument '--clip-strid-s'",
        ),
        (["index", "--input", ".", "--output", "x", "--top-k", "0"], "--top-k must be at least 1"),
        (
            ["index", "--input", ".", "--output", "x", "--top-k", "many"],
            "invalid int value: 'many'",
        ),
        (["index", "--input", ".", "--output", "x", "--model", "nope"], "unknown model 'nope'"),
        (["frobnicate"], "unknown command"),
        (["show", ".", "--top", "-3"], "--top must be at least 0"),
        (["show", ".", "--html-videos", "-1"], "--html-videos must be at least 0"),
        (["compact", "README.md"], "README.md is a file, not an index folder"),
        (["query", "README.md", "SELECT 1"], "README.md is a file, not an index folder"),
        (["show", "README.md"], "README.md is a file, not an index folder"),
        (["show", "tests"], "tests is not an index: it holds no videos/, clips/, failures/"),
        (["index", "--input", "/no/such/*.mp4", "--output", "x"], "/no/such/*.mp4 matches no file"),
        (
            ["index", "--input", "scripts", "--output", "x"],
            "--input scripts holds no video: its 1 file(s) have none of the --extensions",
        ),
        (
            ["index", "--input", "examples/media", "--output", "README.md"],
            "--output README.md is a file; give a folder for the index",
        ),
        (
            ["index", "--input", ".", "--output", "x", "--model-path", "tests"],
            "cannot find model i3d-kinetics-400 at tests: tests is a folder without a "
            "saved_model.pb",
        ),
        (
            ["index", "--input", ".", "--output", "x", "--model-path", "/nonexistent/i3d"],
            "cannot find model i3d-kinetics-400 at /nonexistent/i3d: /nonexistent/i3d does not exist",
        ),
        (
            [
                "index",
                "--input",
                ".",
                "--output",
                "x",
                "--model",
                "movinet-a0-stream",
                "--max-clips-per-video",
                "2",
                "--short-video",
                "loop",
            ],
            "--max-clips-per-video, --short-video: only for clip models; "
            "movinet-a0-stream is a stream model",
        ),
        (
            ["index", "--input", ".", "--output", "x", "--clips-per-shot", "0"],
            "--clips-per-shot must be >= 1, got 0",
        ),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args, message):
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_models_lists_every_registered_model():
    result = run_cli("models")
    assert result.returncode == 0
    for name in ["i3d-kinetics-400"] + [
        f"movinet-a{i}-{m}" for i in range(6) for m in ("base", "stream")
    ]:
        assert name in result.stdout
    rows = json.loads(run_cli("models", "--json").stdout)
    assert {r["name"]: r["size"] for r in rows}["movinet-a4-base"] == 290


def test_a_reader_that_goes_away_is_no_traceback():
    """`video-index models | head -1`: stdout's reader has gone before the command writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "beam_pipeline", "models"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_index_help_lists_flags():
    result = run_cli("index", "--help")
    assert result.returncode == 0 and "--clip-stride-s" in result.stdout


@pytest.mark.slow
def test_index_shared_media_with_i3d(media_dir, tmp_path):
    """The acceptance run: every input file lands in exactly one table."""
    out = tmp_path / "out"
    # Two clips per video keep the run to minutes; the accounting is what is tested.
    result = run_cli(
        "index", "--input", str(media_dir), "--output", str(out), "--max-clips-per-video", "2"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from beam_pipeline.report import current_rows
    from transforms.manifest import VIDEO_EXTENSIONS

    tables = current_rows(str(out))
    inputs = {
        str(p.relative_to(media_dir))
        for p in media_dir.rglob("*")
        if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
    }
    videos = {r["video_id"]: r for r in tables["videos"].to_pylist()}
    failures = {r["video_id"]: r for r in tables["failures"].to_pylist()}
    assert set(videos) | set(failures) == inputs
    assert not set(videos) & set(failures)
    for name in [
        "moviepy/result.webm",
        "derived/not_a_video.mp4",
        "derived/audio_only.mp4",
        "derived/truncated_moov_at_end.mp4",
    ]:
        assert failures[name]["stage"] == "decode" and failures[name]["message"], name
    for name in ["decord/corrupted.mp4", "derived/truncated_faststart.mp4"]:
        assert name in videos, failures.get(name)
    assert videos["kinetics-i3d/v_CricketShot_g04_c01_rgb.gif"]["labels"][0] == "playing cricket"
    assert videos["kinetics-i3d/v_CricketShot_g04_c01_rgb.gif"]["scores"][0] >= 0.9
    assert videos["mmaction2/test.mp4"]["labels"][0] == "cleaning pool"
    # The summary printed at the end agrees with the tables, and a run record exists.
    assert f"{len(videos)} videos indexed, {len(failures)} failed" in result.stdout
    (record,) = list((out / "runs").glob("*.json"))
    counts = json.loads(record.read_text())["counts"]
    assert (counts["videos"], counts["failures"]) == (len(videos), len(failures))


def test_several_inputs_are_all_indexed_and_an_empty_folder_is_refused(
    tmp_path, colour_spec_file
):
    from tests.media import COLOURS, write_colour_video

    first, second, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for folder in (first, second, empty):
        folder.mkdir()
    write_colour_video(first / "red.mkv", COLOURS["red"], 1.0)
    write_colour_video(second / "blue.mkv", COLOURS["blue"], 1.0)
    out = tmp_path / "out"
    model = ("--model", str(colour_spec_file))
    done = run_cli("index", "--input", str(first), "--input", str(second), "--output", str(out),
                   *model)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 videos indexed, 0 failed" in done.stdout
    refused = run_cli("index", "--input", str(first), "--input", str(empty), "--output",
                      str(tmp_path / "out2"), *model)  # fmt: skip
    assert refused.returncode == 2 and f"--input {empty} is an empty folder" in refused.stderr
    assert not (tmp_path / "out2").exists()


def test_show_prints_the_index_and_writes_an_html_report(tmp_path, colour_spec_file):
    from tests.media import COLOURS, write_colour_video

    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 2.0)
    (archive / "bad.mkv").write_text("nope")
    out = tmp_path / "out"
    result = run_cli(
        "index", "--input", str(archive), "--output", str(out), "--model", str(colour_spec_file)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 video indexed, 1 failed, 3 clips" in result.stdout
    shown = run_cli("show", str(out), "--html", str(tmp_path / "report.html"))
    assert shown.returncode == 0 and "red.mkv" in shown.stdout and "bad.mkv" in shown.stdout
    page = (tmp_path / "report.html").read_text()
    assert page.count("class=seg") == 3  # one timeline segment per clip
    assert "red 1.00" in page and "UnreadableVideo" in page
    assert run_cli("show", str(tmp_path / "nothing")).returncode == 2


@pytest.mark.parametrize("mode", ["local", "multi_processing"])
def test_a_run_prints_nothing_but_progress_and_the_summary(tmp_path, colour_spec_file, mode):
    """No TensorFlow start-up lines (cuInit on a machine without a GPU), no Beam log lines,
    in the local runner's default mode and in multi_processing."""
    from tests.helpers import RUNNER_MODES
    from tests.media import COLOURS, write_colour_video

    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 1.0)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "beam_pipeline", "index", "--input", str(archive), "--output",
         str(tmp_path / "out"), "--model", str(colour_spec_file), *RUNNER_MODES[mode]],
        cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # Abseil's RAW mutex check, printed by gRPC's fork handler straight to the worker's
    # file descriptor 2 (not a logger we can quiet), shows now and then in
    # multi_processing mode; it is not an error of the run.
    noise = [
        line
        for line in done.stderr.splitlines()
        if not line.startswith(("listed ", "[mutex.cc : "))
    ]
    assert noise == [], noise


@pytest.mark.slow
def test_ctrl_c_says_interrupted(tmp_path):
    """Ctrl-C (SIGINT to the job's process group) while I3D classifies the demo clips:
    one line, 'interrupted', exit status 130; not a step's or the model's failure (the
    interrupt lands inside RunInference, which Beam wraps in a RuntimeError)."""
    import signal

    from tests.helpers import DEMO_MEDIA

    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    job = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline", "index", "--input", str(DEMO_MEDIA),
         "--output", str(tmp_path / "out")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a terminal's default
    )  # fmt: skip
    lines = []
    for line in job.stderr:  # progress lines: wait until clips are being classified
        lines.append(line)
        if line.startswith("listed ") and " clips 0/" not in line:
            break
    os.killpg(job.pid, signal.SIGINT)
    rest = job.stderr.read()
    job.wait(timeout=300)
    errors = [line for line in rest.splitlines() if not line.startswith("listed ")]
    assert job.returncode == 130, (lines, rest)
    assert errors == ["video-index: interrupted"], errors


def test_ctrl_c_in_multi_processing_mode_says_interrupted_once(tmp_path, colour_spec_file):
    """Ctrl-C reaches the workers too (one process group): no worker's KeyboardInterrupt
    traceback, no launcher thread's "Worker subprocess exited", only the one line."""
    import glob
    import signal
    import time

    from tests.helpers import RUNNER_MODES
    from tests.media import COLOURS, write_colour_video

    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 60.0)
    (tmp_path / "tmp").mkdir()  # where the CLI's progress file will be
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path / "tmp")}
    job = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline", "index", "--input", str(archive), "--output",
         str(tmp_path / "out"), "--model", str(colour_spec_file),
         *RUNNER_MODES["multi_processing"]],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a terminal's default
    )  # fmt: skip

    def listed() -> bool:  # a worker has read the input: the workers are up
        return any(
            "listed" in open(path).read()
            for path in glob.glob(str(tmp_path / "tmp" / "*" / "progress"))
        )

    while not listed() and job.poll() is None:
        time.sleep(0.1)
    assert job.poll() is None, job.communicate()
    os.killpg(job.pid, signal.SIGINT)
    _, rest = job.communicate(timeout=300)
    errors = [line for line in rest.splitlines() if not line.startswith("listed ")]
    assert job.returncode == 130, rest[-3000:]
    assert errors == ["video-index: interrupted"], errors


def test_the_progress_line_moves_in_multi_processing_mode(tmp_path, colour_spec_file):
    """On a terminal the line is redrawn from the workers' counts while the job runs:
    some frame before the last shows a listed video (the workers are other processes)."""
    import pty

    from tests.helpers import RUNNER_MODES
    from tests.media import COLOURS, write_colour_video

    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 30.0)
    terminal, job_side = pty.openpty()  # stderr a terminal: the redrawn line, not a log line
    job = subprocess.Popen(
        [sys.executable, "-m", "beam_pipeline", "index", "--input", str(archive), "--output",
         str(tmp_path / "out"), "--model", str(colour_spec_file),
         *RUNNER_MODES["multi_processing"]],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
        stderr=job_side, text=True,
    )  # fmt: skip
    os.close(job_side)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the job closed its end
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    job.communicate(timeout=60)
    assert job.returncode == 0, shown[-2000:]
    frames = [f for f in shown.decode().replace("\n", "\r").split("\r") if f.startswith("listed ")]
    assert frames[-1].startswith("listed 1 | decoded 1 | indexed 1"), frames[-1]
    assert any(not f.startswith("listed 0 ") for f in frames[:-1]), frames
