# Sourced by run_local.sh and run_tests.sh: make .venv if missing, install the
# project and the pinned requirements, and skip all of it when nothing changed.
# Usage: . scripts/ensure_venv.sh [extra requirement files...]
set -euo pipefail
VENV="${VIDEO_INDEX_VENV:-$PWD/.venv}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "video-index needs Python >= 3.10 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtualenv $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
stamp_inputs=(requirements.txt requirements-nodeps.txt setup.py "$@")
stamp="$(cat "${stamp_inputs[@]}" | sha256sum | cut -c1-16)"
# One stamp per set of requirement files, so run_local.sh and run_tests.sh do not undo
# each other's check.
if [ ! -e "$VENV/.video-index-installed-$stamp" ]; then
  echo "installing video-index and its requirements into $VENV (first time: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  req_args=(-r requirements.txt)
  for extra in "$@"; do req_args+=(-r "$extra"); done
  "$VENV/bin/python" -m pip install --quiet "${req_args[@]}" -e .
  # Packages whose declared dependencies we never import (see the file's comments).
  "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements-nodeps.txt
  touch "$VENV/.video-index-installed-$stamp"
fi
export PATH="$VENV/bin:$PATH"
