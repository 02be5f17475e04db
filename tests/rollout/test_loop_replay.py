"""The loop on replayed transcripts with the real LocalSandbox: ids/mask/text invariants and every edge case."""

import asyncio
import math
import time

import pytest

from torl.rollout import RolloutConfig, build_prompt, run_rollouts
from torl.rollout.backends.replay import ReplayBackend
from torl.rollout.loop import arun_rollouts
from torl.rollout.observation import REFERENCE_TIMEOUT_TEXT
from torl.rollout.tokens import decode, encode_plain
from torl.sandbox import ExecResult, Sandbox

from .conftest import check_invariants

PROMPT = build_prompt("What is 3 + 4?")
CODE_ROUND = "Let me compute.\n```python\nprint(3 + 4)\n```\n```output"
ANSWER = "\nSo the answer is \\boxed{7}."


def roll(tokenizer, sandbox, scripts, n=None, **config):
    backend = ReplayBackend(tokenizer, scripts)
    prompts = [PROMPT] * (n or len(scripts))
    results = run_rollouts(prompts, backend=backend, sandbox=sandbox, config=RolloutConfig(**config))
    for r in results:
        check_invariants(r, tokenizer, replay=True)
    return results, backend


def test_one_tool_call(tokenizer, local_sandbox):
    (r,), backend = roll(tokenizer, local_sandbox, [[CODE_ROUND, ANSWER]])
    assert r.text == CODE_ROUND + "\n7\n```\n" + ANSWER
    assert r.num_executions == 1 and r.finish_reason == "eos" and not r.truncated
    assert r.has_code and r.all_executions_ok and r.num_rounds == 2
    (tc,) = r.tool_calls
    assert (tc.code, tc.result.status, tc.result.stdout, tc.observation, tc.inserted) == \
        ("print(3 + 4)\n", "ok", "7\n", "7", "\n7\n```\n")
    assert [v for v, _ in r.mask_runs()] == [1, 0, 1]
    # the model's tokens are exactly the replayed ones: round 1 (stop marker included), round 2 + EOS
    first, second = backend.requests
    round1 = encode_plain(tokenizer, CODE_ROUND)
    assert r.completion_ids[: len(round1)] == round1 and first.stop == ("```output",)
    assert r.completion_ids[-1] == tokenizer.eos_token_id
    assert second.prompt_ids == r.prompt_ids + r.completion_ids[: len(second.prompt_ids) - len(r.prompt_ids)]
    assert second.stop == ()  # C used up: the next round runs without the stop string


def test_no_tool_calls_allowed(tokenizer):
    # C = 0: no stop string at all; the model's own fake output stays model text, nothing runs
    (r,), backend = roll(tokenizer, None, [[CODE_ROUND + "\n99\n```\n" + ANSWER]], max_tool_calls=0)
    assert backend.requests[0].stop == ()
    assert r.num_executions == 0 and r.tool_calls == [] and set(r.mask) == {1}
    assert "```output\n99\n```" in r.text and r.has_code and r.all_executions_ok


@pytest.mark.parametrize("c", [2, 3])
def test_two_executions_mask_every_observation(tokenizer, local_sandbox, c):
    rounds = ["First.\n```python\nprint(6 * 7)\n```\n```output",
              "\nNow check.\n```python\nprint(sum(range(5)))\n```\n```output",
              ANSWER]
    (r,), backend = roll(tokenizer, local_sandbox, [rounds], max_tool_calls=c)
    assert r.num_executions == 2 and [tc.observation for tc in r.tool_calls] == ["42", "10"]
    assert [v for v, _ in r.mask_runs()] == [1, 0, 1, 0, 1]  # right for C >= 2 (the reference's is not)
    assert [q.stop for q in backend.requests] == [("```output",), ("```output",),
                                                  ("```output",) if c == 3 else ()]
    assert r.text.count("```output\n") == 2


def test_stop_at_the_very_first_token(tokenizer, local_sandbox):
    (r,), _ = roll(tokenizer, local_sandbox, [["```output", "\nHmm.\n" + CODE_ROUND[len("Let me compute.\n"):],
                                                ANSWER]])
    assert r.num_rounds == 3 and r.num_executions == 1  # the first stop had no code: nothing ran
    assert r.text.startswith("```output\nHmm.\n```python")
    assert [v for v, _ in r.mask_runs()] == [1, 0, 1]


def test_unclosed_block_and_output_without_code_run_nothing(tokenizer, local_sandbox):
    scripts = [["```python\nprint(1)\n```output", ANSWER],          # unclosed block
               ["I think it is 7.\n```output", "\n7\n```\n" + ANSWER]]  # marker without any code
    results, _ = roll(tokenizer, local_sandbox, scripts)
    for r in results:
        assert r.num_executions == 0 and set(r.mask) == {1} and r.finish_reason == "eos"
    assert results[0].has_code and not results[1].has_code


