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

Aborts (veRL's async trainer modes abort in-flight requests at a weight update): veRL's vLLM server answers an
aborted request with the tokens generated so far (possibly none) and stop_reason "aborted". veRL's
`FullyAsyncLLMServerClient` (colocate_async / separate_async) resumes such a request itself, so the round
arrives whole; a client that does not (the plain `LLMServerClient`) hands the abort on, and this backend then
resumes the round itself: the same request again, on the context plus the tokens already generated, for the
budget left (a partial rollout: the round keeps its tokens and logprobs). Each round records the range of policy
versions (veRL's `global_steps`) that served it. A round still aborted after `abort_resume_s` seconds of tries
raises `SampleAborted`; an aborted round is never returned as a truncated one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from torl.rollout.backends.base import Backend, Generation, GenerationRequest
from torl.rollout.tokens import decode

# keys of veRL's sampling params that the torl request decides
_REQUEST_KEYS = ("temperature", "top_p", "max_tokens", "stop", "include_stop_str_in_output", "seed")
ABORTED = ("aborted", "abort")  # veRL's vLLM server: "aborted"; its clients also accept "abort"
RESUME_DELAY_S = 1.0  # between tries of an aborted round (veRL's FullyAsyncLLMServerClient waits 1 s too)


class SampleAborted(RuntimeError):
    """A round stayed aborted (the server kept aborting it) for longer than the resume budget."""


class VerlServerBackend(Backend):
    """server: veRL's `LLMServerClient` (anything with its `generate(request_id, *, prompt_ids, sampling_params)`).
    sampling_params: veRL's per-sample params (top_k, repetition_penalty, logprobs, ...); temperature, top_p,
        max_tokens, stop and seed come from each torl request.
    request_id: one id for every round of the sample (sticky session).
    eos_ids: the ids that end generation (tokenizer's and generation config's).
    abort_resume_s: how long an aborted round is retried before `SampleAborted` (see the module docstring)."""

    name = "verl"

    def __init__(self, server, tokenizer, *, request_id: str, eos_ids: Iterable[int],
                 sampling_params: Mapping[str, Any] | None = None, priority: int = 0,
                 abort_resume_s: float = 600.0, resume_delay_s: float = RESUME_DELAY_S) -> None:
        self.server = server
        self.tokenizer = tokenizer
        self.request_id = request_id
        self.eos_ids = frozenset(int(i) for i in eos_ids)
        if not self.eos_ids:
            raise ValueError("VerlServerBackend: no EOS token id")
        self.base_params = {k: v for k, v in (sampling_params or {}).items() if k not in _REQUEST_KEYS}
        self.priority = int(priority)
        self.abort_resume_s = float(abort_resume_s)
        self.resume_delay_s = float(resume_delay_s)
        self.stop_reasons: list[str | None] = []  # the server's, per answer ("completed", "aborted", ...)
        self.global_steps: list[int] = []  # the policy versions that served the sample (min and max per answer)
        self.aborts = 0  # aborted answers this backend resumed itself

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
        ids: list[int] = []
        logprobs: list[float] = []
        deadline = None
        while True:
            params = self.sampling_params(request)
            params["max_tokens"] = request.max_new_tokens - len(ids)
            out = await self.server.generate(self.request_id, prompt_ids=list(request.prompt_ids) + ids,
                                             sampling_params=params, **extra)
            self.stop_reasons.append(out.stop_reason)
            self._record_versions(out.extra_fields or {})
            new = [int(t) for t in out.token_ids]
            if out.log_probs is None:
                logprobs += [math.nan] * len(new)
            else:
                if len(out.log_probs) != len(new):
                    raise RuntimeError(f"server returned {len(new)} tokens but {len(out.log_probs)} logprobs")
                logprobs += [float(x) for x in out.log_probs]
            ids += new
            text = decode(self.tokenizer, ids, skip_special_tokens=False)
            finish, stop_text = finish_reason(text, ids, request.stop, self.eos_ids)
            if finish == "stop" and not text.endswith(stop_text):
                # a round resumed after an abort inside the marker: the server only looked for the stop in the
                # new text, so it sampled on past it. What follows the marker is not the model's to write.
                ids, logprobs = cut_after_stop(self.tokenizer, ids, logprobs, stop_text)
            if out.stop_reason not in ABORTED or finish != "length" or len(ids) >= request.max_new_tokens:
                return Generation(ids, logprobs, finish, stop_text,
                                  info={"stop_reason": out.stop_reason, "aborts": self.aborts})
            # aborted mid-round (a weight update): resume from the tokens generated so far
            self.aborts += 1
            now = time.monotonic()
            deadline = deadline if deadline is not None else now + self.abort_resume_s
            if now >= deadline:
                raise SampleAborted(f"request {self.request_id}: a round was still aborted by the server after "
                                    f"{self.abort_resume_s:g} s of resuming ({len(ids)} tokens generated)")
            await asyncio.sleep(self.resume_delay_s)

    def _record_versions(self, extra_fields: Mapping[str, Any]) -> None:
        """Note the policy versions of one answer (veRL's clients give min/max_global_steps, servers global_steps)."""
        for key in ("min_global_steps", "max_global_steps", "global_steps"):
            value = extra_fields.get(key)
            if value is not None:
                self.global_steps.append(int(value))


def cut_after_stop(tokenizer, ids: list[int], logprobs: list[float], stop: str) -> tuple[list[int], list[float]]:
    """The shortest prefix of `ids` (and its log-probs) whose text contains `stop` (binary search: containing it
    only grows with the prefix)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if stop in decode(tokenizer, ids[:mid], skip_special_tokens=False):
            hi = mid
        else:
            lo = mid + 1
    return ids[:lo], logprobs[:lo]


def finish_reason(text: str, ids: list[int], stops: Iterable[str], eos_ids: frozenset[int]
                  ) -> tuple[str, str | None]:
    """("stop", the first stop string in `text`) | ("eos", None) | ("length", None) for one round."""
    found = [(text.find(s), s) for s in stops if s and s in text]
    if found:
        return "stop", min(found)[1]
    if ids and ids[-1] in eos_ids:
        return "eos", None
    return "length", None
