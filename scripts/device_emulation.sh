#!/usr/bin/env bash
# Prove on this CPU machine that the accelerator's image plus .whl/ is enough for torl's GPU check: a Python 3.12
# venv (.venv-device) holding only packages of that image (scripts/device_image.txt, at the versions it lists;
# torch 2.11.0 from PyPI, whose CUDA libraries install and stay unused here), nothing of torl's own requirements,
# then `benchmarks/gpu_check.sh --cpu-smoke`, which installs .whl/ with --no-deps as it does on the accelerator.
# Not part of scripts/test.sh (a multi-GB download the first time; the venv is reused after).
#   bash scripts/device_wheels.sh && bash scripts/device_emulation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY312="${PYTHON312:-/root/.pyenv/versions/3.12.1/bin/python3}"
VENV=.venv-device
# the image's packages that torl's training path and the smoke use (their dependencies must be image packages too)
NEEDED=(torch transformers accelerate huggingface-hub tokenizers safetensors numpy tiktoken sympy scipy pyyaml
        tqdm rich matplotlib pyarrow tensorboard httpx pandas psutil jinja2 fsspec xxhash filelock packaging regex
        requests)
# bounds inferred from the image's list: typer >= 0.29 needs pydantic and python-dateutil >= 3 needs tzdata, and
# the image has neither, so its typer and python-dateutil are older
INFERRED=("typer<0.29" "python-dateutil<3")

[ -x "$PY312" ] || { echo "device_emulation: no Python 3.12 at $PY312 (set PYTHON312)" >&2; exit 2; }
ls .whl/*.whl >/dev/null 2>&1 || { echo "device_emulation: no wheels in .whl/: run scripts/device_wheels.sh" >&2; exit 2; }
stamp="$( (cat scripts/device_image.txt; echo "${NEEDED[*]} ${INFERRED[*]}") | sha256sum | cut -c1-16)"
if [ "$(cat "$VENV/.image-stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$VENV"
    "$PY312" -m venv "$VENV"
    reqs="$VENV/image-requirements.txt"
    for name in "${NEEDED[@]}"; do
        grep -iE "^${name}(==|$)" scripts/device_image.txt >>"$reqs" \
            || { echo "device_emulation: $name is not an image package" >&2; exit 2; }
    done
    printf '%s\n' "${INFERRED[@]}" >"$VENV/inferred-constraints.txt"
    # PyPI's index only (no local pip configuration): torch 2.11.0 as the registry serves it
    PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= "$VENV/bin/python" -m pip install --quiet \
        --index-url https://pypi.org/simple -r "$reqs" -c "$VENV/inferred-constraints.txt"
    echo "$stamp" >"$VENV/.image-stamp"
fi
# every installed distribution must be an image package (pip/setuptools of the venv itself aside)
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import re
import sys
from pathlib import Path

def canon(name):
    return re.sub(r"[-_.]+", "-", name).lower()

image = {canon(re.split(r"[=<>]", line)[0]) for line in Path("scripts/device_image.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")}
pins = dict(line.strip().split("==") for line in Path("scripts/device_image.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#"))
installed = {canon(d.metadata["Name"]): d.version for d in md.distributions()}
extra = sorted(set(installed) - image - {"pip"})
if extra:
    sys.exit(f"device_emulation: not in the image: {extra}")
wrong = {n: (installed[canon(n)], v) for n, v in pins.items() if canon(n) in installed
         and installed[canon(n)].split("+")[0] != v}
if wrong:
    sys.exit(f"device_emulation: versions differ from the image's (installed, image): {wrong}")
print(f"device_emulation: {len(installed)} packages, all in the image, listed versions matched")
PY
exec env PYTHON="$VENV/bin/python" bash benchmarks/gpu_check.sh --cpu-smoke "$@"
