"""The rollout function's side of the TRL contract, without a trainer."""

from __future__ import annotations

import math

import pytest

from torl.rollout import RolloutResult, ToolCall
from torl.sandbox import ExecResult
from torl.train.rollout_func import check_groups, to_trl_output


def test_check_groups():
    check_groups(["a", "a", "b", "b"], 2)
    with pytest.raises(RuntimeError, match="repeated num_generations times"):
        check_groups(["a", "b", "a", "b"], 2)  # unique prompts interleaved: not TRL 1.16's layout
    with pytest.raises(RuntimeError, match="not a multiple"):
        check_groups(["a", "a", "b"], 2)


def test_to_trl_output():
    call = ToolCall("print(1)", ExecResult("ok", stdout="1\n"), "1")
    full = RolloutResult(prompt="p", prompt_ids=[1, 2], completion_ids=[5, 6, 7, 8], mask=[1, 0, 0, 1],
                         logprobs=[-0.5, 0.0, 0.0, math.nan], tool_calls=[call], num_executions=1)
    empty = RolloutResult(prompt="p", prompt_ids=[1, 2, 3])  # the context was full: nothing generated
    out = to_trl_output([full, empty], eos_token_id=9, first_index=10)
    assert out["prompt_ids"] == [[1, 2], [1, 2, 3]]
    assert out["completion_ids"] == [[5, 6, 7, 8], [9]]
    assert out["env_mask"] == [[1, 0, 0, 1], [0]]  # the placeholder EOS is never trained on
    assert out["logprobs"][0][:3] == [-0.5, 0.0, 0.0] and math.isnan(out["logprobs"][0][3])
    assert out["rollout_index"] == [10, 11] and out["tool_statuses"] == [["ok"], []]
    assert out["num_executions"] == [1, 0]
    bad = RolloutResult(prompt="p", prompt_ids=[1], completion_ids=[5, 6], mask=[1], logprobs=[0.0, 0.0])
    with pytest.raises(RuntimeError, match="2 ids, 1 mask values"):
        to_trl_output([bad], eos_token_id=9)
