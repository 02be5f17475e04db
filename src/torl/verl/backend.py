"""A torl `Backend` over veRL's inference-server handle (`LLMServerClient.generate`, verl 0.9.1).

veRL's handle takes token ids and a sampling-params dict that reaches vLLM's `SamplingParams` unchanged, and
returns `TokenOutput(token_ids, log_probs, stop_reason)`. Its stop_reason is "completed" for vLLM's "stop" and
"length" alike, so the finish reason is read off the tokens:
- "stop": the round's decoded text holds a requested stop string. The request asks vLLM to keep the stop text
  (`include_stop_str_in_output`), so the marker's tokens are the sampled ones, with their real logprobs, and the
  engine never has to restore it;
- "eos": the last token is an EOS id;
- "length": anything else (the round's budget, or the server's context limit).
Every round of a sample goes out under one request id, so veRL's router keeps the sample on one server (prefix
cache). Logprobs: the server's, or NaN when it was not asked for them (`rollout.calculate_log_probs=False`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from torl.rollout.backends.base import Backend, Generation, GenerationRequest
from torl.rollout.tokens import decode

# keys of veRL's sampling params that the torl request decides
_REQUEST_KEYS = ("temperature", "top_p", "max_tokens", "stop", "include_stop_str_in_output", "seed")


class VerlServerBackend(Backend):
    """server: veRL's `LLMServerClient` (anything with its `generate(request_id, *, prompt_ids, sampling_params)`).
    sampling_params: veRL's per-sample params (top_k, repetition_penalty, logprobs, ...); temperature, top_p,
        max_tokens, stop and seed come from each torl request.
    request_id: one id for every round of the sample (sticky session).
    eos_ids: the ids that end generation (tokenizer's and generation config's)."""

    name = "verl"

    def __init__(self, server, tokenizer, *, request_id: str, eos_ids: Iterable[int],
                 sampling_params: Mapping[str, Any] | None = None, priority: int = 0) -> None:
        self.server = server
        self.tokenizer = tokenizer
        self.request_id = request_id
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        if not self.eos_ids:
            raise ValueError("VerlServerBackend: no EOS token id")
        self.base_params = {k: v for k, v in (sampling_params or {}).items() if k not in _REQUEST_KEYS}
        self.priority = int(priority)
        self.stop_reasons: list[str | None] = []  # the server's, per round ("completed", "aborted", ...)
        self.global_steps: list[int | None] = []  # the policy version that served each round

    def sampling_params(self, request: GenerationRequest) -> dict[str, Any]:
        """veRL's params with this round's: a fresh dict each call (the server pops keys from it)."""
        params = dict(self.base_params)
        params.update(temperature=request.temperature, top_p=request.top_p, max_tokens=request.max_new_tokens)
        if request.stop:
            params.update(stop=list(request.stop), include_stop_str_in_output=True)
        if request.seed is not None:
            params["seed"] = request.seed
        return params

    async def agenerate(self, request: GenerationRequest) -> Generation:
        extra = {"priority": self.priority} if self.priority else {}
        out = await self.server.generate(self.request_id, prompt_ids=list(request.prompt_ids),
                                         sampling_params=self.sampling_params(request), **extra)
        self.stop_reasons.append(out.stop_reason)
        self.global_steps.append((out.extra_fields or {}).get("global_steps"))
        ids = [int(t) for t in out.token_ids]
        if out.log_probs is None:
            logprobs = [math.nan] * len(ids)
        else:
            logprobs = [float(x) for x in out.log_probs]
            if len(logprobs) != len(ids):
                raise RuntimeError(f"server returned {len(ids)} tokens but {len(logprobs)} logprobs")
        finish, stop_text = finish_reason(decode(self.tokenizer, ids, skip_special_tokens=False), ids,
                                          request.stop, self.eos_ids)
        return Generation(ids, logprobs, finish, stop_text, info={"stop_reason": out.stop_reason})


def finish_reason(text: str, ids: list[int], stops: Iterable[str], eos_ids: frozenset[int]
                  ) -> tuple[str, str | None]:
    """("stop", the first stop string in `text`) | ("eos", None) | ("length", None) for one round."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    if found:
        return "stop", min(found)[1]
    if ids and ids[-1] in eos_ids:
        return "eos", None
    return "length", None
