"""Reward: answer extraction and math-equivalence grading, correct, fast, and safe in any thread or process.

- `extract_answer(text)`: the content of the last `\\boxed{…}` (tool-output blocks ignored), or None.
- `is_equivalent(pred, gold)`: exact/normalised comparison in-process, math-verify (gold first, `$…$`)
  in worker processes with a hard timeout; a timeout counts as "not equivalent". Decimals against values
  without a finite decimal expansion: relative tolerance `rel_tol` (1e-4).
- `grade_many(preds, golds)`: the same for a batch, over a process pool, with a memo cache.
- `score(response, gold, tool_calls=..., config=RewardConfig())`: the TORL reward (+1 / -1, optional
  execution penalty, a "reference" mode that reproduces the reference's check, TORL-SPEC §4);
  `score_details` also gives each response's answer and verdict.
- `extract_for(response, config)`: the answer under a config (`reference_extract` in reference mode).
- `can_parse(answer)`: can the grader compare this answer at all (for data filtering)?
- `Grader`: the object behind these functions, for explicit pools, timeouts, caches and stats.
"""

from torl.reward.extract import extract_answer
from torl.reward.grader import (
    DEFAULT_TIMEOUT,
    Grader,
    GradingStats,
    Verdict,
    can_parse,
    default_grader,
    grade_many,
    is_equivalent,
)
from torl.reward.normalize import normalize_answer
from torl.reward.reference import reference_extract
from torl.reward.score import (
    RewardConfig,
    Scored,
    execution_failed,
    extract_for,
    score,
    score_details,
    score_many,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Grader",
    "GradingStats",
    "RewardConfig",
    "Scored",
    "Verdict",
    "can_parse",
    "default_grader",
    "execution_failed",
    "extract_answer",
    "extract_for",
    "grade_many",
    "is_equivalent",
    "normalize_answer",
    "reference_extract",
    "score",
    "score_details",
    "score_many",
]
