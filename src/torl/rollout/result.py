"""What one sample's rollout produced: token ids, loss mask, logprobs, text and its tool calls."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torl.sandbox.base import ExecResult

FINISH_REASONS: tuple[str, ...] = ("eos", "length")


@dataclass
class ToolCall:
    """One execution. `observation` is the formatted text; `inserted` is exactly what was appended to the
    response (mask 0) — the rest of "```output\\n{observation}\\n```\\n" after the model's own "```output",
    cut short if the length cap fell inside it."""

    code: str
    result: ExecResult
    observation: str
    inserted: str = ""

    def to_dict(self) -> dict:
        return {"code": self.code, "result": self.result.to_dict(), "observation": self.observation,
                "inserted": self.inserted}


@dataclass
class RolloutResult:
    """One sample.

    completion_ids: the response, sampled tokens exactly as the model produced them plus the tokenised
        observations; `mask[i]` is 1 for a model token, 0 for an observation token.
    logprobs: per completion token; the sampler's log-probability for model tokens (NaN where the engine did
        not report one), 0.0 for observation tokens.
    text: `decode(completion_ids)` (special tokens skipped).
    finish_reason: "eos" (the model ended) or "length" (the token cap, or the engine's context limit).
    truncated: the response was cut by the cap (an observation may be cut too).
    has_code: the model wrote a ```` ```python ```` block (run or not).
    all_executions_ok: every execution had status "ok" (True when nothing ran).
    """

    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    num_executions: int = 0
    finish_reason: str = "length"
    truncated: bool = False
    has_code: bool = False
    all_executions_ok: bool = True
    num_rounds: int = 0

    @property
    def num_model_tokens(self) -> int:
        return sum(self.mask)

    @property
    def num_observation_tokens(self) -> int:
        return len(self.mask) - sum(self.mask)

    def mask_runs(self) -> list[tuple[int, int]]:
        """The mask as runs of (value, length): [(1, 40), (0, 6), (1, 30)]."""
        runs: list[tuple[int, int]] = []
        for m in self.mask:
            if runs and runs[-1][0] == m:
                runs[-1] = (m, runs[-1][1] + 1)
            else:
                runs.append((m, 1))
        return runs

    def to_dict(self, *, ids: bool = True) -> dict:
        d = {
            "prompt": self.prompt,
            "text": self.text,
            "tool_calls": [tc.to_dict() for tc in self.tool_calls],
            "num_executions": self.num_executions,
            "finish_reason": self.finish_reason,
            "truncated": self.truncated,
            "has_code": self.has_code,
            "all_executions_ok": self.all_executions_ok,
            "num_rounds": self.num_rounds,
            "num_tokens": len(self.completion_ids),
            "num_model_tokens": self.num_model_tokens,
            "num_observation_tokens": self.num_observation_tokens,
            "mask_runs": [list(r) for r in self.mask_runs()],
        }
        if ids:
            d.update(prompt_ids=self.prompt_ids, completion_ids=self.completion_ids, mask=self.mask,
                     logprobs=[None if math.isnan(x) else x for x in self.logprobs])
        return d
