"""ReplayBackend: plays scripted model outputs, as an engine would sample them (tests, debugging, benchmarks).

`scripts[sample][round]` is what the "model" writes in that round: text (tokenised on its own) or exact token
ids. The script is emitted token by token and ends like a real engine would: at the first stop string of the
request (the stop's tokens included), at an EOS token in the script, at `max_new_tokens`, or when the script
runs out (then an EOS token is appended, if `eos`). Logprobs are `replay_logprob(token_id)`, so tests can check
that they stay aligned with their tokens.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from torl.rollout.backends.base import Backend, Generation, GenerationRequest
from torl.rollout.tokens import decode, encode_plain, eos_token_ids, first_stop

Script = str | Sequence[int]


def replay_logprob(token_id: int) -> float:
    """The logprob the replay backend reports for a token: a fixed function of its id."""
    return -((token_id % 97) + 1) / 100.0


class ReplayBackend(Backend):
    """Scripted generation.

    scripts: per sample, a list of round scripts; or a function (request) -> script.
    drop_stop_text: behave like an engine that returns only the tokens *before* a matched stop string.
    latency_s: sleep this long per request (to simulate an engine).
    """

    name = "replay"

    def __init__(self, tokenizer, scripts: Sequence[Sequence[Script]] | Callable[[GenerationRequest], Script], *,
                 eos: bool = True, drop_stop_text: bool = False, latency_s: float = 0.0) -> None:
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer = tokenizer
        self.scripts = scripts
        self.eos = eos
        self.drop_stop_text = drop_stop_text
        self.latency_s = latency_s
        self.eos_ids = eos_token_ids(tokenizer)
        self.requests: list[GenerationRequest] = []

    def script_for(self, request: GenerationRequest) -> Script:
        if callable(self.scripts):
            return self.scripts(request)
        rounds = self.scripts[request.sample_index]
        if request.round_index >= len(rounds):
            raise IndexError(f"replay: sample {request.sample_index} has {len(rounds)} scripted round(s), "
                             f"round {request.round_index + 1} was requested")
        return rounds[request.round_index]

    def generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        script = self.script_for(request)
        ids = encode_plain(self.tokenizer, script) if isinstance(script, str) else [int(t) for t in script]
        limit = request.max_new_tokens
        stop_text = None
        ends = []  # on a tie the earlier entry wins: eos, then stop, then the budget
        eos_at = next((k + 1 for k, t in enumerate(ids) if t in self.eos_ids), None)
        if eos_at is not None:
            ends.append((eos_at, "eos"))
        hit = first_stop(self.tokenizer, ids, request.stop)
        if hit is not None:
            ends.append((hit[0], "stop"))
        ends.append((limit, "length"))
        end, finish = min(ends, key=lambda e: e[0])
        if end > len(ids):  # the script ran out first
            end = len(ids)
            if self.eos and self.eos_ids and len(ids) < limit:
                ids, end, finish = ids + [self.eos_ids[0]], len(ids) + 1, "eos"
        out = ids[:end]
        if finish == "stop":
            stop_text = hit[1]  # type: ignore[index]
            if self.drop_stop_text:
                out = self._before_stop(out, stop_text)
        return Generation(out, [replay_logprob(t) for t in out], finish, stop_text)  # type: ignore[arg-type]

    def _before_stop(self, ids: list[int], stop: str) -> list[int]:
        start = decode(self.tokenizer, ids, skip_special_tokens=False).find(stop)
        keep = len(ids)
        while keep and len(decode(self.tokenizer, ids[:keep], skip_special_tokens=False)) > start:
            keep -= 1
        return ids[:keep]

    async def agenerate(self, request: GenerationRequest) -> Generation:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return self.generate(request)
