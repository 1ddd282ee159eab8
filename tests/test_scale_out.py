"""Scale out unchanged: the same pipeline on Dataflow, Flink and a portable runner.

As far as this machine (no GCP, no Docker, no Maven Central) can check it:

* Dataflow: the GPU job is translated offline with ``--dry_run=True`` and the flags
  ``run_dataflow.sh`` uses; the translation is read back (stage names, the worker
  container, the accelerator service option, one SDK process per VM, the staged
  ``setup.py`` sdist, the worker pool). Nothing is submitted.
* Fusion: frames never cross a shuffle (decode → RunInference is one fused stage on
  every runner) and the shuffle that spreads decode moves only the small refs.
* PortableRunner: the CLI runs the real pipeline through Beam's job API
  (``--job_endpoint=embed``) into an EXTERNAL worker pool in another process, the
  way a Flink TaskManager's sidecar runs it.
* Flink: its job server is a Java jar from Maven Central, so ``run_flink.sh`` runs
  with Beam's Python job service standing in for that jar (through Beam's own
  ``--job_server_java_launcher`` hook): the FlinkRunner client, the job-server
  launch with the jar, artifact staging and the EXTERNAL worker pool are real;
  Flink itself is not.
* The launch scripts: ``--help``, ``build-image`` and ``run_dataflow.sh --dry-run``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    WorkerOptions,
)
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from beam_pipeline.options import IndexConfig
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.report import current_rows
from beam_pipeline.runner import runner_for
from tests.helpers import REPO, make_config
from tests.media import COLOURS, write_colour_video

IMAGE = "us-central1-docker.pkg.dev/test-project/video-index/worker:test"
ACCELERATOR = "worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver"
STAGES = ("ReadManifest", "DecodeClips", "ClassifyClips", "Summarise", "WriteIndex")
GBK = common_urns.primitives.GROUP_BY_KEY.urn
PAR_DO = common_urns.primitives.PAR_DO.urn
RESHUFFLE = common_urns.composites.RESHUFFLE.urn
# The jobs below index two tiny videos in 10-15 s here; the timeout only bounds a hang.
JOB_TIMEOUT_S = 180
VENV_BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- fixtures


def _subprocess_env(**extra: str) -> dict[str, str]:
    """This interpreter's venv first on PATH (the worker pool starts `python` from
    PATH), the repo importable, TensorFlow quiet."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


class WorkerPool(NamedTuple):
    address: str
    log: Path


