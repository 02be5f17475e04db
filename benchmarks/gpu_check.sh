#!/usr/bin/env bash
# GPU check of the training path (no download): 3 GRPO steps of 16 prompts x 8 samples of a Qwen2.5-Math-1.5B-shaped
# random-weight model (real Qwen2.5 tokenizer) with torl's transformers backend on one GPU, the real sandbox and
# grader, TIR-length responses; per-phase JSON under $OUT/gpu_check (or --out) and, last, one `gpu_check:` line
# (benchmarks/gpu_check.py says what it holds). Runs from the checkout's source (PYTHONPATH=src); when torl's
# requirements beyond the accelerator's image (scripts/device_wheels.txt) are missing, installs the wheels of .whl/
# (scripts/device_wheels.sh, carried beside the checkout) with --no-index --no-deps into a fresh folder first.
#   bash benchmarks/gpu_check.sh                  # one H100/H200: under 8 minutes, model build included
#   bash benchmarks/gpu_check.sh --engine vllm    # TRL's colocated vLLM engine instead (needs vLLM)
#   bash benchmarks/gpu_check.sh --cpu-smoke      # the same script on CPU, a 2-layer model: under 5 minutes
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
limit=480
out_dir="${OUT:+$OUT/gpu_check}"
prev=""
for arg in "$@"; do
    if [ "$arg" = "--cpu-smoke" ]; then limit=300; fi
    if [ "$arg" = "--cpu-smoke" ] || [ "$arg" = "--cpu" ]; then export CUDA_VISIBLE_DEVICES=""; fi
    if [ "$prev" = "--out" ]; then out_dir="$arg"; fi
    case "$arg" in --out=*) out_dir="${arg#--out=}";; esac
    prev="$arg"
done
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES-0}"

missing="$("$PY" - <<'PY'
import importlib.metadata as md
from pathlib import Path

names = [line.split("==")[0] for line in Path("scripts/device_wheels.txt").read_text().splitlines()
         if line.strip() and not line.startswith("#")]
missing = []
for name in names:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
print(" ".join(missing))
PY
)"
extra=""
if [ -n "$missing" ]; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "gpu_check: missing $missing and no wheels in .whl/ (run scripts/device_wheels.sh where a registry is reachable, and carry .whl)" >&2
        exit 2
    fi
    extra="$(mktemp -d "${TMPDIR:-/tmp}/torl-wheels.XXXXXX")"
    "$PY" -m pip install --quiet --no-index --no-deps --target "$extra" .whl/*.whl
    echo "gpu_check: installed $(ls .whl/*.whl | wc -l) wheels from .whl/ into $extra (missing: $missing)"
fi
export PYTHONPATH="$PWD/src${extra:+:$extra}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
out_dir="${out_dir:-runs/gpu_check/out}"
mkdir -p "$out_dir"
log="$out_dir/gpu_check.log"
set +e
timeout "$limit" "$PY" benchmarks/gpu_check.py "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" = 124 ]; then echo "gpu_check: stopped at the ${limit} s limit (per-phase JSON so far is in the output folder)"; fi
exit "$rc"
