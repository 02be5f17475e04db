"""VerlServerBackend: what it asks veRL's server for, and how it tells eos / stop / length apart when the server
says "completed" for all of them."""

from __future__ import annotations

import asyncio
import math

import pytest

from torl.rollout import RolloutResult
from torl.rollout.backends.base import GenerationRequest
from torl.verl.backend import VerlServerBackend, finish_reason

pytestmark = pytest.mark.engines

EOS = frozenset({0})


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model))


def test_finish_reason_from_the_tokens():
    assert finish_reason("x = 1\n```output", [5, 6], ["```output"], EOS) == ("stop", "```output")
    assert finish_reason("x ```output\n", [5, 6], ["```output"], EOS) == ("stop", "```output")  # overshoot
    assert finish_reason("done", [5, 0], ["```output"], EOS) == ("eos", None)
    assert finish_reason("done", [5, 6], ["```output"], EOS) == ("length", None)
    assert finish_reason("```output", [5, 6], [], EOS) == ("length", None)  # not asked to stop: no stop
    assert finish_reason("", [], ["```output"], EOS) == ("length", None)


class _Server:
    """Records what the backend sends; answers with fixed ids (this tests the request, not a model)."""

    def __init__(self, ids, log_probs):
        from verl.workers.rollout.replica import TokenOutput

        self.out = TokenOutput(token_ids=ids, log_probs=log_probs, stop_reason="completed",
                               extra_fields={"global_steps": 7})
        self.seen = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        self.seen.append((request_id, prompt_ids, dict(sampling_params), kwargs))
        sampling_params.pop("max_tokens")  # veRL's server pops keys: the backend must not reuse the dict
        return self.out


def test_request_params_and_one_request_id(tokenizer):
    ids = tokenizer.encode("print(1)\n```\n```output", add_special_tokens=False)
    server = _Server(ids, [-0.5] * len(ids))
    backend = VerlServerBackend(server, tokenizer, request_id="rid", eos_ids=[tokenizer.eos_token_id],
                                sampling_params={"temperature": 0.3, "top_p": 0.9, "top_k": -1, "logprobs": True,
                                                 "repetition_penalty": 1.0}, priority=3)

    async def go():
        a = await backend.agenerate(GenerationRequest([1, 2], 50, ("```output",), 1.0, 1.0, seed=11))
        b = await backend.agenerate(GenerationRequest([1, 2, 3], 40, (), 0.0, 1.0))
        return a, b

    a, b = asyncio.run(go())
    assert a.finish_reason == "stop" and a.token_ids == ids and a.logprobs == [-0.5] * len(ids)
    (rid1, _, p1, k1), (rid2, _, p2, _) = server.seen
    assert rid1 == rid2 == "rid" and k1 == {"priority": 3}
    assert p1 == {"top_k": -1, "logprobs": True, "repetition_penalty": 1.0, "temperature": 1.0, "top_p": 1.0,
                  "max_tokens": 50, "stop": ["```output"], "include_stop_str_in_output": True, "seed": 11}
    assert p2["max_tokens"] == 40 and p2["temperature"] == 0.0 and "stop" not in p2
    assert b.finish_reason == "length"  # the same tokens, but no stop was asked for and no EOS came
    assert backend.global_steps == [7, 7]


def test_logprobs_for_veRL():
    from torl.verl.agent_loop import response_logprobs

    res = RolloutResult("p", [1], completion_ids=[5, 6, 7], mask=[1, 0, 1], logprobs=[-0.1, 0.0, -0.2])
    assert response_logprobs(res, requested=True) == [-0.1, 0.0, -0.2]
    assert response_logprobs(res, requested=False) is None
    res.logprobs = [-0.1, 0.0, math.nan]  # a model token without its logprob (a restored stop text)
    with pytest.raises(RuntimeError, match="without a logprob"):
        response_logprobs(res, requested=True)


class _ScriptedServer:
    """Answers each request with the next scripted (token ids, stop_reason), as veRL's server would."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.prompts = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        self.prompts.append(list(prompt_ids))
        ids, reason = self.answers.pop(0)
        return TokenOutput(token_ids=ids, log_probs=[-0.25] * len(ids), stop_reason=reason, extra_fields={})


def test_a_round_resumed_inside_the_stop_marker_ends_at_the_marker(tokenizer):
    # aborted right after "```": the resumed request's server only looks for the stop in its new text, so it
    # samples on past "```output" (here: a made-up observation and an answer); none of that may reach the sample
    head = tokenizer.encode("print(6*7)\n```\n```", add_special_tokens=False)
    tail = tokenizer.encode("output\n42\n```\nSo \\boxed{42}.", add_special_tokens=False) + [tokenizer.eos_token_id]
    server = _ScriptedServer([(head, "aborted"), (tail, "completed")])
    backend = VerlServerBackend(server, tokenizer, request_id="rid", eos_ids=[tokenizer.eos_token_id],
                                resume_delay_s=0.0)
    gen = asyncio.run(backend.agenerate(GenerationRequest([1, 2], 64, ("```output",), 1.0, 1.0)))
    text = tokenizer.decode(gen.token_ids)
    assert gen.finish_reason == "stop" and gen.stop_text == "```output"
    assert "```output" in text and "42" not in text.split("```output", 1)[1] and "boxed" not in text
    assert gen.token_ids == (head + tail)[: len(gen.token_ids)] and len(gen.logprobs) == len(gen.token_ids)
    assert server.prompts[1] == [1, 2, *head] and backend.aborts == 1
