"""torl's compute_score through veRL 0.9.1's RewardLoopWorker (custom_reward_function path, name, reward_kwargs)
and the tool statuses veRL merges from the agent loop's extra_fields into extra_info."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from tests.verl.conftest import RECIPE_1_5B, compose

pytestmark = pytest.mark.engines

OK = {"status": "ok", "stdout": "5\n"}
ERROR = {"status": "error", "stdout": ""}


def _score(tiny_model, response: str, gold: str, tool_calls, **reward_kwargs) -> dict:
    """One sample through veRL's RewardLoopWorker.compute_score, shaped as the agent loop sends it."""
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto

    from torl.verl.recipe import load_recipe

    kwargs = [f"reward_kwargs.{k}={v}" for k, v in reward_kwargs.items()]
    config = compose(load_recipe(RECIPE_1_5B, [f"actor_rollout_ref.model.path={tiny_model}", *kwargs]).overrides())
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    prompt = torch.tensor(tok.encode("Q: 2 + 3?\n"))
    resp = torch.tensor(tok.encode(response))
    data = DataProto.from_single_dict({
        "prompts": prompt[None], "responses": resp[None],
        "attention_mask": torch.ones(1, len(prompt) + len(resp), dtype=torch.long),
        "data_source": np.array(["demo"], dtype=object),
        "reward_model": np.array([{"ground_truth": gold, "style": "rule"}], dtype=object),
        "extra_info": np.array([{"index": 0}], dtype=object),
        "tool_extra_fields": np.array([{"tool_calls": tool_calls, "num_executions": len(tool_calls or [])}],
                                      dtype=object),
    })

    async def go():
        return await RewardLoopWorker(config).compute_score(data)

    out = asyncio.run(go())
    assert out["reward_extra_info"]["score"] == out["reward_score"]
    return out["reward_extra_info"]


def test_correct_wrong_and_no_answer(tiny_model):
    assert _score(tiny_model, "so \\boxed{5}", "5", [OK]) == {"score": 1.0, "acc": 1.0, "pred": "5"}
    assert _score(tiny_model, "so \\boxed{\\frac{10}{2}}", "5", []) == {"score": 1.0, "acc": 1.0,
                                                                          "pred": "\\frac{10}{2}"}
    assert _score(tiny_model, "so \\boxed{6}", "5", [OK])["score"] == -1.0
    assert _score(tiny_model, "no box", "5", [])["pred"] == ""


def test_execution_penalty_reads_the_tool_statuses(tiny_model):
    assert _score(tiny_model, "\\boxed{5}", "5", [ERROR], exec_penalty="true")["score"] == 0.5
    assert _score(tiny_model, "\\boxed{5}", "5", [OK], exec_penalty="true")["score"] == 1.0
    assert _score(tiny_model, "\\boxed{6}", "5", [ERROR], exec_penalty="false")["score"] == -1.0
    # torl mode: no code, no penalty; reference mode: no code counts as failed (its defect, reproduced)
    assert _score(tiny_model, "\\boxed{5}", "5", [], exec_penalty="true")["score"] == 1.0
    assert _score(tiny_model, "\\boxed{5}", "5", [], exec_penalty="true", mode="reference")["score"] == 0.5


def test_missing_statuses_and_unknown_kwargs_are_errors():
    from torl.verl.reward import compute_score

    with pytest.raises(ValueError, match="tool_calls"):
        compute_score("demo", "\\boxed{5}", "5", {"index": 0}, exec_penalty=True)
    with pytest.raises(ValueError, match="exec_penalty_valu"):
        compute_score("demo", "\\boxed{5}", "5", {}, exec_penalty_valu=-1)
