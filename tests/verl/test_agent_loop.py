"""The torl_tir agent loop inside veRL 0.9.1's real AgentLoopWorker: registered through the YAML, fed by
RLHFDataset on torl's parquet, padded by veRL, scored by veRL's RewardLoopWorker with torl's compute_score.
The only stand-in is the inference server (a real tiny model behind veRL's generate contract)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections import defaultdict

import numpy as np
import pytest

from tests.verl.conftest import LocalActor, TransformersServer, compose, small_overrides

pytestmark = pytest.mark.engines

N = 2  # samples per prompt
PROMPTS = 2


def _run(config, tiny_model, batch, *, validate=False):
    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker

    async def go():  # veRL objects capture the running loop when built: build them inside it
        server = TransformersServer(tiny_model, config.actor_rollout_ref.rollout.response_length)
        reward = RewardLoopWorker(config)
        worker = AgentLoopWorker(config, server, reward_loop_worker_handles=[LocalActor(reward)])
        batch.meta_info["validate"] = validate
        return await worker.generate_sequences(batch), server

    return asyncio.run(go())


def _gen_batch(config, tokenizer, path):
    """What veRL's trainer hands the agent loop: RLHFDataset rows, collated, with uids, repeated n times."""
    from verl.protocol import DataProto
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(str(path), tokenizer, config.data)
    batch = DataProto.from_single_dict(collate_fn([dataset[i] for i in range(PROMPTS)]))
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(PROMPTS)], dtype=object)
    batch.pop(batch_keys=["dummy_tensor"])
    return batch.repeat(repeat_times=N, interleave=True)


@pytest.fixture(scope="module")
def setup(tiny_model, verl_parquet):
    from transformers import AutoTokenizer

    config = compose(small_overrides(tiny_model, verl_parquet))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    return config, tokenizer


@pytest.fixture(scope="module")
def rollout(setup, tiny_model, verl_parquet):
    config, tokenizer = setup
    batch = _gen_batch(config, tokenizer, verl_parquet)
    out, server = _run(config, tiny_model, batch)
    return config, tokenizer, batch, out, server


def _valid(out, i):
    """(prompt ids, response ids, response mask, logprobs) of sample i without veRL's padding."""
    prompt_len = out.batch["prompts"].shape[1]
    attn = out.batch["attention_mask"][i]
    p_mask, r_mask = attn[:prompt_len].bool(), attn[prompt_len:].bool()
    resp_len = int(r_mask.sum())
    assert bool(r_mask[:resp_len].all()) and not bool(r_mask[resp_len:].any()), "response must be right-padded"
    return (out.batch["prompts"][i][p_mask].tolist(), out.batch["responses"][i][:resp_len].tolist(),
            out.batch["response_mask"][i][:resp_len].tolist(), out.batch["rollout_log_probs"][i][:resp_len].tolist())