def test_several_blocks_only_the_last_runs(tokenizer, local_sandbox):
    rnd = "```python\nprint('A')\n```\nBetter:\n```python\nprint('B')\n```\n```output"
    (r,), _ = roll(tokenizer, local_sandbox, [[rnd, ANSWER]])
    assert [tc.observation for tc in r.tool_calls] == ["B"]


def test_fake_output_after_the_last_call_is_model_text(tokenizer, local_sandbox):
    second = "\nAgain:\n```python\nprint(1 / 0)\n```\n```output\n99\n```\nSo \\boxed{99}."
    (r,), backend = roll(tokenizer, local_sandbox, [[CODE_ROUND, second]], max_tool_calls=1)
    assert r.num_executions == 1 and backend.requests[1].stop == ()
    assert r.text.endswith(second)
    tail = encode_plain(tokenizer, second)
    assert r.mask[-len(tail) - 1:] == [1] * (len(tail) + 1)  # + EOS


def test_length_cap_inside_an_observation(tokenizer, local_sandbox):
    code = "```python\nprint('abcdefghij ' * 20)\n```\n```output"
    n_model = len(encode_plain(tokenizer, code))
    (r,), backend = roll(tokenizer, local_sandbox, [[code, ANSWER]], max_response_tokens=n_model + 7)
    assert r.truncated and r.finish_reason == "length" and len(r.completion_ids) == n_model + 7
    (tc,) = r.tool_calls
    full = "\n" + tc.observation + "\n```\n"
    assert full.startswith(tc.inserted) and len(tc.inserted) < len(full)
    assert r.mask == [1] * n_model + [0] * 7
    assert len(backend.requests) == 1  # nothing is generated after the cap


def test_length_cap_inside_a_model_round(tokenizer, local_sandbox):
    (r,), backend = roll(tokenizer, local_sandbox, [[CODE_ROUND, ANSWER]], max_response_tokens=5)
    assert r.truncated and r.finish_reason == "length" and len(r.completion_ids) == 5
    assert r.num_executions == 0 and backend.requests[0].max_new_tokens == 5
    # the budget of each round is what is left of the cap, observations included
    (r,), backend = roll(tokenizer, local_sandbox, [[CODE_ROUND, ANSWER]], max_response_tokens=100)
    used = len(r.prompt_ids) + 100 - len(backend.requests[1].prompt_ids)
    assert backend.requests[1].max_new_tokens == used


def test_stop_ending_inside_a_token(tokenizer, local_sandbox):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.add_tokens(["put\n"])  # "```output\n" now ends in one token: "```", "out", "put\n"
    rnd = "```python\nprint(3 + 4)\n```\n```output\n"
    assert "put\n" in [tok.decode([i]) for i in encode_plain(tok, rnd)]
    (r,), _ = roll(tok, local_sandbox, [[rnd, "So \\boxed{7}."]])
    (tc,) = r.tool_calls
    assert tc.inserted == "7\n```\n"  # the model already wrote the newline after the marker
    assert r.text == rnd + "7\n```\nSo \\boxed{7}."


def test_engine_that_drops_the_stop_text(tokenizer, local_sandbox):
    backend = ReplayBackend(tokenizer, [[CODE_ROUND, ANSWER]], drop_stop_text=True)
    (r,) = run_rollouts([PROMPT], backend=backend, sandbox=local_sandbox, config=RolloutConfig())
    check_invariants(r, tokenizer, replay=True)
    assert r.text == CODE_ROUND + "\n7\n```\n" + ANSWER  # the marker is back, as model tokens
    restored = [i for i, lp in enumerate(r.logprobs) if math.isnan(lp)]
    assert restored and all(r.mask[i] == 1 for i in restored)
    assert decode(tokenizer, [r.completion_ids[i] for i in restored]).endswith("output")


def test_reference_style_in_the_loop(tokenizer, local_sandbox):
    silent = "```python\nx = 1\n```\n```output"
    (r,), _ = roll(tokenizer, local_sandbox, [[silent, ANSWER]], observation_style="reference")
    assert r.tool_calls[0].observation == REFERENCE_TIMEOUT_TEXT
    assert r.all_executions_ok  # the status stays truthful even when the text is not


def test_failed_and_timed_out_calls(tokenizer, local_sandbox):
    scripts = [["```python\nprint(undefined)\n```\n```output", ANSWER],
               ["```python\nwhile True: pass\n```\n```output", ANSWER]]
    results, _ = roll(tokenizer, local_sandbox, scripts, exec_timeout=0.5)
    assert results[0].tool_calls[0].observation == "NameError: name 'undefined' is not defined"
    assert results[1].tool_calls[0].result.status == "timeout"
    assert results[1].tool_calls[0].observation.startswith("TimeoutError: ")
    assert not results[0].all_executions_ok and not results[1].all_executions_ok


