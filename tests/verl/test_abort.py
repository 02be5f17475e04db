"""veRL's async trainer modes abort in-flight requests at a weight update. An aborted round is resumed from the
tokens it already has, by veRL's real `FullyAsyncLLMServerClient` (colocate_async / separate_async) or, behind
veRL's plain `LLMServerClient`, by torl's backend; it is never trained on as a truncated round, and the sample
records the policy versions it was generated under. A round that stays aborted fails the sample visibly.
Stand-ins: the load balancer (a Ray actor in veRL) and the server (a real tiny model that aborts like veRL's vLLM
server: the tokens so far, stop_reason "aborted", then a new weight version)."""

from __future__ import annotations

import asyncio

import pytest

from tests.verl.conftest import LocalActor, TransformersServer, compose, small_overrides
from tests.verl.test_agent_loop import _gen_batch, _valid

pytestmark = pytest.mark.engines

CUT = 6  # tokens a request gets before the (first) abort


class AbortingServer:
    """Aborts the first `aborts` requests after CUT tokens, as veRL's vLLM server answers a request that
    pause_generation aborted, and bumps the weight version after each abort (the weight update)."""

    def __init__(self, inner: TransformersServer, aborts: int) -> None:
        self.inner, self.aborts_left, self.version = inner, aborts, 0
        self.answers: list = []

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        from verl.workers.rollout.replica import TokenOutput

        params = dict(sampling_params)
        abort = self.aborts_left > 0 and params.get("max_tokens", CUT + 1) > CUT
        if self.aborts_left == float("inf"):  # a server that keeps aborting, before any token
            out = TokenOutput(token_ids=[], log_probs=None, stop_reason="aborted",
                              extra_fields={"global_steps": self.version})
            self.answers.append(out)
            return out
        if abort:
            params["max_tokens"] = CUT
        out = await self.inner.generate(request_id, prompt_ids=prompt_ids, sampling_params=params, **kwargs)
        out.extra_fields = {"global_steps": self.version}
        if abort and len(out.token_ids) == CUT:
            self.aborts_left -= 1
            out = TokenOutput(token_ids=out.token_ids, log_probs=out.log_probs, stop_reason="aborted",
                              extra_fields={"global_steps": self.version})
            self.version += 1
        self.answers.append(out)
        return out


class Balancer:
    """veRL's global load balancer, reduced to handing out the one server."""

    def __init__(self, server) -> None:
        self.server = LocalActor(server)

    async def require_acquire_fields(self):
        return []

    async def require_release_fields(self):
        return []

    async def acquire_server(self, request_id, **fields):
        return "server-0", self.server

    def release_server(self, server_id, **fields):
        return None


def _one_sample(config, tiny_model, verl_parquet, client_cls, aborts):
    from transformers import AutoTokenizer
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    batch = _gen_batch(config, tokenizer, verl_parquet)[0:1]
    server = AbortingServer(TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length), aborts)

    async def go():
        client = client_cls(config, load_balancer_handle=LocalActor(Balancer(server)))
        worker = AgentLoopWorker(config, client)
        batch.meta_info["validate"] = False
        return await worker.generate_sequences(batch)

    return asyncio.run(go()), server


@pytest.mark.parametrize("client", ["FullyAsyncLLMServerClient", "LLMServerClient"])
def test_aborted_round_resumes_from_its_tokens(tiny_model, verl_parquet, client):
    import verl.workers.rollout.llm_server as llm_server

    config = compose(small_overrides(tiny_model, verl_parquet, max_tool_calls=0))
    out, server = _one_sample(config, tiny_model, verl_parquet, getattr(llm_server, client), aborts=1)
    assert server.version == 1, "the server aborted the round once"
    _, response_ids, mask, logprobs = _valid(out, 0)
    answers = server.answers
    assert answers[0].stop_reason == "aborted" and len(answers[0].token_ids) == CUT
    # the sample is the aborted tokens plus their continuation, with the server's logprobs, all trained on
    assert response_ids == sum((a.token_ids for a in answers), [])
    assert logprobs == pytest.approx(sum((a.log_probs for a in answers), []), abs=1e-6)
    assert len(response_ids) > CUT and all(mask)
    assert out.non_tensor_batch["finish_reason"][0] in ("eos", "length")
    if out.non_tensor_batch["finish_reason"][0] == "length":  # only when the whole response budget was used
        assert len(response_ids) == config.actor_rollout_ref.rollout.response_length
    # the policy versions it was generated under
    assert (out.non_tensor_batch["min_global_steps"][0], out.non_tensor_batch["max_global_steps"][0]) == (0, 1)
    # veRL's FullyAsync client resumes itself; behind the plain client torl's backend did
    assert out.non_tensor_batch["aborts"][0] == (1 if client == "LLMServerClient" else 0)


def test_a_round_that_stays_aborted_fails_the_sample(tiny_model, verl_parquet):
    from verl.workers.rollout.llm_server import LLMServerClient

    from torl.verl.failures import SampleFailed

    config = compose(small_overrides(tiny_model, verl_parquet, max_tool_calls=0, abort_resume_s=0))
    with pytest.raises(SampleFailed, match=r"torl_tir sample data_source='demo' index=0 .*SampleAborted: request "
                                           r"\w+: a round was still aborted by the server after 0 s") as info:
        _one_sample(config, tiny_model, verl_parquet, LLMServerClient, aborts=float("inf"))
    assert info.value.kind == "aborted"