def test_padding_shapes_and_prompt(rollout, tiny_model):
    from torl.data.verl import read_verl_parquet
    from torl.rollout import build_prompt
    from torl.rollout.tokens import encode_prompt

    config, tokenizer, batch, out, _ = rollout
    rc = config.actor_rollout_ref.rollout
    assert len(out) == PROMPTS * N
    assert tuple(out.batch["prompts"].shape) == (PROMPTS * N, rc.prompt_length)
    assert tuple(out.batch["responses"].shape) == (PROMPTS * N, rc.response_length)
    assert tuple(out.batch["input_ids"].shape) == (PROMPTS * N, rc.prompt_length + rc.response_length)
    problems = read_verl_parquet(config.data.train_files)
    for i in range(len(out)):
        prompt_ids, response_ids, mask, _ = _valid(out, i)
        # the TORL template (TORL-SPEC §3) around the bare problem, once: no doubled instruction line
        assert prompt_ids == encode_prompt(tokenizer, build_prompt(problems[i // N].problem))
        # left-padded prompt, positions counting from the first real token
        attn = out.batch["attention_mask"][i]
        pos = out.batch["position_ids"][i]
        first = int(attn.nonzero()[0])
        assert pos[first:first + len(prompt_ids) + len(response_ids)].tolist() == list(
            range(len(prompt_ids) + len(response_ids)))
        assert out.batch["response_mask"][i][len(response_ids):].sum() == 0


def test_tool_calls_ran_and_observations_are_masked(rollout):
    from torl.rollout.tokens import decode

    _, tokenizer, _, out, _ = rollout
    calls = out.non_tensor_batch["tool_calls"]
    assert sum(len(c) for c in calls) >= 1, "the trained tiny model writes code; some must have run"
    for i in range(len(out)):
        _, response_ids, mask, _ = _valid(out, i)
        obs_spans, start = [], 0
        for value, run in _runs(mask):
            if value == 0:
                obs_spans.append(decode(tokenizer, response_ids[start:start + run]))
            start += run
        assert len(obs_spans) == len(calls[i]) == out.non_tensor_batch["num_executions"][i]
        text = decode(tokenizer, response_ids)
        for span, call in zip(obs_spans, calls[i], strict=True):
            assert call["status"] in ("ok", "error", "timeout")
            if call["status"] == "ok":
                assert call["stdout"].strip() in span  # the sandbox's real output, inserted and masked out
            assert text.index(span) > text.index("```output")  # the marker itself is a model token
    assert any(c["status"] == "ok" for cs in calls for c in cs)


def test_tokens_and_logprobs_are_the_servers(rollout):
    _, _, _, out, server = rollout
    by_request = defaultdict(list)
    for call in server.calls:
        by_request[call["request_id"]].append(call)
    assert len(by_request) == len(out), "one request id per sample, for all its rounds"
    returned = {rid: calls for rid, calls in by_request.items()}
    seen = set()
    for i in range(len(out)):
        _, response_ids, mask, logprobs = _valid(out, i)
        model_ids = [t for t, m in zip(response_ids, mask, strict=True) if m]
        model_lps = [lp for lp, m in zip(logprobs, mask, strict=True) if m]
        assert all(math.isfinite(lp) and lp <= 0 for lp in model_lps)
        match = [rid for rid, calls in returned.items()
                 if sum((c["out"].token_ids for c in calls), []) == model_ids]
        assert len(match) == 1
        seen.add(match[0])
        calls = returned[match[0]]
        assert model_lps == pytest.approx(sum((c["out"].log_probs for c in calls), []), abs=1e-6)
        # C = 1: rounds stop at the marker until one execution, then one round without it
        executed = out.non_tensor_batch["num_executions"][i]
        for c in calls:
            assert c["params"].temperature == 1.0
        assert all(c["params"].stop == ["```output"] and c["params"].include_stop_str_in_output
                   for c in calls[:len(calls) - executed])
        if executed:
            assert not calls[-1]["params"].stop
        assert out.non_tensor_batch["__num_turns__"][i] == 1 + len(calls) + executed
    assert len(seen) == len(out)


def test_streaming_reward_is_torls(rollout):
    from torl.rollout.tokens import decode
    from torl.verl.reward import compute_score

    config, tokenizer, batch, out, _ = rollout
    for i in range(len(out)):
        _, response_ids, _, _ = _valid(out, i)
        gold = batch.non_tensor_batch["reward_model"][i]["ground_truth"]
        text = tokenizer.decode(response_ids, skip_special_tokens=True)
        expected = compute_score("demo", text, gold)
        scores = out.batch["rm_scores"][i]
        assert float(scores[len(response_ids) - 1]) == expected["score"]
        assert float(scores.sum()) == expected["score"]
        assert out.non_tensor_batch["acc"][i] == expected["acc"]
        assert out.non_tensor_batch["pred"][i] == expected["pred"]
        assert decode(tokenizer, response_ids).startswith(text[:10])


def test_validation_is_greedy(setup, tiny_model, verl_parquet):
    config, tokenizer = setup
    batch = _gen_batch(config, tokenizer, verl_parquet)
    out, server = _run(config, tiny_model, batch, validate=True)
    assert {c["params"].temperature for c in server.calls} == {0.0}
    for p in range(PROMPTS):  # greedy: the n copies of a prompt are the same response
        a, b = (out.batch["responses"][p * N + k].tolist() for k in range(2))
        assert a == b


def _runs(mask):
    runs = []
    for m in mask:
        if runs and runs[-1][0] == m:
            runs[-1][1] += 1
        else:
            runs.append([m, 1])
    return runs