@pytest.fixture
def worker_pool(tmp_path):
    """``worker_pool_main`` in its own process group, as a Flink sidecar runs it."""
    port = _free_port()
    log = tmp_path / "worker_pool.log"
    with log.open("w") as log_file:
        pool = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.worker.worker_pool_main",
                f"--service_port={port}",
            ],
            env=_subprocess_env(),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,  # its SDK workers share the group: one kill ends all
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if pool.poll() is not None:
                pytest.fail(f"worker pool exited with {pool.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("worker pool did not listen within 60 s")
                time.sleep(0.2)
        yield WorkerPool(f"localhost:{port}", log)
    finally:
        _end_process_group(pool)


def _end_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the pool's process group (the pool and the SDK workers it started),
    then SIGKILL whatever is left of it."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.fixture
def small_archive(tmp_path) -> Path:
    """Two lossless solid-colour videos and one file that only claims to be a video."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 1.6)  # two 0.8 s clips
    write_colour_video(archive / "blue.mkv", COLOURS["blue"], 0.8)  # one clip
    (archive / "notes.mp4").write_text("this is not a video")
    return archive


@pytest.fixture
def colour_spec_file(colour_spec, colour_model_dir, tmp_path) -> Path:
    """The conftest colour model as a ``--model`` spec file: its own small clip
    contract (32 px, 10 fps, 8 frames), where a bare SavedModel directory would get
    I3D's (224 px, 64 frames at 25 fps) and take longer for the same answer."""
    path = tmp_path / "colour.json"
    path.write_text(
        json.dumps(
            {
                "name": colour_spec.name,
                "path": str(colour_model_dir),
                "label_file": str(colour_model_dir / "labels.txt"),
                "size": colour_spec.size,
                "fps": colour_spec.fps,
                "frames_per_clip": colour_spec.frames_per_clip,
                "max_batch_size": colour_spec.max_batch_size,
            }
        )
    )
    return path


def _run(cmd: list[str], env: dict[str, str], timeout: float = JOB_TIMEOUT_S):
    try:
        return subprocess.run(
            cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"{cmd[:4]} ran past {timeout} s; stderr tail: {(expired.stderr or b'')[-2000:]!r}"
        )


# --------------------------------------------------------------------------- the graph


class Graph:
    """A pipeline proto's leaf transforms, with who produces and consumes what."""

    def __init__(self, proto: beam_runner_api_pb2.Pipeline):
        self.transforms = proto.components.transforms
        self.leaves = {tid: t for tid, t in self.transforms.items() if not t.subtransforms}
        self.parent: dict[str, str] = {}
        for tid, t in self.transforms.items():
            for child in t.subtransforms:
                self.parent[child] = tid
        self.producer: dict[str, str] = {}
        self.consumers: dict[str, list[str]] = defaultdict(list)
        for tid, t in self.leaves.items():
            for pcoll in t.outputs.values():
                self.producer[pcoll] = tid
            for pcoll in t.inputs.values():
                self.consumers[pcoll].append(tid)

    def name(self, tid: str) -> str:
        return self.transforms[tid].unique_name

    def under(self, tid: str, *stages: str) -> bool:
        """Whether ``tid`` is one of ``stages`` or inside one."""
        name = self.name(tid)
        return name in stages or name.startswith(tuple(f"{stage}/" for stage in stages))

    def in_reshuffle(self, tid: str) -> bool:
        while tid in self.parent:
            tid = self.parent[tid]
            if self.transforms[tid].spec.urn == RESHUFFLE:
                return True
        return False

    def shuffles(self, tid: str) -> bool:
        """A GroupByKey, or a stateful ParDo (a runner partitions its input by key)."""
        spec = self.transforms[tid].spec
        if spec.urn == GBK:
            return True
        if spec.urn == PAR_DO:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(spec.payload)
            return bool(payload.state_specs or payload.timer_family_specs)
        return False


def assert_frames_stay_fused(proto: beam_runner_api_pb2.Pipeline) -> None:
    """No shuffle from decode to the model; the shuffle before decode is a Reshuffle."""
    graph = Graph(proto)
    decode = [tid for tid in graph.leaves if graph.under(tid, "DecodeClips")]
    assert decode, "no DecodeClips transforms in the graph"

    # Downstream: everything that frames reach inside DecodeClips, Thumbnails (a Map
    # between them) and ClassifyClips, and the first transform past them (where only
    # logits or failures arrive).
    seen, stack, exits = set(decode), list(decode), set()
    while stack:
        tid = stack.pop()
        for pcoll in graph.leaves[tid].outputs.values():
            for consumer in graph.consumers.get(pcoll, ()):
                if consumer in seen:
                    continue
                seen.add(consumer)
                if graph.under(consumer, "DecodeClips", "Thumbnails", "ClassifyClips"):
                    stack.append(consumer)
                else:
                    exits.add(consumer)
    crossed = sorted(graph.name(t) for t in seen if graph.shuffles(t) or graph.in_reshuffle(t))
    assert not crossed, f"frames cross a shuffle at {crossed}"
    reached = [graph.name(t) for t in seen if graph.under(t, "ClassifyClips")]
    assert any(
        name.startswith("ClassifyClips/RunInference/") for name in reached
    ), f"decoded clips do not reach RunInference inside the fused stage: {reached}"

    # Upstream: walking back from decode's input, the first shuffle on every path is
    # inside a Reshuffle (ReadManifest's, over refs), and there is one.
    starts = [
        graph.producer[pcoll]
        for tid in decode
        for pcoll in graph.leaves[tid].inputs.values()
        if pcoll in graph.producer and not graph.under(graph.producer[pcoll], "DecodeClips")
    ]
    assert starts, "DecodeClips has no input"
    first_shuffles, stack, seen = set(), list(starts), set(starts)
    while stack:
        tid = stack.pop()
        if graph.shuffles(tid):
            first_shuffles.add(tid)
            continue
        for pcoll in graph.leaves[tid].inputs.values():
            producer = graph.producer.get(pcoll)
            if producer is not None and producer not in seen:
                seen.add(producer)
                stack.append(producer)
    assert first_shuffles, "no shuffle before DecodeClips: decode would not spread over workers"
    not_reshuffles = sorted(graph.name(t) for t in first_shuffles if not graph.in_reshuffle(t))
    assert (
        not not_reshuffles
    ), f"the shuffle in front of DecodeClips is not a Reshuffle: {not_reshuffles}"


def test_frames_never_cross_a_shuffle(colour_spec, tmp_path):
    (tmp_path / "in").mkdir()
    p = beam.Pipeline(options=PipelineOptions([]))
    build_pipeline(p, make_config(colour_spec, str(tmp_path / "in"), str(tmp_path / "out")))
    assert_frames_stay_fused(p.to_runner_api())


# --------------------------------------------------------------------------- Dataflow


def test_dataflow_dry_run_translates_the_gpu_job(colour_model_dir, tmp_path):
    pytest.importorskip("apitools", reason="needs apache-beam[gcp] (requirements-test.txt)")
    from apache_beam.runners.dataflow.internal import apiclient

    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")  # an input that matches nothing is refused
    options = PipelineOptions(
        [
            "--runner=DataflowRunner",
            "--dry_run=True",
            "--project=test-project",
            "--region=us-central1",
            "--temp_location=gs://test-bucket/tmp",
            "--staging_location=gs://test-bucket/staging",
            "--job_name=video-index-dry-run",
            f"--sdk_container_image={IMAGE}",
            f"--dataflow_service_options={ACCELERATOR}",
            "--experiments=no_use_multiple_sdk_containers",
            f"--setup_file={REPO / 'setup.py'}",
            "--machine_type=n1-standard-8",
            "--disk_size_gb=100",
            "--max_num_workers=4",
            f"--input={tmp_path / 'videos'}",
            "--output=gs://test-bucket/index",
            f"--model={colour_model_dir}",
            f"--label-file={colour_model_dir / 'labels.txt'}",
            "--run-id=dry-run",
        ]
    )
    p = beam.Pipeline(runner=runner_for(options), options=options)
    build_pipeline(p, IndexConfig.from_options(options))
    result = p.run()  # --dry_run: translated and staged locally, not submitted
    job = result.job
    assert job.proto.name == "video-index-dry-run"
    assert job.proto.type_ == apiclient.dataflow.JobType.JOB_TYPE_BATCH

    # The translated pipeline: every stage, under the names the Dataflow UI shows.
    names = {t.unique_name for t in job.proto_pipeline.components.transforms.values()}
    assert set(STAGES) <= names, sorted(names)
    assert "ClassifyClips/RunInference" in names
    assert_frames_stay_fused(job.proto_pipeline)

    # One Docker environment, our image, carrying the setup.py sdist.
    environments = job.proto_pipeline.components.environments
    assert len(environments) == 1
    (environment,) = environments.values()
    assert environment.urn == common_urns.environments.DOCKER.urn
    docker = beam_runner_api_pb2.DockerPayload.FromString(environment.payload)
    assert docker.container_image == IMAGE
    staged = {
        beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(a.role_payload).staged_name
        for a in environment.dependencies
    }
    assert "workflow.tar.gz" in staged, staged

    # The options the service and the workers receive.
    assert job.options.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert job.options.view_as(GoogleCloudOptions).dataflow_service_options == [ACCELERATOR]
    experiments = job.options.view_as(DebugOptions).experiments
    assert "no_use_multiple_sdk_containers" in experiments
    assert "use_multiple_sdk_containers" not in experiments

    # The Environment message a submission would send, built from the job offline.
    sent = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url="gs://test-bucket/staging/pipeline.pb",
        proto_pipeline=job.proto_pipeline,
    ).proto
    assert list(sent.service_options) == [ACCELERATOR]
    assert "no_use_multiple_sdk_containers" in sent.experiments
    (pool,) = sent.worker_pools
    assert pool.worker_harness_container_image == IMAGE
    assert (pool.machine_type, pool.disk_size_gb) == ("n1-standard-8", 100)
    assert pool.autoscaling_settings.max_num_workers == 4
    worker_options = sent.sdk_pipeline_options["options"]
    assert worker_options["output"] == "gs://test-bucket/index"
    assert worker_options["run_id"] == "dry-run"


