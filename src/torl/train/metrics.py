"""Per-step training metrics from sample records, and where they are written (JSONL, TensorBoard).

A sample record is one line of RUN_DIR/samples/step_NNNNNN.jsonl (the format LIMR reads, COMMON.md) plus a few
extra fields: has_code, all_executions_ok, truncated, finish_reason, response_tokens, observation_tokens, pred.

Metric names (the paper's training dynamics, TORL-SPEC §5):
  train/reward_mean, train/accuracy         mean reward; share of correct responses
  train/code_ratio                          share of responses that contain a ```python block
  train/code_pass_ratio                     share of executions with status "ok" (None when nothing ran)
  train/code_pass_ratio_correct|_wrong      the same over correct / wrong responses
  train/executions_per_response             mean executions per response
  train/sandbox_error_ratio                 share of executions the sandbox itself failed (infrastructure, not code)
  train/observation_token_share             observation tokens / all response tokens
  train/response_length                     mean response tokens (observations included)
  train/truncated_ratio                     share of responses cut by the length cap
Validation uses the same names under val/<benchmark>/ and val/mean_accuracy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def sample_metrics(records: Sequence[dict], prefix: str = "train/") -> dict[str, float | None]:
    """Aggregate metrics of one batch of sample records."""
    if not records:
        return {}
    execs = [c for r in records for c in r.get("tool_calls", [])]
    statuses_correct = [c["status"] for r in records if r.get("correct") for c in r.get("tool_calls", [])]
    statuses_wrong = [c["status"] for r in records if not r.get("correct") for c in r.get("tool_calls", [])]
    tokens = sum(r.get("response_tokens", 0) for r in records)
    obs = sum(r.get("observation_tokens", 0) for r in records)

    def pass_ratio(statuses):
        return _mean([s == "ok" for s in statuses]) if statuses else None

    out = {
        "reward_mean": _mean([float(r["reward"]) for r in records]),
        "accuracy": _mean([bool(r["correct"]) for r in records]),
        "code_ratio": _mean([bool(r.get("has_code")) for r in records]),
        "code_pass_ratio": pass_ratio([c["status"] for c in execs]),
        "code_pass_ratio_correct": pass_ratio(statuses_correct),
        "code_pass_ratio_wrong": pass_ratio(statuses_wrong),
        "executions_per_response": _mean([int(r.get("num_executions", 0)) for r in records]),
        "sandbox_error_ratio": _mean([c["status"] == "sandbox_error" for c in execs]) if execs else None,
        "observation_token_share": obs / tokens if tokens else 0.0,
        "response_length": _mean([int(r.get("response_tokens", 0)) for r in records]),
        "truncated_ratio": _mean([bool(r.get("truncated")) for r in records]),
    }
    return {f"{prefix}{k}": (float(v) if v is not None else None) for k, v in out.items()}


def timing_metrics(*, step_s: float, rollout_s: float, tool_s: float, grading_s: float,
                   model_tokens: int, total_tokens: int) -> dict[str, float]:
    """Time split of one step. rollout_s: wall time of generation with tool calls overlapped; tool_s: summed
    sandbox time of the step's executions (they run concurrently, so it can exceed rollout_s); update_s: the
    rest of the step (log-prob forward, backward, optimizer, bookkeeping)."""
    update_s = max(0.0, step_s - rollout_s - grading_s)
    return {
        "time/step_s": step_s,
        "time/rollout_s": rollout_s,
        "time/tool_exec_s": tool_s,
        "time/grading_s": grading_s,
        "time/update_s": update_s,
        "throughput/generated_tokens_per_s": model_tokens / rollout_s if rollout_s > 0 else 0.0,
        "throughput/update_tokens_per_s": total_tokens / update_s if update_s > 0 else 0.0,
    }


def benchmark_metrics(records_by_bench: dict[str, list[dict]], prefix: str = "val/") -> dict[str, float | None]:
    """Validation metrics per benchmark and their mean accuracy."""
    out: dict[str, float | None] = {}
    accs = []
    for bench, recs in records_by_bench.items():
        m = sample_metrics(recs, prefix=f"{prefix}{bench}/")
        m.pop(f"{prefix}{bench}/reward_mean", None)
        out.update(m)
        if recs:
            accs.append(m[f"{prefix}{bench}/accuracy"])
    if accs:
        out[f"{prefix}mean_accuracy"] = sum(accs) / len(accs)
    return out


class MetricsWriter:
    """Appends one JSON object per log event to RUN_DIR/metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def write(self, step: int, values: dict) -> None:
        clean = {k: _jsonable(v) for k, v in values.items()}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **clean}, ensure_ascii=False) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: str | Path) -> list[dict]:
    """All records of RUN_DIR/metrics.jsonl (a torn last line from a killed run is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(run_dir: str | Path, last_step: int) -> int:
    """Drop records after `last_step` (a resumed run redoes those steps). Returns how many were dropped."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            dropped += 1
            continue
        if int(rec.get("step", 0)) > last_step:
            dropped += 1
        else:
            keep.append(line)
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    return dropped


def series(records: Iterable[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping records without it."""
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(int(r["step"]))
            ys.append(float(v))
    return xs, ys


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return v.item()
    return v
