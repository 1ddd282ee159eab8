#!/usr/bin/env bash
# Submit video-index to Google Cloud Dataflow with GPU workers (custom container).
#   ./run_dataflow.sh --help
#   ./run_dataflow.sh build-image            print the commands that build and push the image
#   ./run_dataflow.sh --input gs://... --output gs://... [--dry-run] [video-index flags]
set -euo pipefail
cd "$(dirname "$0")"

# The worker image's Python and Beam (Dockerfile); the submitting side must match.
WORKER_PYTHON=3.11
BEAM_VERSION=2.77.0

usage() {
  cat <<USAGE
usage: ./run_dataflow.sh [--project P] [--region R] [--bucket B] [--image URI]
                         --input gs://... --output gs://... [--dry-run] [flags]
       ./run_dataflow.sh build-image [--project P] [--region R] [--image URI]

Runs 'python -m beam_pipeline index' with the DataflowRunner on GPU workers: one
${GPU_TYPE:-nvidia-tesla-t4} per ${MACHINE_TYPE:-n1-standard-8} VM, the driver installed by Dataflow, the
Dockerfile's image as the worker container, one SDK process per VM.

Settings (flag or environment variable):
  --project P        PROJECT       Google Cloud project (required)
  --region R         REGION        Dataflow region, e.g. us-central1 (required)
  --bucket B         BUCKET        bucket for temp/ and staging/ (required, no gs://)
  --image URI        IMAGE         worker image (default:
                                   REGION-docker.pkg.dev/PROJECT/video-index/worker:latest)
  --max-workers N    MAX_WORKERS   autoscaling cap (default 4)
                     MACHINE_TYPE  worker VM (default n1-standard-8)
                     GPU_TYPE      accelerator (default nvidia-tesla-t4)
                     GPU_COUNT     GPUs per VM (default 1)
                     DISK_GB       boot disk (default 100: the CUDA + TF image is several GB)
                     JOB_NAME      (default video-index-UTCDATE-TIME)
                     PYTHON        interpreter that submits (default .venv/bin/python)
  --dry-run          translate the job and stop (Beam's --dry_run=True): nothing is
                     staged or submitted; only --input is read (the CLI checks it)
  build-image        print the 'gcloud builds submit' and 'docker build/push' commands
                     for the Dockerfile; nothing is run

Every other flag goes to 'video-index index' (see '.venv/bin/video-index index --help'),
Beam flags included (e.g. --number_of_worker_harness_threads=8).

Needs, on this machine: Python ${WORKER_PYTHON} with this project and apache-beam[gcp]==${BEAM_VERSION}
(pip install -r requirements.txt 'apache-beam[gcp]==${BEAM_VERSION}' build -e .), and Application
Default Credentials (gcloud auth application-default login) for a real submission.
On Google Cloud: the Dataflow API enabled, GPU quota for GPU_TYPE in REGION, the image
pushed to Artifact Registry, and a worker service account that can read it and the
bucket. Input and output must be bucket URIs: workers cannot see this machine's disk.
The default model (I3D) is baked into the image; --model-path gs://... also works.
USAGE
}

die() {
  echo "run_dataflow.sh: $*" >&2
  exit 2
}

command_name=submit
if [ "${1:-}" = "build-image" ]; then
  command_name=build-image
  shift
fi

dry_run=0
pass=()
has_input=0
has_output=0
input=""
output=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --project) PROJECT="${2:?--project needs a value}"; shift 2 ;;
    --project=*) PROJECT="${1#*=}"; shift ;;
    --region) REGION="${2:?--region needs a value}"; shift 2 ;;
    --region=*) REGION="${1#*=}"; shift ;;
    --bucket) BUCKET="${2:?--bucket needs a value}"; shift 2 ;;
    --bucket=*) BUCKET="${1#*=}"; shift ;;
    --image) IMAGE="${2:?--image needs a value}"; shift 2 ;;
    --image=*) IMAGE="${1#*=}"; shift ;;
    --max-workers) MAX_WORKERS="${2:?--max-workers needs a value}"; shift 2 ;;
    --max-workers=*) MAX_WORKERS="${1#*=}"; shift ;;
    --dry-run) dry_run=1; shift ;;
    --input) has_input=1; input="${2:-}"; pass+=("$1" "${2:-}"); shift 2 || shift ;;
    --input=*) has_input=1; input="${1#*=}"; pass+=("$1"); shift ;;
    --output) has_output=1; output="${2:-}"; pass+=("$1" "${2:-}"); shift 2 || shift ;;
    --output=*) has_output=1; output="${1#*=}"; pass+=("$1"); shift ;;
    --runner | --runner=*) die "$1: this script always uses the DataflowRunner" ;;
    *) pass+=("$1"); shift ;;
  esac
done

PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
BUCKET="${BUCKET:-}"
BUCKET="${BUCKET#gs://}"
BUCKET="${BUCKET%/}"
[ -n "$PROJECT" ] || die "PROJECT is not set (--project or the PROJECT variable); see --help"
[ -n "$REGION" ] || die "REGION is not set (--region or the REGION variable); see --help"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT}/video-index/worker:latest}"

