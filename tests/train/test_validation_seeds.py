"""Sampled validation draws each problem from its own seed: the same samples on any number of processes."""

from __future__ import annotations

import torch

from torl.reward.score import RewardConfig
from torl.rollout import RolloutConfig
from torl.rollout.backends.transformers_backend import TransformersBackend
from torl.train.validation import run_validation

from .conftest import arithmetic_problems


def _validate(model, tokenizer, *, seed, rank=0, world_size=1, batch=8):
    problems = {"bench": arithmetic_problems(6)}
    config = RolloutConfig(max_tool_calls=0, max_response_tokens=12, temperature=1.0)
    backend = TransformersBackend(model, tokenizer, max_batch_size=batch)
    try:
        return run_validation(problems, backend=backend, sandbox=None, rollout_config=config,
                              reward_config=RewardConfig(), template="torl", rank=rank, world_size=world_size,
                              seed=seed)
    finally:
        backend.close()


def test_sampled_validation_is_the_same_on_one_or_two_processes(tiny_model, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    one = {r["problem_id"]: r["response"] for r in _validate(model, tiny_tokenizer, seed=7)}
    two = {r["problem_id"]: r["response"]
           for rank in (0, 1) for r in _validate(model, tiny_tokenizer, seed=7, rank=rank, world_size=2, batch=2)}
    assert one == two and len(one) == 6
    other = {r["problem_id"]: r["response"] for r in _validate(model, tiny_tokenizer, seed=8)}
    assert other != one
