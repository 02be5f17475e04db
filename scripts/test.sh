#!/usr/bin/env bash
# Set up both environments, lint, then run the test suite:
#   1. .venv (scripts/setup.sh): everything but the engine tests and the destructive sandbox attacks;
#   2. .venv-engines (scripts/setup_engines.sh): the tests on the real engines, vLLM's CPU build and veRL;
#   3. the destructive sandbox attacks (they refuse to run unless the sandbox has its own PID namespace).
# Arguments go to every pytest run (e.g. -x, -k name).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_engines.sh
. .venv/bin/activate
ruff check src tests benchmarks
lint-imports
python -m pytest -q -m "not destructive and not engines" "$@"
deactivate
. .venv-engines/bin/activate
python -m pytest -q -m "engines" "$@"
deactivate
. .venv/bin/activate
python -m pytest -q -m destructive "$@"
