"""VerlServerBackend against vLLM's real engine (CPU build) behind veRL's server contract: what veRL's vLLM server
does with the sampling params and the output is repeated here in a few lines; vLLM itself decides the tokens,
logprobs and where a round ends. Checks the facts the backend rests on: the stop text's tokens come back with
their logprobs, an EOS ends the output as its last token, "stop" and "length" both read "completed"."""

from __future__ import annotations

import asyncio
import math
import os

import pytest

from torl.rollout import RolloutConfig, arun_rollouts, build_prompt
from torl.rollout.backends.base import GenerationRequest
from torl.rollout.tokens import decode, encode_prompt
from torl.verl.backend import VerlServerBackend

pytestmark = pytest.mark.engines

VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "TORCH_COMPILE_DISABLE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
SAMPLING = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "repetition_penalty": 1.0, "logprobs": True}


class VLLMServer:
    """veRL 0.9.1's vLLMHttpServer.generate, reduced to its handling of params and outputs, on vllm.LLM."""

    def __init__(self, llm) -> None:
        self.llm = llm

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput
        from vllm import SamplingParams

        params = dict(sampling_params)
        max_tokens = params.pop("max_tokens")
        params["logprobs"] = 0 if params.pop("logprobs", False) else None
        sp = SamplingParams(max_tokens=max_tokens, **params)
        [res] = self.llm.generate([{"prompt_token_ids": prompt_ids}], sp, use_tqdm=False)
        out = res.outputs[0]
        ids = list(out.token_ids)
        log_probs = [lp[ids[i]].logprob for i, lp in enumerate(out.logprobs)] if sp.logprobs is not None else None
        reason = "completed" if out.finish_reason in ("stop", "length") else out.finish_reason
        return TokenOutput(token_ids=ids, log_probs=log_probs, stop_reason=reason)


@pytest.fixture(scope="module")
def llm(tiny_model):
    old = {k: os.environ.get(k) for k in VLLM_ENV}
    os.environ.update(VLLM_ENV)
    from vllm import LLM

    engine = LLM(model=str(tiny_model), dtype="float32", max_model_len=512, seed=0, enforce_eager=True,
                 logprobs_mode="processed_logprobs")
    yield engine
    del engine
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _backend(llm, tokenizer):
    return VerlServerBackend(VLLMServer(llm), tokenizer, request_id="r", eos_ids=[tokenizer.eos_token_id],
                             sampling_params=SAMPLING)


def test_stop_eos_and_length_from_vllm(llm):
    tok = llm.get_tokenizer()
    backend = _backend(llm, tok)
    prompt = encode_prompt(tok, build_prompt("What is 37 + 5?"))

    async def go():
        stop = await backend.agenerate(GenerationRequest(prompt, 200, ("```output",), 1.0, 1.0, seed=1))
        free = await backend.agenerate(GenerationRequest(prompt, 200, (), 1.0, 1.0, seed=1))
        short = await backend.agenerate(GenerationRequest(prompt, 3, ("```output",), 1.0, 1.0, seed=1))
        return stop, free, short

    stop, free, short = asyncio.run(go())
    assert stop.finish_reason == "stop" and decode(tok, stop.token_ids).endswith("```output")
    assert free.finish_reason == "eos" and free.token_ids[-1] == tok.eos_token_id
    assert short.finish_reason == "length" and len(short.token_ids) == 3
    assert backend.stop_reasons == ["completed"] * 3
    for gen in (stop, free, short):
        assert len(gen.logprobs) == len(gen.token_ids) and all(math.isfinite(x) and x <= 0 for x in gen.logprobs)


def test_the_rollout_engine_over_vllm_needs_no_restored_marker(llm, local_sandbox):
    from torl.verl.agent_loop import response_logprobs

    tok = llm.get_tokenizer()
    prompts = [encode_prompt(tok, build_prompt(f"What is {a} + 5?")) for a in (12, 40, 77)]
    config = RolloutConfig(max_tool_calls=1, max_response_tokens=200)

    async def go():
        return await arun_rollouts(prompts, backend=_backend(llm, tok), sandbox=local_sandbox, config=config)

    results = asyncio.run(go())
    assert sum(r.num_executions for r in results) >= 1
    for r in results:
        lps = response_logprobs(r, requested=True)  # raises if a model token lacks its real logprob
        assert len(lps) == len(r.completion_ids)