class _Broken(Sandbox):
    def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
        raise ConnectionError("sandbox host unreachable")


class _Silent(Sandbox):
    async def arun(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
        await asyncio.sleep(3600)

    def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
        raise NotImplementedError


def test_a_failing_sandbox_becomes_an_observation(tokenizer):
    (r,), _ = roll(tokenizer, _Broken(), [[CODE_ROUND, ANSWER]])
    assert r.tool_calls[0].result.status == "sandbox_error"
    assert "ConnectionError: sandbox host unreachable" in r.tool_calls[0].observation
    (r,), _ = roll(tokenizer, _Silent(), [[CODE_ROUND, ANSWER]], exec_timeout=0.2, tool_grace_s=0.2)
    assert r.tool_calls[0].result.status == "timeout" and r.finish_reason == "eos"


def test_a_hanging_call_costs_only_its_own_sample(tokenizer, local_sandbox):
    hang = "```python\nimport time\ntime.sleep(30)\n```\n```output"
    scripts = [[hang, ANSWER]] + [[CODE_ROUND, ANSWER]] * 5
    finished = {}
    start = time.monotonic()
    backend = ReplayBackend(tokenizer, scripts, latency_s=0.01)
    results = run_rollouts([PROMPT] * 6, backend=backend, sandbox=local_sandbox,
                           config=RolloutConfig(exec_timeout=2.5),
                           progress=lambda i, r: finished.setdefault(i, time.monotonic() - start))
    assert results[0].tool_calls[0].result.status == "timeout"
    assert finished[0] >= 2.5
    assert max(finished[i] for i in range(1, 6)) < 1.5  # the others did not wait for it
    assert all(r.tool_calls[0].observation == "7" for r in results[1:])


def test_results_keep_input_order_and_samples_are_independent(tokenizer, local_sandbox):
    scripts = [[f"```python\nprint({k} * 11)\n```\n```output", f"\\boxed{{{k * 11}}}"] for k in range(8)]
    results, _ = roll(tokenizer, local_sandbox, scripts)
    assert [r.tool_calls[0].observation for r in results] == [str(k * 11) for k in range(8)]


def test_token_id_prompts_and_running_inside_an_event_loop(tokenizer, local_sandbox):
    ids = tokenizer.encode(PROMPT)

    async def main():
        # run_rollouts from inside a running loop (a notebook, an async trainer) and the async form
        sync = run_rollouts([ids], backend=ReplayBackend(tokenizer, [[CODE_ROUND, ANSWER]]),
                            sandbox=local_sandbox, config=RolloutConfig())
        asy = await arun_rollouts([ids], backend=ReplayBackend(tokenizer, [[CODE_ROUND, ANSWER]]),
                                  sandbox=local_sandbox, config=RolloutConfig())
        return sync[0], asy[0]

    a, b = asyncio.run(main())
    assert a.prompt_ids == b.prompt_ids == ids and a.text == b.text and a.num_executions == 1


def test_a_sandbox_is_required_for_tool_calls(tokenizer):
    with pytest.raises(ValueError, match="sandbox"):
        run_rollouts([PROMPT], backend=ReplayBackend(tokenizer, [[ANSWER]]), sandbox=None, config=RolloutConfig())


def test_backend_errors_propagate(tokenizer, local_sandbox):
    backend = ReplayBackend(tokenizer, [[CODE_ROUND]])  # a second round is not scripted
    with pytest.raises(IndexError, match="round 2 was requested"):
        run_rollouts([PROMPT], backend=backend, sandbox=local_sandbox, config=RolloutConfig())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_tool_calls": -1}, "max_tool_calls"), ({"max_response_tokens": 0}, "max_response_tokens"),
    ({"observation_style": "pretty"}, "observation_style"), ({"top_p": 0}, "top_p"),
    ({"stop": ""}, "stop"), ({"obs_max_chars": 10}, "obs_head_chars \\+ obs_tail_chars must be <= obs_max_chars"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RolloutConfig(**kwargs)


def test_result_to_dict(tokenizer, local_sandbox):
    (r,), _ = roll(tokenizer, local_sandbox, [[CODE_ROUND, ANSWER]])
    d = r.to_dict()
    assert d["mask_runs"] == [[1, r.mask_runs()[0][1]], [0, r.num_observation_tokens], [1, r.mask_runs()[2][1]]]
    assert d["tool_calls"][0]["result"]["status"] == "ok" and d["completion_ids"] == r.completion_ids
    assert "completion_ids" not in r.to_dict(ids=False)
    assert isinstance(ExecResult.from_dict(d["tool_calls"][0]["result"]), ExecResult)
