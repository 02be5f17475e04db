#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the main job. Until `torl demo` lands this is the sandbox benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
torl sandbox doctor
torl sandbox bench "$@"
