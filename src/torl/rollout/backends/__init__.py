"""Generation backends behind one small interface (`Backend.agenerate`: token ids in → token ids out).

- "transformers": HF `generate`, batched (embedded default; CPU or GPU).
- "vllm": vLLM's offline engine, a path or an existing `vllm.LLM` (TRL's colocated one), driven request by
  request (continuous batching across tool calls; `continuous=False`: blocking batches). Optional extra.
- "openai": an OpenAI-compatible completions server with token ids (`vllm serve`, SGLang), async.
- "replay": scripted outputs, for tests and debugging.
"""

from __future__ import annotations

from torl.rollout.backends.base import Backend, Generation, GenerationRequest

BACKENDS: tuple[str, ...] = ("transformers", "vllm", "openai", "replay")

__all__ = ["BACKENDS", "Backend", "Generation", "GenerationRequest", "make_backend"]


def make_backend(kind: str, model, **kwargs) -> Backend:
    """Build a backend. `model`: a model path or loaded model ("transformers", "vllm"), the served model name
    ("openai", with `base_url=`), or the tokenizer / its path ("replay", with `scripts=`)."""
    if kind == "transformers":
        from torl.rollout.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model, **kwargs)
    if kind == "vllm":
        from torl.rollout.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model, **kwargs)
    if kind == "openai":
        from torl.rollout.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(model, **kwargs)
    if kind == "replay":
        from torl.rollout.backends.replay import ReplayBackend

        return ReplayBackend(model, **kwargs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {kind!r}")
