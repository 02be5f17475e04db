"""The tiny TIR model of the engine tests (vLLM, veRL), built once per test process and shared by all of them."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def vllm_model_dir() -> Path:
    """A tokenizer + Qwen2 LM fitted for a few seconds to TIR transcripts (it writes ```python blocks), with two
    heads of 32 dimensions: vLLM's CPU attention needs head size >= 32."""
    from torl.train.tiny_model import build_tiny_model

    out = Path(tempfile.mkdtemp(prefix="torl-vllm-tiny-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    return build_tiny_model(out, seed=0, num_heads=2, train_steps=250)
