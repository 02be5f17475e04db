#!/usr/bin/env bash
# Set up (scripts/setup.sh), then run the main job: the whole TORL pipeline on CPU (`torl demo`, ~5 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
torl demo --overwrite "$@"
