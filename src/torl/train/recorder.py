"""What one training step produced, per process: the rollouts, their grades and timings; and the sample dumps.

The rollout function adds the step's rollouts, the reward function adds their grades (one record per
response), and at the end of the step the callback gathers every process's records and writes
RUN_DIR/samples/step_NNNNNN.jsonl (COMMON.md "Training sample dumps", read by LIMR).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SAMPLES_DIR = "samples"


def sample_dump_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / SAMPLES_DIR / f"step_{step:06d}.jsonl"


def tool_call_summary(call) -> dict:
    """{"code", "status", "observation"} of a torl.rollout ToolCall."""
    return {"code": call.code, "status": call.result.status, "observation": call.observation}


def rollout_fields(result) -> dict:
    """The per-response facts of a RolloutResult that go into a sample record."""
    return {
        "num_executions": int(result.num_executions),
        "tool_calls": [tool_call_summary(c) for c in result.tool_calls],
        "has_code": bool(result.has_code),
        "all_executions_ok": bool(result.all_executions_ok),
        "truncated": bool(result.truncated),
        "finish_reason": result.finish_reason,
        "response_tokens": len(result.completion_ids),
        "observation_tokens": int(result.num_observation_tokens),
    }


@dataclass
class StepRecorder:
    """One process's view of the current step. Not thread-safe; one per trainer."""

    rollouts: list = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    rollout_s: float = 0.0
    tool_s: float = 0.0
    grading_s: float = 0.0
    prompt_tokens: int = 0

    def add_rollouts(self, results: list, seconds: float) -> int:
        """Keep a step's rollouts; returns the index of the first (the rollout function passes indices on)."""
        start = len(self.rollouts)
        self.rollouts += results
        self.rollout_s += seconds
        self.tool_s += sum(c.result.duration_s for r in results for c in r.tool_calls)
        self.prompt_tokens += sum(len(r.prompt_ids) for r in results)
        return start

    def add_record(self, record: dict) -> None:
        self.records.append(record)

    @property
    def model_tokens(self) -> int:
        return sum(r.num_model_tokens for r in self.rollouts)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + sum(len(r.completion_ids) for r in self.rollouts)

    def reset(self) -> None:
        self.rollouts.clear()
        self.records.clear()
        self.rollout_s = self.tool_s = self.grading_s = 0.0
        self.prompt_tokens = 0


def write_sample_dump(run_dir: str | Path, step: int, records: list[dict]) -> Path:
    """Write (not append: a resumed step replaces a torn file) the step's records, one JSON object per line."""
    path = sample_dump_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps({"step": step, **r}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def remove_dumps_after(run_dir: str | Path, last_step: int) -> int:
    """Delete sample dumps of steps after `last_step` (a resumed run redoes them). Returns how many."""
    n = 0
    for p in (Path(run_dir) / SAMPLES_DIR).glob("step_*.jsonl*"):
        try:
            step = int(p.name.split("_", 1)[1].split(".", 1)[0])
        except ValueError:
            continue
        if step > last_step:
            p.unlink()
            n += 1
    return n
