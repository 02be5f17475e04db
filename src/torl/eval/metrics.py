"""Evaluation metrics: pass@k (unbiased), avg@k, maj@k, and the tool-use statistics of a set of responses.

All functions are pure. A *sample record* is one line of an evaluation's samples JSONL (see torl.eval.runner):
it carries at least `problem_id`, `sample_index`, `pred` (the extracted answer or None), `correct`, `has_code`,
`num_executions`, `tool_calls` (each with a `status`), `response_tokens` and `truncated`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i<k} (n-c-i) / (n-i): no huge binomials
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def avg_at_k(correct_per_item: Sequence[Sequence[bool]]) -> float:
    """Mean over items of each item's share of correct samples (avg@k; with k = 1, plain accuracy)."""
    if not correct_per_item:
        return 0.0
    return sum(sum(cs) / len(cs) for cs in correct_per_item) / len(correct_per_item)


def _vote_key(pred: str) -> str:
    return "".join(pred.split())


def majority_correct(preds: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """maj@k for one item: is the most frequent extracted answer correct?

    Answers are grouped by their text with whitespace removed; samples with no answer do not vote; a tie goes to
    the answer that appeared first. Grading is deterministic, so the group's correctness is that of any member.
    """
    if len(preds) != len(correct):
        raise ValueError(f"{len(preds)} preds but {len(correct)} correctness flags")
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, p in enumerate(preds):
        if p is None:
            continue
        key = _vote_key(p)
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    if not counts:
        return False
    winner = max(counts, key=lambda key: (counts[key], -first[key]))
    return bool(correct[first[winner]])


def pass_at_k_values(n: int) -> list[int]:
    """The k reported for n samples: powers of two below n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return [*ks, n]


@dataclass
class ToolStats:
    """Tool use over a set of responses.

    code_ratio: share of responses containing a ```python block. code_pass_ratio: share of executions whose status
    was "ok", among executions the sandbox actually judged (sandbox_error excluded; None when nothing ran).
    executions_per_response: mean executions per response. mean_response_tokens: mean completion length in tokens,
    tool observations included. truncated_ratio: share of responses cut by the length cap. no_answer_ratio: share
    with no \\boxed{} answer. sandbox_errors: executions the sandbox failed to run (infrastructure, not the code).
    """

    code_ratio: float
    code_pass_ratio: float | None
    executions_per_response: float
    mean_response_tokens: float
    truncated_ratio: float
    no_answer_ratio: float
    sandbox_errors: int


def tool_stats(samples: Sequence[dict]) -> ToolStats:
    if not samples:
        raise ValueError("tool_stats needs at least one sample")
    m = len(samples)
    statuses = [c["status"] for s in samples for c in s.get("tool_calls", [])]
    judged = [st for st in statuses if st != "sandbox_error"]
    return ToolStats(
        code_ratio=sum(bool(s["has_code"]) for s in samples) / m,
        code_pass_ratio=(sum(st == "ok" for st in judged) / len(judged)) if judged else None,
        executions_per_response=sum(s["num_executions"] for s in samples) / m,
        mean_response_tokens=sum(s["response_tokens"] for s in samples) / m,
        truncated_ratio=sum(bool(s["truncated"]) for s in samples) / m,
        no_answer_ratio=sum(s["pred"] is None for s in samples) / m,
        sandbox_errors=len(statuses) - len(judged),
    )


@dataclass
class BenchmarkMetrics:
    """Metrics of one benchmark. accuracy = avg@n (0-1; with n = 1, greedy accuracy).

    n_items: items with all n samples; n_samples: samples per item (n); n_responses: n_items * n;
    n_missing: items of the benchmark without all n samples (0 for a finished run; they are not scored);
    at_k: "avg@n", "pass@k" for k in 1, 2, 4, ..., n, and "maj@n" when n > 1.
    """

    accuracy: float
    n_items: int
    n_samples: int
    n_responses: int
    n_missing: int
    at_k: dict[str, float]
    tools: ToolStats
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("at_k"))
        d.update(d.pop("tools"))
        if not d["extra"]:
            d.pop("extra")
        return d


def benchmark_metrics(
    samples: Sequence[dict], n: int, item_ids: Sequence[str] | None = None
) -> BenchmarkMetrics:
    """Score one benchmark from its sample records with n samples per item (indices 0..n-1; others ignored).

    `item_ids` (the benchmark's ids) lets it count items that have no or too few samples as missing.
    """
    by_item: dict[str, dict[int, dict]] = defaultdict(dict)
    for s in samples:
        if 0 <= s["sample_index"] < n:
            by_item[s["problem_id"]].setdefault(s["sample_index"], s)
    ids = list(item_ids) if item_ids is not None else list(by_item)
    complete = [pid for pid in ids if len(by_item.get(pid, {})) == n]
    if not complete:
        raise ValueError(f"no item has all {n} samples")
    per_item = [[by_item[pid][i] for i in range(n)] for pid in complete]
    correct = [[bool(s["correct"]) for s in item] for item in per_item]
    at_k = {f"avg@{n}": avg_at_k(correct)}
    for k in pass_at_k_values(n):
        at_k[f"pass@{k}"] = sum(pass_at_k(n, sum(cs), k) for cs in correct) / len(correct)
    if n > 1:
        at_k[f"maj@{n}"] = sum(
            majority_correct([s["pred"] for s in item], cs)
            for item, cs in zip(per_item, correct, strict=True)
        ) / len(per_item)
    return BenchmarkMetrics(
        accuracy=at_k[f"avg@{n}"],
        n_items=len(complete),
        n_samples=n,
        n_responses=len(complete) * n,
        n_missing=len(ids) - len(complete),
        at_k=at_k,
        tools=tool_stats([s for item in per_item for s in item]),
    )


def macro_average(accuracies: Sequence[float]) -> float:
    """Unweighted mean of per-benchmark accuracies."""
    if not accuracies:
        raise ValueError("macro_average of no benchmarks")
    return sum(accuracies) / len(accuracies)
