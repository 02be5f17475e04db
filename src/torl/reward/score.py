"""The TORL reward: +1 for a correct final answer, -1 for a wrong or missing one, optional execution penalty.

The execution penalty (off by default, as in the paper's main results) adds `exec_penalty_value` (-0.5) to a
response whose code failed to execute:
- mode "torl": at least one tool call ended with status "error" or "timeout" (a "sandbox_error" is the
  infrastructure's fault and is not penalised; a response without code is not penalised);
- mode "reference": the reference's rule, which also penalises responses in which no code ran; a call
  counts as passed when its status is "ok" or it printed something (the reference's observation rule).
  This mode also grades with the reference's equivalence check (`reference.py`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from torl.reward.extract import extract_answer
from torl.reward.grader import DEFAULT_TIMEOUT, Grader, default_grader

_STATUSES = ("ok", "error", "timeout", "sandbox_error")


@dataclass(frozen=True)
class RewardConfig:
    """correct_reward / wrong_reward: reward of a correct / wrong-or-unboxed answer.
    exec_penalty: add exec_penalty_value when code failed to execute (see module docstring).
    mode: "torl" (our grader and penalty rule) or "reference" (the reference's, defects included).
    fallback_extraction: accept "the answer is …" when there is no box (off for training).
    timeout: seconds per symbolic comparison."""

    correct_reward: float = 1.0
    wrong_reward: float = -1.0
    exec_penalty: bool = False
    exec_penalty_value: float = -0.5
    mode: Literal["torl", "reference"] = "torl"
    fallback_extraction: bool = False
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.mode not in ("torl", "reference"):
            raise ValueError(f"RewardConfig.mode must be 'torl' or 'reference', got {self.mode!r}")


def _call_outcome(call) -> tuple[str, str]:
    """(status, stdout) of one tool call: a ToolCall-like object (`.result.status`) or a dict with
    "status" or "result" (a dict or an ExecResult)."""
    if isinstance(call, Mapping):
        result = call.get("result")
        status = call.get("status")
        stdout = call.get("stdout", "")
    else:
        result = getattr(call, "result", None)
        status = getattr(call, "status", None)
        stdout = getattr(call, "stdout", "")
    if result is not None:
        if isinstance(result, Mapping):
            status, stdout = result.get("status", status), result.get("stdout", stdout)
        else:
            status, stdout = getattr(result, "status", status), getattr(result, "stdout", stdout)
    if status not in _STATUSES:
        raise ValueError(f"tool call has no valid execution status (one of {_STATUSES}): {call!r}")
    return status, stdout or ""


def execution_failed(tool_calls: Sequence | None, mode: str = "torl") -> bool:
    """Does the execution penalty apply to a response with these tool calls?"""
    outcomes = [_call_outcome(c) for c in (tool_calls or [])]
    if mode == "reference":
        return not outcomes or not all(status == "ok" or stdout for status, stdout in outcomes)
    return any(status in ("error", "timeout") for status, _ in outcomes)


def reward_value(correct: bool, tool_calls: Sequence | None, config: RewardConfig) -> float:
    """The reward of a response already graded as `correct`."""
    reward = config.correct_reward if correct else config.wrong_reward
    if config.exec_penalty and execution_failed(tool_calls, config.mode):
        reward += config.exec_penalty_value
    return reward


def score(
    response: str,
    gold: str,
    *,
    tool_calls: Sequence | None = None,
    config: RewardConfig = RewardConfig(),
    grader: Grader | None = None,
) -> float:
    """The TORL reward of one response against its gold answer."""
    return score_many([response], [gold], tool_calls=[tool_calls], config=config, grader=grader)[0]


def score_many(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    tool_calls: Sequence[Sequence | None] | None = None,
    config: RewardConfig = RewardConfig(),
    grader: Grader | None = None,
) -> list[float]:
    """`score` for a batch, grading in parallel over the worker pool."""
    if len(responses) != len(golds):
        raise ValueError(f"responses has {len(responses)} items but golds has {len(golds)}")
    if tool_calls is not None and len(tool_calls) != len(responses):
        raise ValueError(f"tool_calls has {len(tool_calls)} items but responses has {len(responses)}")
    grader = grader or default_grader()
    preds = [extract_answer(r, fallback=config.fallback_extraction) for r in responses]
    verdicts = grader.verdicts(preds, golds, timeout=config.timeout, mode=config.mode)
    calls = tool_calls if tool_calls is not None else [None] * len(responses)
    return [reward_value(v.equal, c, config) for v, c in zip(verdicts, calls, strict=True)]
