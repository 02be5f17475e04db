"""torl's reward as veRL's custom reward function (`reward.custom_reward_function.path/name`).

veRL's reward managers call `compute_score(data_source=, solution_str=, ground_truth=, extra_info=)` with the
decoded response, plus the `reward.custom_reward_function.reward_kwargs` of the config; with the torl_tir agent
loop, `extra_info` also holds what the loop put in its `extra_fields` (veRL merges them), among them
`tool_calls` = [{"status", "stdout"}] that the execution penalty reads. reward_kwargs (all optional):
    mode: "torl" (torl's extraction, grader and penalty rule) or "reference" (the reference's extraction, check
        and penalty rule)
    exec_penalty: add exec_penalty_value (-0.5) when code failed to run (TORL-SPEC §4)
    exec_penalty_value, correct_reward, wrong_reward, fallback_extraction, timeout, rel_tol: as in `RewardConfig`
The score is `torl.reward.score_details` itself (the code behind `torl.reward.score`): the same extraction and
grading for every mode and option, so the veRL run and `torl eval` grade a response alike.
Returns {"score": reward, "acc": 1.0 / 0.0, "pred": the extracted answer or ""}; veRL logs "acc" per data source
in validation, so a -1 or -0.5 counts as 0 there (TORL-SPEC §4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from torl.reward import RewardConfig, score_details

_CONFIG_KEYS = frozenset(f.name for f in fields(RewardConfig))


def compute_score(data_source, solution_str: str, ground_truth, extra_info: Mapping | None = None,
                  **kwargs) -> dict:
    """The TORL reward of one response (see the module docstring)."""
    config = reward_config(kwargs)
    gold = ground_truth if isinstance(ground_truth, str) else str(ground_truth)
    calls = tool_calls(extra_info, data_source) if config.exec_penalty else None
    [scored] = score_details([solution_str], [gold], tool_calls=[calls], config=config)
    return {"score": scored.reward, "acc": float(scored.correct), "pred": scored.pred or ""}


def reward_config(kwargs: Mapping) -> RewardConfig:
    """RewardConfig from reward_kwargs; keys veRL adds for its own reward models are ignored."""
    known = {k: v for k, v in kwargs.items() if k in _CONFIG_KEYS}
    ignored = set(kwargs) - _CONFIG_KEYS - {"reward_router_address", "reward_model_tokenizer"}
    if ignored:
        raise ValueError(f"reward.custom_reward_function.reward_kwargs: unknown key(s) {sorted(ignored)}; "
                         f"known: {sorted(_CONFIG_KEYS)}")
    return RewardConfig(**known)


def tool_calls(extra_info: Mapping | None, data_source=None) -> list:
    """The sample's tool calls as the torl_tir agent loop recorded them; an error when they are missing (the
    penalty would silently never apply, e.g. with another agent loop)."""
    calls = (extra_info or {}).get("tool_calls")
    if calls is None:
        raise ValueError(f"exec_penalty needs the tool statuses of the torl_tir agent loop, but extra_info of a "
                         f"{data_source!r} sample has no 'tool_calls' (is actor_rollout_ref.rollout.agent."
                         f"default_agent_loop=torl_tir?)")
    return list(calls)
