#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels torl's training path needs that the accelerator's image lacks
# (scripts/device_wheels.txt), for CPython 3.12 manylinux x86-64, one version of each, no dependencies: the image
# holds the rest (scripts/device_image.txt). Carry .whl to the accelerator; benchmarks/gpu_check.sh installs it there.
#   bash scripts/device_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LIMIT_MIB=48
rm -rf .whl
mkdir -p .whl
grep -v '^\s*#' scripts/device_wheels.txt | grep . > .whl/requirements.txt
"$PY" -m pip download --quiet --dest .whl --only-binary=:all: --python-version 3.12 --implementation cp \
    --abi cp312 --platform manylinux2014_x86_64 --no-deps -r .whl/requirements.txt
rm .whl/requirements.txt
"$PY" - "$LIMIT_MIB" <<'PY'
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

wheels = sorted(Path(".whl").glob("*.whl"))
wanted = [line.split("==")[0] for line in Path("scripts/device_wheels.txt").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
names = [canonicalize_name(parse_wheel_filename(w.name)[0]) for w in wheels]
if sorted(names) != sorted(canonicalize_name(n) for n in wanted) or len(set(names)) != len(names):
    sys.exit(f"device_wheels: expected one wheel each of {wanted}, got {[w.name for w in wheels]}")
total = sum(w.stat().st_size for w in wheels) / 2**20
if total > float(sys.argv[1]):
    sys.exit(f"device_wheels: {total:.1f} MiB of wheels, over the {sys.argv[1]} MiB that may travel")
print(f"device_wheels: {len(wheels)} wheels, {total:.1f} MiB in .whl/")
PY
