"""The reward function GRPOTrainer calls: torl.reward's TORL reward, plus the sample record of each response.

Correctness only by default (+1 / -1, TORL-SPEC §4); `RewardConfig(exec_penalty=True)` adds the optional
execution penalty. Grading runs in torl.reward's worker pool (hard timeouts, safe in any thread).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from torl.reward import Grader, RewardConfig, default_grader, extract_for
from torl.reward.score import reward_value
from torl.train.recorder import StepRecorder, rollout_fields


def grade_responses(responses: Sequence[str], golds: Sequence[str], tool_statuses: Sequence[Sequence[str]],
                    config: RewardConfig, grader: Grader | None = None,
                    tool_printed: Sequence[Sequence[bool]] | None = None) -> tuple[list[float], list[bool], list]:
    """(rewards, correct flags, extracted answers) of a batch of responses. tool_printed: per execution, did it
    print anything (the reference-mode penalty counts such an execution as passed; None: nothing printed)."""
    grader = grader or default_grader()
    preds = [extract_for(r, config) for r in responses]
    verdicts = grader.verdicts(preds, [str(g) for g in golds], timeout=config.timeout, mode=config.mode,
                               rel_tol=config.rel_tol)
    printed = tool_printed if tool_printed is not None else [[False] * len(s) for s in tool_statuses]
    calls = [[{"status": s, "printed": bool(p)} for s, p in zip(statuses, flags, strict=True)]
             for statuses, flags in zip(tool_statuses, printed, strict=True)]
    rewards = [reward_value(v.equal, c, config) for v, c in zip(verdicts, calls, strict=True)]
    return rewards, [v.equal for v in verdicts], preds


class TIRReward:
    """Reward function for GRPOTrainer (`reward_funcs=[TIRReward(...)]`).

    Reads the dataset columns `answer`, `problem_id`, `source` and the rollout function's extras
    (`rollout_index`, `tool_statuses`, `tool_printed`); writes one sample record per response into `recorder`
    (None: don't).
    """

    __name__ = "torl_reward"  # TRL logs rewards/<name>/mean

    def __init__(self, config: RewardConfig = RewardConfig(), recorder: StepRecorder | None = None,
                 grader: Grader | None = None) -> None:
        self.config = config
        self.recorder = recorder
        self.grader = grader

    def __call__(self, prompts: list, completions: list, answer: list, tool_statuses: list | None = None,
                 problem_id: list | None = None, source: list | None = None, rollout_index: list | None = None,
                 tool_printed: list | None = None, **kwargs) -> list[float]:
        start = time.perf_counter()
        statuses = tool_statuses if tool_statuses is not None else [[] for _ in completions]
        rewards, correct, preds = grade_responses(completions, answer, statuses, self.config, self.grader,
                                                  tool_printed=tool_printed)
        if self.recorder is not None:
            self.recorder.grading_s += time.perf_counter() - start
            for i, text in enumerate(completions):
                rec = {
                    "problem_id": str(problem_id[i]) if problem_id is not None else "",
                    "source": str(source[i]) if source is not None else "",
                    "prompt": prompts[i],
                    "response": text,
                    "reward": float(rewards[i]),
                    "correct": bool(correct[i]),
                    "pred": preds[i],
                    "gold": str(answer[i]),
                }
                if rollout_index is not None and rollout_index[i] < len(self.recorder.rollouts):
                    rec.update(rollout_fields(self.recorder.rollouts[rollout_index[i]]))
                else:
                    rec.update(num_executions=0, tool_calls=[])
                self.recorder.add_record(rec)
        return rewards
