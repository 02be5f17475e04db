#!/usr/bin/env bash
# Set up (scripts/setup.sh), lint, then run the test suite: everything but the destructive sandbox attacks first,
# then those attacks (they refuse to run unless the sandbox has its own PID namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check src tests benchmarks
python -m pytest -q -m "not destructive" "$@"
python -m pytest -q -m destructive "$@"
