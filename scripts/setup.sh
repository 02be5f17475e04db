#!/usr/bin/env bash
# Create .venv (if missing) and install torl with its test tools. torch 2.13.0 goes first: on a CPU machine it
# takes the CPU wheel, and the project's torch range is satisfied by it, so pip never pulls CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
