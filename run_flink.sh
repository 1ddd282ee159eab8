#!/usr/bin/env bash
# Run video-index on an Apache Flink session cluster through Beam's portable Flink runner.
#   ./run_flink.sh --help
#   ./run_flink.sh --flink-master HOST:8081 --input X --output Y [--dry-run] [flags]
#
# How the pieces meet:
#   * here: 'python -m beam_pipeline index --runner=FlinkRunner' starts Beam's Flink
#     job server (a Java jar: `java` on PATH; 11 or 17 suits every version below),
#     which translates the pipeline and submits it to the cluster's REST endpoint
#     (--flink_master, port 8081);
#   * on every TaskManager: a Beam Python worker pool, the "sidecar", that starts SDK
#     workers for the job's Python steps. --environment_config=localhost:50000 is
#     resolved *on the TaskManager*, so the pool runs beside it (same host or pod):
#         python -m apache_beam.runners.worker.worker_pool_main --service_port=50000
#     with this project and requirements.txt installed, or the Dockerfile's image,
#     whose Beam boot loader has a worker-pool mode:
#         docker run --network=host IMAGE --worker_pool      # listens on 50000
#   * input and output must be storage every TaskManager can reach (gs://, s3://, a
#     shared mount): workers do not see this machine's disk.
#
# Flink versions: Beam 2.77 publishes Flink job servers for 1.19, 1.20, 2.0, 2.1 and
# 2.2 (FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS; default 2.2). Pick the cluster's.
#
# The job server jar: without --flink-job-server-jar, Beam downloads
#   https://repo.maven.apache.org/maven2/org/apache/beam/beam-runners-flink-VERSION-job-server/2.77.0/beam-runners-flink-VERSION-job-server-2.77.0.jar
# into ~/.apache_beam/cache/jars on first use. Where there is no internet, copy that
# jar (for the cluster's VERSION) here and pass its path with --flink-job-server-jar.
set -euo pipefail
cd "$(dirname "$0")"

FLINK_VERSIONS="1.19 1.20 2.0 2.1 2.2"

usage() {
  cat <<USAGE
usage: ./run_flink.sh [--flink-master HOST:PORT] [--flink-version V]
                      [--flink-job-server-jar PATH] [--worker-pool HOST:PORT]
                      --input X --output Y [--dry-run] [video-index index flags]

Runs 'python -m beam_pipeline index' with Beam's FlinkRunner on a running Flink
session cluster; the job's Python steps run in a worker pool beside each TaskManager
(--environment_type=EXTERNAL). See the comment block at the top of this script.

Settings (flag or environment variable):
  --flink-master HOST:PORT      FLINK_MASTER     the cluster's REST address (default localhost:8081)
  --flink-version V             FLINK_VERSION    the cluster's Flink: ${FLINK_VERSIONS// /, } (default 2.2)
  --flink-job-server-jar PATH   FLINK_JOB_SERVER_JAR
                                Beam's Flink job server jar for V (default: downloaded
                                from Maven Central on first use; needs internet)
  --worker-pool HOST:PORT       WORKER_POOL      the Python worker pool as the TaskManagers
                                                 see it (default localhost:50000)
  --parallelism N               PARALLELISM      Flink parallelism (default: the cluster's)
                                PYTHON           interpreter (default .venv/bin/python)
  --dry-run                     print the command and stop

Every other flag goes to 'video-index index' (Beam flags included). Needs here: Python
with this project installed (./run_local.sh sets that up) and java (11 or 17).
USAGE
}

die() {
  echo "run_flink.sh: $*" >&2
  exit 2
}

dry_run=0
pass=()
has_input=0
has_output=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --flink-master | --flink_master) FLINK_MASTER="${2:?$1 needs a value}"; shift 2 ;;
    --flink-master=* | --flink_master=*) FLINK_MASTER="${1#*=}"; shift ;;
    --flink-version | --flink_version) FLINK_VERSION="${2:?$1 needs a value}"; shift 2 ;;
    --flink-version=* | --flink_version=*) FLINK_VERSION="${1#*=}"; shift ;;
    --flink-job-server-jar | --flink_job_server_jar) FLINK_JOB_SERVER_JAR="${2:?$1 needs a value}"; shift 2 ;;
    --flink-job-server-jar=* | --flink_job_server_jar=*) FLINK_JOB_SERVER_JAR="${1#*=}"; shift ;;
    --worker-pool) WORKER_POOL="${2:?$1 needs a value}"; shift 2 ;;
    --worker-pool=*) WORKER_POOL="${1#*=}"; shift ;;
    --parallelism) PARALLELISM="${2:?$1 needs a value}"; shift 2 ;;
    --parallelism=*) PARALLELISM="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --runner | --runner=* | --environment_type* | --environment_config*)
      die "$1 is set by this script (see --help)" ;;
    --input | --input=*) has_input=1; pass+=("$1"); shift ;;
    --output | --output=*) has_output=1; pass+=("$1"); shift ;;
    *) pass+=("$1"); shift ;;
  esac
done

FLINK_MASTER="${FLINK_MASTER:-localhost:8081}"
FLINK_VERSION="${FLINK_VERSION:-2.2}"
WORKER_POOL="${WORKER_POOL:-localhost:50000}"
[ "$has_input" = 1 ] || die "--input is required (see --help)"
[ "$has_output" = 1 ] || die "--output is required (see --help)"
case " $FLINK_VERSIONS " in
  *" $FLINK_VERSION "*) ;;
  *) die "Flink $FLINK_VERSION has no Beam 2.77 job server; use one of: $FLINK_VERSIONS" ;;
esac

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

cmd=(
  "$PYTHON" -m beam_pipeline index
  --runner=FlinkRunner
  --flink_master="$FLINK_MASTER"
  --flink_version="$FLINK_VERSION"
  --environment_type=EXTERNAL
  --environment_config="$WORKER_POOL"
)
if [ -n "${FLINK_JOB_SERVER_JAR:-}" ]; then
  if [ "$dry_run" = 0 ] && [ ! -f "$FLINK_JOB_SERVER_JAR" ]; then
    die "no job server jar at $FLINK_JOB_SERVER_JAR"
  fi
  cmd+=(--flink_job_server_jar="$FLINK_JOB_SERVER_JAR")
fi
if [ -n "${PARALLELISM:-}" ]; then
  cmd+=(--parallelism="$PARALLELISM")
fi
cmd+=("${pass[@]}")

printf 'run_flink.sh: running:' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
if [ "$dry_run" = 1 ]; then
  exit 0
fi
if [ -z "${FLINK_JOB_SERVER_JAR:-}" ]; then
  echo "run_flink.sh: note: no --flink-job-server-jar: Beam downloads the Flink $FLINK_VERSION" \
    "job server from Maven Central (needs internet)" >&2
fi
exec "${cmd[@]}"
