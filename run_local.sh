#!/usr/bin/env bash
# Set up (once) and run video-index on this machine with the DirectRunner.
#   ./run_local.sh                      index the demo clips in examples/ into out/demo
#   ./run_local.sh --input DIR_OR_GLOB_OR_MANIFEST --output OUT [flags]
set -euo pipefail
cd "$(dirname "$0")"
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  cat <<USAGE
usage: ./run_local.sh [--input X --output DIR] [video-index index flags]

Creates .venv if missing, installs video-index, builds the default I3D model once
(into ~/.cache/video-index), then runs 'video-index index' with the DirectRunner.
Without --input it indexes the demo (examples/demo_manifest.csv: three clips in
examples/media and a file that is not a video, written to out/demo-input) into out/demo.
All flags: ./run_local.sh --input X --output Y --help
USAGE
  exit 0
fi
args=("$@")
set --  # ensure_venv.sh takes requirement files as arguments: none here, not ours
. scripts/ensure_venv.sh
has_input=0
for a in "${args[@]}"; do case "$a" in --input|--input=*) has_input=1;; esac; done
if [ "$has_input" = 0 ]; then
  # The demo's failure case: text under a video's name, written here rather than
  # committed as a media file.
  mkdir -p out/demo-input
  [ -e out/demo-input/not-a-video.mp4 ] || printf 'this is not a video\n' > out/demo-input/not-a-video.mp4
  args=(--input examples/demo_manifest.csv --output out/demo "${args[@]}")
fi
exec video-index index "${args[@]}"
