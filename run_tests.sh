#!/usr/bin/env bash
# Set up (once) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/ensure_venv.sh requirements-test.txt
exec python -m pytest -q "$@"
