#!/usr/bin/env bash
# Set up (once) and run video-index on this machine with the DirectRunner.
#   ./run_local.sh                      index the embedded demo (examples/demo_manifest.csv)
#   ./run_local.sh --input DIR_OR_GLOB_OR_MANIFEST --output OUT [flags]
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  cat <<USAGE
usage: ./run_local.sh [--input X --output DIR] [video-index index flags]

Creates .venv if missing, installs video-index, builds the default I3D model once
(into ~/.cache/video-index), then runs 'video-index index' with the DirectRunner.
Without --input it indexes the demo manifest examples/demo_manifest.csv (clips
from ../shared/media) into out/demo. All flags: ./run_local.sh --input X --output Y --help
USAGE
  exit 0
fi
args=("$@")
set --  # ensure_venv.sh takes requirement files as arguments: none here, not ours
. scripts/ensure_venv.sh
has_input=0
for a in "${args[@]}"; do case "$a" in --input|--input=*) has_input=1;; esac; done
if [ "$has_input" = 0 ]; then
  if [ ! -d ../shared/media ]; then
    echo "run_local.sh: the demo reads ../shared/media, which is not here; pass --input" >&2
    exit 2
  fi
  args=(--input examples/demo_manifest.csv --output out/demo "${args[@]}")
fi
exec video-index index "${args[@]}"