if [ "$command_name" = "build-image" ]; then
  repo_host="${IMAGE%%/*}"
  cat <<BUILD
# Nothing was run. The image is built remotely by Cloud Build (this machine needs only
# gcloud), or locally with Docker; both push to Artifact Registry. From $(pwd):

# once: an Artifact Registry repository for it
gcloud artifacts repositories create video-index --repository-format=docker \\
    --location=${REGION} --project=${PROJECT}

# either: Cloud Build (the image is several GB with CUDA and TensorFlow)
gcloud builds submit --project=${PROJECT} --region=${REGION} --tag ${IMAGE} \\
    --machine-type=e2-highcpu-8 --timeout=3600s .

# or: local Docker
gcloud auth configure-docker ${repo_host}
docker build -t ${IMAGE} .
docker push ${IMAGE}

# then
./run_dataflow.sh --project ${PROJECT} --region ${REGION} --bucket BUCKET --image ${IMAGE} \\
    --input gs://BUCKET/videos --output gs://BUCKET/index
BUILD
  exit 0
fi

[ -n "$BUCKET" ] || die "BUCKET is not set (--bucket or the BUCKET variable); see --help"
[ "$has_input" = 1 ] && [ -n "$input" ] || die "--input is required (a gs:// folder, glob, manifest or video)"
[ "$has_output" = 1 ] && [ -n "$output" ] || die "--output is required (a gs:// folder for the index)"

remote() { case "$1" in *://*) return 0 ;; *) return 1 ;; esac; }
for pair in "input:$input" "output:$output"; do
  name="${pair%%:*}"
  value="${pair#*:}"
  if ! remote "$value"; then
    if [ "$dry_run" = 1 ]; then
      echo "run_dataflow.sh: note: --$name $value is local; a real run needs a bucket URI" >&2
    else
      die "--$name $value is a local path: Dataflow workers cannot read this machine's disk (use gs://...)"
    fi
  fi
done

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" - "$WORKER_PYTHON" "$BEAM_VERSION" <<'CHECK' || exit 2
import sys

want_python, want_beam = sys.argv[1], sys.argv[2]
have = "%d.%d" % sys.version_info[:2]
if have != want_python:
    sys.exit(f"run_dataflow.sh: {sys.executable} is Python {have}; the worker image runs "
             f"{want_python} and Dataflow needs the same minor version on both sides (set PYTHON)")
try:
    import apache_beam
    from apache_beam.runners.dataflow.internal import apiclient  # noqa: F401
    import apitools  # noqa: F401
except ImportError as error:
    sys.exit(f"run_dataflow.sh: {error}: install apache-beam[gcp]=={want_beam} "
             f"({sys.executable} -m pip install 'apache-beam[gcp]=={want_beam}')")
if apache_beam.__version__ != want_beam:
    sys.exit(f"run_dataflow.sh: apache-beam here is {apache_beam.__version__}; the worker "
             f"image has {want_beam} and they must match")
try:
    import beam_pipeline  # noqa: F401
except ImportError:
    sys.exit("run_dataflow.sh: video-index is not importable here (pip install -e .)")
CHECK

if [ "$dry_run" = 0 ] && [ -z "${GOOGLE_APPLICATION_CREDENTIALS:-}" ] \
  && [ ! -f "${CLOUDSDK_CONFIG:-$HOME/.config/gcloud}/application_default_credentials.json" ]; then
  echo "run_dataflow.sh: note: no Application Default Credentials found here" \
    "(gcloud auth application-default login); submission works only on a GCE/GKE host" >&2
fi

cmd=(
  "$PYTHON" -m beam_pipeline index
  --runner=DataflowRunner
  --project="$PROJECT"
  --region="$REGION"
  --temp_location="gs://$BUCKET/tmp"
  --staging_location="gs://$BUCKET/staging"
  --setup_file=./setup.py
  --job_name="${JOB_NAME:-video-index-$(date -u +%Y%m%d-%H%M%S)}"
  --sdk_container_image="$IMAGE"
  --dataflow_service_options="worker_accelerator=type:${GPU_TYPE:-nvidia-tesla-t4};count:${GPU_COUNT:-1};install-nvidia-driver"
  # One SDK process per VM, so one TensorFlow and one model copy per GPU (see README).
  --experiments=no_use_multiple_sdk_containers
  --machine_type="${MACHINE_TYPE:-n1-standard-8}"
  --disk_size_gb="${DISK_GB:-100}"
  --max_num_workers="${MAX_WORKERS:-4}"
  "${pass[@]}"
)
if [ "$dry_run" = 1 ]; then
  cmd+=(--dry_run=True)
fi
printf 'run_dataflow.sh: running:' >&2
printf ' %q' "${cmd[@]}" >&2
printf '\n' >&2
exec "${cmd[@]}"
