"""Generation backends behind one small interface (`Backend.agenerate`: token ids in → token ids out).

- "transformers": HF `generate`, batched (embedded default; CPU or GPU).
- "vllm": vLLM's offline engine, a path or an existing `vllm.LLM` (TRL's colocated one), driven request by
  request (continuous batching across tool calls; `continuous=False`: blocking batches). Optional extra.
- "openai": an OpenAI-compatible completions server with token ids (`vllm serve`, SGLang), async.
- "replay": scripted outputs, for tests and debugging.
"""

from __future__ import annotations

import importlib

from torl.rollout.backends.base import Backend, Generation, GenerationRequest

# name -> "module:Class", imported on first use (the engines are heavy and optional); `register_backend` adds one
BACKENDS: dict[str, str] = {
    "transformers": "torl.rollout.backends.transformers_backend:TransformersBackend",
    "vllm": "torl.rollout.backends.vllm_backend:VLLMBackend",
    "openai": "torl.rollout.backends.openai_backend:OpenAIBackend",
    "replay": "torl.rollout.backends.replay:ReplayBackend",
}

__all__ = ["BACKENDS", "Backend", "Generation", "GenerationRequest", "make_backend", "register_backend"]


def register_backend(name: str, target: str | type[Backend]) -> None:
    """Make `make_backend(name, ...)` build `target` (a Backend class or its "module:Class" path)."""
    BACKENDS[name] = target


def make_backend(kind: str, model, **kwargs) -> Backend:
    """Build a backend. `model`: a model path or loaded model ("transformers", "vllm"), the served model name
    ("openai", with `base_url=`), or the tokenizer / its path ("replay", with `scripts=`)."""
    target = BACKENDS.get(kind)
    if target is None:
        raise ValueError(f"backend must be one of {tuple(BACKENDS)}, got {kind!r}")
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
    return target(model, **kwargs)