# --------------------------------------------------------------------------- portable


def _assert_small_archive_index(out: Path, run_id: str) -> None:
    tables = current_rows(str(out))
    videos = {r["video_id"]: r for r in tables["videos"].to_pylist()}
    failures = {r["video_id"]: r for r in tables["failures"].to_pylist()}
    assert set(videos) == {"red.mkv", "blue.mkv"}
    assert set(failures) == {"notes.mp4"}
    assert failures["notes.mp4"]["stage"] == "decode"
    for name, row in videos.items():
        assert row["labels"][0] == name.split(".")[0]
        assert row["scores"][0] > 0.9
        assert row["run_id"] == run_id
    assert videos["red.mkv"]["num_clips"] == 2 and videos["blue.mkv"]["num_clips"] == 1
    assert tables["clips"].num_rows == 3


def test_portable_runner_with_an_external_worker_pool(
    worker_pool, small_archive, colour_spec_file, tmp_path
):
    out = tmp_path / "out"
    cli = _run(
        [
            sys.executable, "-m", "beam_pipeline", "index",
            "--input", str(small_archive),
            "--output", str(out),
            "--model", str(colour_spec_file),
            "--run-id=portable",
            "--runner=PortableRunner",
            "--job_endpoint=embed",
            "--environment_type=EXTERNAL",
            f"--environment_config={worker_pool.address}",
        ],
        env=_subprocess_env(),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert "2 videos indexed, 1 failed, 3 clips" in cli.stdout, cli.stdout
    _assert_small_archive_index(out, "portable")
    # The bundles ran in SDK workers that the pool started, not in the CLI's process.
    assert "Starting worker with command" in worker_pool.log.read_text()


_FAKE_JOB_SERVER = """#!/bin/sh
# Stands in for `java -jar beam-runners-flink-*-job-server.jar ARGS`: records ARGS and
# serves Beam's job API with the Python job service on the port the runner chose.
printf '%s\\n' "$@" > "{argv_file}"
while [ $# -gt 0 ]; do
  case "$1" in
    --job-port) port="$2"; shift 2 ;;
    --artifacts-dir) staging="$2"; shift 2 ;;
    *) shift ;;
  esac
done
exec "{python}" -m apache_beam.runners.portability.local_job_service_main \\
  --port "$port" --staging_dir "$staging"
"""


def test_run_flink_sh_through_the_flink_runner_client(
    worker_pool, small_archive, colour_spec_file, tmp_path
):
    jar = tmp_path / "beam-runners-flink-1.20-job-server-2.77.0.jar"
    jar.write_bytes(b"")  # the runner checks it exists; the stand-in never reads it
    argv_file = tmp_path / "job_server_argv.txt"
    launcher = tmp_path / "java"
    launcher.write_text(_FAKE_JOB_SERVER.format(argv_file=argv_file, python=sys.executable))
    launcher.chmod(0o755)
    out = tmp_path / "out"
    run = _run(
        [
            "bash", "run_flink.sh",
            "--flink-master", "flink-jobmanager:8081",
            "--flink-version", "1.20",
            "--flink-job-server-jar", str(jar),
            "--worker-pool", worker_pool.address,
            "--input", str(small_archive),
            "--output", str(out),
            "--model", str(colour_spec_file),
            "--run-id=flink",
            f"--job_server_java_launcher={launcher}",
        ],
        env=_subprocess_env(PYTHON=sys.executable),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    # The FlinkRunner started "the jar" with the cluster's address, as it would start
    # Beam's Flink job server, and the job's Python ran in the external worker pool.
    job_server_argv = argv_file.read_text().split("\n")
    assert job_server_argv[:2] == ["-jar", str(jar)]
    assert job_server_argv[job_server_argv.index("--flink-master") + 1] == (
        "http://flink-jobmanager:8081"
    )
    assert "Starting worker with command" in worker_pool.log.read_text()
    assert "2 videos indexed, 1 failed, 3 clips" in run.stdout, run.stdout
    _assert_small_archive_index(out, "flink")


# --------------------------------------------------------------------------- scripts


@pytest.mark.parametrize("script", ["run_local.sh", "run_dataflow.sh", "run_flink.sh"])
def test_launch_scripts_print_usage(script):
    run = _run(["bash", script, "--help"], env=_subprocess_env(), timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: ./{script}"), run.stdout[:200]


@pytest.mark.slow
def test_run_local_sh_passes_its_flags_to_the_job(colour_spec_file, tmp_path):
    """`./run_local.sh --input X --output Y [flags]` (its own usage line): the flags
    reach `video-index index`, not the venv set-up that runs first. The set-up runs for
    real, in this venv: it installs nothing that is not there already."""
    archive = tmp_path / "archive"
    archive.mkdir()
    write_colour_video(archive / "red.mkv", COLOURS["red"], 1.0)
    out = tmp_path / "out"
    env = _subprocess_env(VIDEO_INDEX_VENV=sys.prefix, PYTHON=sys.executable)
    run = _run(
        ["bash", "run_local.sh", "--input", str(archive), "--output", str(out),
         "--model", str(colour_spec_file), "--top-k", "1"],
        env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 video indexed, 0 failed" in run.stdout, run.stdout
    (row,) = current_rows(str(out))["videos"].to_pylist()
    assert row["labels"] == ["red"]  # --top-k 1 reached the job


def test_run_dataflow_sh_says_what_it_needs(tmp_path):
    env = _subprocess_env(PYTHON=sys.executable)
    for name in ("PROJECT", "REGION", "BUCKET", "IMAGE"):
        env.pop(name, None)
    missing = _run(["bash", "run_dataflow.sh", "--input", "gs://b/v"], env=env, timeout=30)
    assert missing.returncode == 2 and "PROJECT is not set" in missing.stderr
    env.update(PROJECT="test-project", REGION="us-central1", BUCKET="test-bucket")
    local = _run(
        ["bash", "run_dataflow.sh", "--input", str(tmp_path), "--output", "gs://b/out"],
        env=env,
        timeout=30,
    )
    assert local.returncode == 2 and "workers cannot read" in local.stderr
    build = _run(["bash", "run_dataflow.sh", "build-image"], env=env, timeout=30)
    assert build.returncode == 0, build.stderr
    image = "us-central1-docker.pkg.dev/test-project/video-index/worker:latest"
    assert f"gcloud builds submit --project=test-project --region=us-central1 --tag {image}" in (
        build.stdout
    )
    assert f"docker build -t {image} ." in build.stdout and f"docker push {image}" in build.stdout


def test_run_dataflow_sh_dry_run(colour_spec_file, tmp_path):
    pytest.importorskip("apitools", reason="needs apache-beam[gcp] (requirements-test.txt)")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"")  # an input that matches nothing is refused
    env = _subprocess_env(
        PYTHON=sys.executable,
        PROJECT="test-project",
        REGION="us-central1",
        BUCKET="test-bucket",
        IMAGE=IMAGE,
    )
    run = _run(
        [
            "bash", "run_dataflow.sh", "--dry-run",
            "--input", str(tmp_path / "videos"),
            "--output", str(tmp_path / "out"),
            "--model", str(colour_spec_file),
        ],
        env=env,
    )  # fmt: skip
    command = next(
        (line for line in run.stderr.splitlines() if line.startswith("run_dataflow.sh: running:")),
        None,
    )
    assert command, run.stderr[-3000:]
    for flag in (
        "--runner=DataflowRunner",
        "--project=test-project",
        "--region=us-central1",
        "--temp_location=gs://test-bucket/tmp",
        "--staging_location=gs://test-bucket/staging",
        "--setup_file=./setup.py",
        f"--sdk_container_image={IMAGE}",
        "--experiments=no_use_multiple_sdk_containers",
        "--machine_type=n1-standard-8",
        "--disk_size_gb=100",
        "--max_num_workers=4",
        "--dry_run=True",
    ):
        assert flag in command, flag
    assert re.search(r"--job_name=video-index-\d{8}-\d{6}", command)
    assert "worker_accelerator=type:nvidia-tesla-t4\\;count:1\\;install-nvidia-driver" in command
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dry run: the job was built and translated, not run" in run.stdout
    # Staging builds the sdist with `python -m build` (requirements-test.txt, the
    # dataflow extra); without it Beam logs a ModuleNotFoundError and falls back.
    assert "No module named build" not in run.stderr, run.stderr[-3000:]


# --------------------------------------------------------------------------- pins


def _requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[name.lower()] = version
    return pins


def test_worker_image_and_scripts_match_the_pinned_versions():
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    dockerfile = (REPO / "Dockerfile").read_text()
    pins = _requirement_pins()
    boot = re.search(
        r"^COPY --from=apache/beam_python(\d+\.\d+)_sdk:(\S+) /opt/apache/beam /opt/apache/beam$",
        dockerfile,
        re.M,
    )
    assert boot, "the Dockerfile must copy Beam's boot loader from the SDK image"
    python, beam_version = boot.groups()
    assert beam_version == pins["apache-beam"] == beam.__version__
    assert f'"apache-beam[gcp]=={beam_version}"' in dockerfile
    assert f"python{python} -m venv" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1" in dockerfile
    assert f'"tensorflow[and-cuda]=={pins["tensorflow"]}"' in dockerfile

    dataflow_sh = (REPO / "run_dataflow.sh").read_text()
    assert f"WORKER_PYTHON={python}\n" in dataflow_sh
    assert f"BEAM_VERSION={beam_version}\n" in dataflow_sh

    flink_versions = re.search(
        r'^FLINK_VERSIONS="([^"]+)"$', (REPO / "run_flink.sh").read_text(), re.M
    )
    assert flink_versions.group(1).split() == FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS

    # The CUDA wheels are pinned to the lower bounds of TensorFlow's own `and-cuda`
    # ranges (the CUDA 12.5.1 / cuDNN 9.3 it is built with), and the CUDA base
    # image is that CUDA, when the TensorFlow here is the pinned one.
    import tensorflow as tf

    if tf.__version__ != pins["tensorflow"]:
        pytest.skip(f"TensorFlow here is {tf.__version__}, not the pinned {pins['tensorflow']}")
    image_pins = dict(re.findall(r"\b(nvidia-[a-z0-9-]+)==([0-9.]+)", dockerfile))
    lower_bounds = {}
    for requirement in importlib.metadata.requires("tensorflow") or ():
        if 'extra == "and-cuda"' in requirement:
            name, low = re.match(r"([A-Za-z0-9_.-]+).*?>=\s*([0-9.]+)", requirement).groups()
            lower_bounds[name.lower()] = low
    assert image_pins == lower_bounds
    build = tf.sysconfig.get_build_info()
    if build.get("is_cuda_build"):
        cuda = re.search(r"^FROM nvidia/cuda:(\d+\.\d+\.\d+)-", dockerfile, re.M)
        assert cuda and cuda.group(1) == build["cuda_version"]
