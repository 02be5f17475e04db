"""The TORL reward: +1 for a correct final answer, -1 for a wrong or missing one, optional execution penalty.

Two modes (`RewardConfig.mode`):
- "torl": the answer is the last `\\boxed{…}` outside tool-output blocks (`extract_answer`), graded by torl's
  grader (exact values, math-verify with guards, decimals with relative tolerance `rel_tol`);
- "reference": the reference's check exactly (TORL-SPEC §4, `reference.py`): regex extraction over the whole
  response, case-insensitive string match, Minerva normalisation without the "=" split, math-verify with the
  prediction first, Hendrycks `is_equiv` only on exceptions, any other exception → wrong.

The execution penalty (off by default, as in the paper's main results) adds `exec_penalty_value` (-0.5):
- mode "torl": when at least one execution ended with status "error" or "timeout" (a "sandbox_error" is the
  infrastructure's fault and is not penalised; a response without code is not penalised);
- mode "reference": the reference's flag. It starts at 0 ("not passed") and each execution overwrites it, so
  only the *last* execution counts; an execution passes when its status is "ok" or it printed something
  (the reference's observation rule; a sandbox failure does not pass). The penalty applies when the flag is 0
  at the end, which also hits responses that ran no code (a reference defect, kept on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from torl.reward.extract import extract_answer
from torl.reward.grader import DEFAULT_TIMEOUT, Grader, default_grader
from torl.reward.reference import reference_extract
from torl.reward.values import DEFAULT_REL_TOL

_STATUSES = ("ok", "error", "timeout", "sandbox_error")


@dataclass(frozen=True)
class RewardConfig:
    """correct_reward / wrong_reward: reward of a correct / wrong-or-unboxed answer.
    exec_penalty: add exec_penalty_value when code failed to execute (see module docstring).
    mode: "torl" (our grader and penalty rule) or "reference" (the reference's, defects included).
    fallback_extraction: accept "the answer is …" when there is no box (off for training; mode "torl" only).
    timeout: seconds per symbolic comparison.
    rel_tol: relative tolerance of a decimal answer against a value without a finite decimal expansion
    (1e-4, the convention behind the paper's table: 1.4142 = √2, 3.14 ≠ π, 0.333 ≠ 1/3; mode "torl" only)."""

    correct_reward: float = 1.0
    wrong_reward: float = -1.0
    exec_penalty: bool = False
    exec_penalty_value: float = -0.5
    mode: Literal["torl", "reference"] = "torl"
    fallback_extraction: bool = False
    timeout: float = DEFAULT_TIMEOUT
    rel_tol: float = DEFAULT_REL_TOL

    def __post_init__(self) -> None:
        if self.mode not in ("torl", "reference"):
            raise ValueError(f"RewardConfig.mode must be 'torl' or 'reference', got {self.mode!r}")
        if not (isinstance(self.rel_tol, (int, float)) and 0 <= self.rel_tol < 1):
            raise ValueError(f"RewardConfig.rel_tol must be a number in [0, 1), got {self.rel_tol!r}")


def _call_outcome(call) -> tuple[str, str]:
    """(status, stdout) of one tool call: a ToolCall-like object (`.result.status`) or a dict with
    "status" or "result" (a dict or an ExecResult); a dict may say `"printed": bool` instead of the stdout."""
    if isinstance(call, Mapping):
        result = call.get("result")
        status = call.get("status")
        stdout = call.get("stdout", "") or ("1" if call.get("printed") else "")
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
    """Does the execution penalty apply to a response with these tool calls (executions, in order)?"""
    outcomes = [_call_outcome(c) for c in (tool_calls or [])]
    if mode == "reference":
        passed = False  # the reference's flag: 0 until an execution overwrites it
        for status, stdout in outcomes:
            passed = status == "ok" or bool(stdout)
        return not passed
    return any(status in ("error", "timeout") for status, _ in outcomes)


def extract_for(response: str, config: RewardConfig) -> str | None:
    """The answer a response gives under `config`: the reference's regex in mode "reference"."""
    if config.mode == "reference":
        if not isinstance(response, str):
            raise TypeError(f"response must be a string, got {type(response).__name__}")
        return reference_extract(response)
    return extract_answer(response, fallback=config.fallback_extraction)


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
    return [s.reward for s in score_details(responses, golds, tool_calls=tool_calls, config=config, grader=grader)]


@dataclass(frozen=True)
class Scored:
    """One response's reward with what it rests on: the extracted answer (None: none) and the verdict."""

    reward: float
    correct: bool
    pred: str | None


def score_details(
    responses: Sequence[str],
    golds: Sequence[str],
    *,
    tool_calls: Sequence[Sequence | None] | None = None,
    config: RewardConfig = RewardConfig(),
    grader: Grader | None = None,
) -> list[Scored]:
    """`score_many` with the answer and verdict of each response (what veRL's reward function reports)."""
    if len(responses) != len(golds):
        raise ValueError(f"responses has {len(responses)} items but golds has {len(golds)}")
    if tool_calls is not None and len(tool_calls) != len(responses):
        raise ValueError(f"tool_calls has {len(tool_calls)} items but responses has {len(responses)}")
    grader = grader or default_grader()
    preds = [extract_for(r, config) for r in responses]
    verdicts = grader.verdicts(preds, golds, timeout=config.timeout, mode=config.mode, rel_tol=config.rel_tol)
    calls = tool_calls if tool_calls is not None else [None] * len(responses)
    return [Scored(reward_value(v.equal, c, config), v.equal, p)
            for v, c, p in zip(verdicts, calls, preds, strict=True)]
