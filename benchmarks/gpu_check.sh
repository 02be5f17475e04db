#!/usr/bin/env bash
# GPU check of the training path (no download): Qwen2.5-Math-1.5B-shaped random model, 3 GRPO steps of 16 prompts x
# 8 samples with TRL's colocated vLLM engine, the real sandbox and grader; prints the step-time split, tokens/s,
# MFU and train/engine_logprob_gap, writes runs/gpu_check/gpu_check.json. Needs one H100/H200-class GPU and
# `pip install 'torl[vllm]'`; finishes in under 8 minutes (a hard limit below).
#   bash benchmarks/gpu_check.sh [extra gpu_check.py arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
exec timeout 480 "$PY" benchmarks/gpu_check.py --steps 3 --prompts 16 --samples 8 --response-tokens 1024 "$@"
