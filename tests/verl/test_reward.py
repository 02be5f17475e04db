"""torl's compute_score through veRL 0.9.1's RewardLoopWorker (custom_reward_function path, name, reward_kwargs)
and the tool statuses veRL merges from the agent loop's extra_fields into extra_info; every reward option gives
exactly `torl.reward.score`'s reward."""

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
    return _scores(tiny_model, [(response, gold, tool_calls)], **reward_kwargs)[0]


def _scores(tiny_model, samples, **reward_kwargs) -> list[dict]:
    """(response, gold, tool_calls) samples through veRL's RewardLoopWorker.compute_score_batch."""
    from transformers import AutoTokenizer
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.protocol import DataProto

    from torl.verl.recipe import load_recipe

    kwargs = [f"reward_kwargs.{k}={v}" for k, v in reward_kwargs.items()]
    config = compose(load_recipe(RECIPE_1_5B, [f"actor_rollout_ref.model.path={tiny_model}", *kwargs]).overrides())
    tok = AutoTokenizer.from_pretrained(str(tiny_model))
    prompt = torch.tensor(tok.encode("Q: 2 + 3?\n"))
    resps = [torch.tensor(tok.encode(response)) for response, _, _ in samples]
    width = max(len(r) for r in resps)
    data = DataProto.from_single_dict({
        "prompts": prompt[None].repeat(len(samples), 1),
        "responses": torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in resps]),
        "attention_mask": torch.stack([torch.cat([torch.ones(len(prompt) + len(r)), torch.zeros(width - len(r))])
                                       for r in resps]).long(),
        "data_source": np.array(["demo"] * len(samples), dtype=object),
        "reward_model": np.array([{"ground_truth": gold, "style": "rule"} for _, gold, _ in samples], dtype=object),
        "extra_info": np.array([{"index": i} for i in range(len(samples))], dtype=object),
        "tool_extra_fields": np.array([{"tool_calls": calls, "num_executions": len(calls or [])}
                                       for _, _, calls in samples], dtype=object),
    })

    async def go():
        return await RewardLoopWorker(config).compute_score_batch(data)

    outs = asyncio.run(go())
    for out in outs:
        assert out["reward_extra_info"]["score"] == out["reward_score"]
    return [out["reward_extra_info"] for out in outs]


BOX_IN_OUTPUT = "```python\nprint(5)\n```\n```output\n\\boxed{5}\n```\nSo the answer is 5."
SAMPLES = [  # (response, gold, tool calls): each one tells some option apart
    ("so \\boxed{5}", "5", [OK]),
    ("so \\boxed{6}", "5", [ERROR]),
    ("so \\boxed{1.4142}", "\\sqrt{2}", []),  # within rel_tol 1e-4 of sqrt(2), not within 1e-6
    (BOX_IN_OUTPUT, "5", [OK]),  # a box inside an output block: the reference counts it, torl does not
    ("the answer is 5", "5", [ERROR]),  # no box: only fallback_extraction reads it
    ("\\boxed{5}", "5", []),  # no code: the reference's penalty rule penalises it
]
OPTIONS = [
    {},
    {"mode": "reference"},
    {"rel_tol": 1e-6},
    {"fallback_extraction": True},
    {"exec_penalty": True},
    {"exec_penalty": True, "mode": "reference"},
    {"exec_penalty": True, "exec_penalty_value": -0.25, "correct_reward": 2.0, "wrong_reward": 0.0},
    {"timeout": 2.0},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_every_option_is_torls_score(tiny_model, options):
    from torl.reward import RewardConfig, extract_for, score

    config = RewardConfig(**options)
    got = _scores(tiny_model, SAMPLES, **{k: str(v).lower() if isinstance(v, bool) else v
                                          for k, v in options.items()})
    for (response, gold, calls), out in zip(SAMPLES, got, strict=True):
        expected = score(response, gold, tool_calls=calls, config=config)
        assert out["score"] == expected, (options, response)
        assert out["pred"] == (extract_for(response, config) or "")
    if options == {"mode": "reference"}:
        assert got[3]["score"] == 1.0  # the reference's check, not torl's
    if options == {"rel_tol": 1e-6}:
        assert got[2]["score"] == -1.0


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
