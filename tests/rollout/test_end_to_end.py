"""Real runs: tiny transformers models on CPU, the real LocalSandbox, nothing scripted."""

import math

import pytest
import torch

from torl.rollout import RolloutConfig, build_prompt, format_observation, make_backend, run_rollouts
from torl.train.tiny_model import arithmetic_problems

from .conftest import check_invariants


@pytest.mark.parametrize("c", [0, 1])
def test_random_model(tiny_dir, local_sandbox, c):
    backend = make_backend("transformers", tiny_dir, device="cpu", seed=0)
    prompts = [build_prompt(p.problem) for p in arithmetic_problems(2, seed=3) for _ in range(3)]
    results = run_rollouts(prompts, backend=backend, sandbox=local_sandbox,
                           config=RolloutConfig(max_tool_calls=c, max_response_tokens=40))
    assert len(results) == 6
    for r in results:
        check_invariants(r, backend.tokenizer)
        assert 0 < len(r.completion_ids) <= 40 and r.num_executions <= c
        assert all(lp <= 0 and math.isfinite(lp) for lp, m in zip(r.logprobs, r.mask, strict=True) if m)
    assert len({tuple(r.completion_ids) for r in results}) > 1  # samples are drawn independently


def test_trained_model_runs_its_code_in_the_local_sandbox(trained_dir, local_sandbox):
    backend = make_backend("transformers", trained_dir, device="cpu", seed=0)
    prompts = [build_prompt(p.problem) for p in arithmetic_problems(4, seed=11) for _ in range(2)]
    results = run_rollouts(prompts, backend=backend, sandbox=local_sandbox,
                           config=RolloutConfig(max_tool_calls=1, max_response_tokens=96))
    calls = [tc for r in results for tc in r.tool_calls]
    assert len(calls) >= 4, [r.text for r in results]
    for r in results:
        check_invariants(r, backend.tokenizer)
        assert r.num_executions <= 1
    for tc in calls:  # what the model saw is what running its code gives
        fresh = local_sandbox.run(tc.code, timeout=10)
        assert (tc.result.status, tc.result.stdout) == (fresh.status, fresh.stdout)
        assert tc.observation == format_observation(fresh)
        assert f"```output\n{tc.observation}\n```\n" in "".join(r.text for r in results)


def test_sampled_ids_and_logprobs_are_what_training_sees(trained_dir, local_sandbox):
    """Token-in/token-out: a forward pass over prompt + completion (observations included) gives the sampler's
    logprobs at every model token, in every round — no re-tokenisation drift."""
    backend = make_backend("transformers", trained_dir, device="cpu", seed=1)
    prompts = [build_prompt(p.problem) for p in arithmetic_problems(3, seed=5)]
    results = run_rollouts(prompts, backend=backend, sandbox=local_sandbox,
                           config=RolloutConfig(max_tool_calls=2, max_response_tokens=96, temperature=1.0))
    assert any(r.num_executions for r in results)
    for r in results:
        seq = torch.tensor([r.prompt_ids + r.completion_ids])
        with torch.no_grad():
            logits = backend.model(seq).logits[0, len(r.prompt_ids) - 1:-1]
        expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(r.completion_ids)[:, None])[:, 0]
        model = torch.tensor(r.mask, dtype=torch.bool)
        assert torch.allclose(torch.tensor(r.logprobs)[model], expected[model], atol=1e-3)
        assert torch.all(torch.tensor(r.logprobs)[~model] == 0.0)
