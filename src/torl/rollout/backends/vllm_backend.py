"""VLLMBackend: vLLM's offline engine (`vllm.LLM`), batched like the transformers backend (optional extra).

vLLM is imported only when this backend is built. Each batch is one `LLM.generate` call with a SamplingParams
per request (own stop strings and budget), `include_stop_str_in_output=True` and `logprobs=0` (the sampled
token's logprob; vLLM reports it for the raw model distribution unless the LLM was built with
`logprobs_mode="processed_logprobs"`). For continuous batching across tool calls, serve the model with
`vllm serve` and use the "openai" backend instead.
"""

from __future__ import annotations

import math
import os

from torl.rollout.backends.base import Generation, GenerationRequest
from torl.rollout.backends.batching import BatchingBackend


class VLLMBackend(BatchingBackend):
    """model: a model path (an `LLM` is built with `llm_kwargs`) or an existing `vllm.LLM` (e.g. TRL's)."""

    name = "vllm"

    def __init__(self, model, tokenizer=None, *, max_batch_size: int = 1024, batch_wait_s: float = 0.02,
                 max_wait_s: float = 1.0, seed: int | None = None, **llm_kwargs) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_wait_s=batch_wait_s, max_wait_s=max_wait_s)
        try:
            import vllm
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM: pip install 'torl[vllm]'") from e
        self._vllm = vllm
        if isinstance(model, str | os.PathLike):
            model = vllm.LLM(model=str(model), seed=seed if seed is not None else 0, **llm_kwargs)
        self.llm = model
        if tokenizer is None:
            tokenizer = model.get_tokenizer()
        elif isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer

    def sampling_params(self, r: GenerationRequest):
        return self._vllm.SamplingParams(
            n=1, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_new_tokens,
            stop=list(r.stop) or None, include_stop_str_in_output=True, logprobs=0,
        )

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(r.prompt_ids)} for r in requests],
            [self.sampling_params(r) for r in requests],
            use_tqdm=False,
        )
        return [to_generation(out.outputs[0], r) for out, r in zip(outputs, requests, strict=True)]


def to_generation(completion, request: GenerationRequest) -> Generation:
    """A vLLM `CompletionOutput` → Generation."""
    ids = [int(t) for t in completion.token_ids]
    logprobs = []
    for tid, entry in zip(ids, completion.logprobs or [], strict=False):
        lp = entry.get(tid) if entry else None
        logprobs.append(float(lp.logprob) if lp is not None else math.nan)
    logprobs += [math.nan] * (len(ids) - len(logprobs))
    if completion.finish_reason == "length":
        return Generation(ids, logprobs, "length")
    stop = completion.stop_reason
    if isinstance(stop, str) and stop in request.stop:
        return Generation(ids, logprobs, "stop", stop)
    return Generation(ids, logprobs, "eos")
