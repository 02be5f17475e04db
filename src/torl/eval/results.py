"""Evaluation results: results.json, the markdown tables, side-by-side comparison, and the paper's reference rows.

results.json: {"run": {model, backend, mode, template, n, seed, ..., "rollout": every RolloutConfig field,
["rollout_from": the train run it came from]}, "benchmarks": {name: {accuracy (0-1),
n_items, n_samples, n_responses, n_missing, "avg@n", "pass@k"..., ["maj@n"], code_ratio, code_pass_ratio,
executions_per_response, mean_response_tokens, truncated_ratio, no_answer_ratio, sandbox_errors}},
"macro_average": mean accuracy over the benchmarks}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from torl.data.eval_sets import BENCHMARKS, PAPER_BENCHMARKS
from torl.errors import UserInputError
from torl.eval.metrics import BenchmarkMetrics, macro_average

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"

# Spec §6: greedy decoding, C = 1, the training prompt. Accuracy as a fraction.
REFERENCE_RESULTS: dict[str, dict[str, float]] = {
    "qwen2.5-math-1.5b-instruct": {
        "aime24": 0.100,
        "aime25": 0.100,
        "math500": 0.660,
        "olympiadbench": 0.310,
        "amc23": 0.625,
    },
    "qwen2.5-math-1.5b-instruct-tir": {
        "aime24": 0.133,
        "aime25": 0.133,
        "math500": 0.738,
        "olympiadbench": 0.413,
        "amc23": 0.550,
    },
    "torl-1.5b": {"aime24": 0.267, "aime25": 0.267, "math500": 0.778, "olympiadbench": 0.440, "amc23": 0.675},
    "qwen2.5-math-7b-instruct": {
        "aime24": 0.100,
        "aime25": 0.167,
        "math500": 0.748,
        "olympiadbench": 0.324,
        "amc23": 0.650,
    },
    "qwen2.5-math-7b-instruct-tir": {
        "aime24": 0.267,
        "aime25": 0.167,
        "math500": 0.788,
        "olympiadbench": 0.450,
        "amc23": 0.700,
    },
    "torl-7b": {"aime24": 0.433, "aime25": 0.300, "math500": 0.822, "olympiadbench": 0.499, "amc23": 0.750},
    # the authors' sampled evaluation: avg@32 at temperature 0.6
    "torl-1.5b-avg@32": {"aime24": 0.279, "aime25": 0.206},
    "torl-7b-avg@32": {"aime24": 0.402},
}

_DISPLAY = {
    "aime24": "AIME24",
    "aime25": "AIME25",
    "amc23": "AMC23",
    "math500": "MATH500",
    "olympiadbench": "Olympiad",
    "minerva_math": "Minerva",
    "gsm8k": "GSM8K",
}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def build_results(metrics: Mapping[str, BenchmarkMetrics], run: Mapping) -> dict:
    """The results.json object for one run."""
    if not metrics:
        raise ValueError("no benchmark metrics")
    return {
        "run": dict(run),
        "benchmarks": {name: m.to_dict() for name, m in metrics.items()},
        "macro_average": macro_average([m.accuracy for m in metrics.values()]),
    }


def results_markdown(results: Mapping) -> str:
    """Per-benchmark table of one run: accuracy, sampled metrics, tool statistics; macro average last."""
    run, benches = results.get("run", {}), results["benchmarks"]
    k_cols = sorted(
        {key for b in benches.values() for key in b if key.startswith(("pass@", "maj@")) and key != "pass@1"},
        key=lambda key: (key.split("@")[0] != "pass", int(key.split("@")[1])),
    )
    sampled = any(b["n_samples"] > 1 for b in benches.values())
    head = ["benchmark", "items", "n", "accuracy" + (" (avg@n)" if sampled else "")]
    head += [*k_cols, "code ratio", "code pass", "exec/resp", "mean tokens", "truncated"]
    lines = []
    if run:
        shown = {**run, **(run.get("rollout") or {})}  # the rollout settings sit in run["rollout"]
        desc = ", ".join(
            f"{k} {shown[k]}"
            for k in ("model", "backend", "mode", "max_tool_calls", "temperature", "n")
            if k in shown
        )
        lines += [f"Evaluation: {desc}", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, b in benches.items():
        row = [_DISPLAY.get(name, name), str(b["n_items"]), str(b["n_samples"]), _pct(b["accuracy"])]
        row += [_pct(b.get(c)) for c in k_cols]
        row += [
            _pct(b["code_ratio"]),
            _pct(b["code_pass_ratio"]),
            f"{b['executions_per_response']:.2f}",
            f"{b['mean_response_tokens']:.0f}",
            _pct(b["truncated_ratio"]),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append(
        "| **macro average** | | | **" + _pct(results["macro_average"]) + "** |" + " |" * (len(head) - 4)
    )
    missing = {name: b["n_missing"] for name, b in benches.items() if b.get("n_missing")}
    if missing:
        lines += [
            "",
            "Incomplete: items without all samples (not scored): "
            + ", ".join(f"{k} {v}" for k, v in missing.items()),
        ]
    return "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, results: Mapping) -> tuple[Path, Path]:
    """Write results.json and results.md into out_dir; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / RESULTS_JSON, out_dir / RESULTS_MD
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(results_markdown(results), encoding="utf-8")
    return json_path, md_path


def load_results(path: str | Path) -> dict:
    """Read an evaluation's results.json (path to it or to its directory)."""
    path = Path(path)
    file = path / RESULTS_JSON if path.is_dir() else path
    if not file.is_file():
        raise UserInputError(
            f"{path}: no {RESULTS_JSON} found (is it a finished `torl eval` output directory?)"
        )
    try:
        results = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{file}: invalid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
        raise UserInputError(f"{file}: not a torl results file (no 'benchmarks' object)")
    return results


def reference_row(name: str) -> dict[str, float]:
    if name not in REFERENCE_RESULTS:
        raise UserInputError(f"unknown reference {name!r}; available: {', '.join(REFERENCE_RESULTS)}")
    return REFERENCE_RESULTS[name]


def compare_markdown(rows: Sequence[tuple[str, Mapping[str, float]]]) -> str:
    """Side-by-side accuracy table (percent), one row per run: columns are the benchmarks any row has (paper order
    first); the average is taken over the benchmarks every row has, so rows stay comparable."""
    if not rows:
        raise ValueError("nothing to compare")
    present = {b for _, accs in rows for b in accs}
    order = [*PAPER_BENCHMARKS, *(b for b in BENCHMARKS if b not in PAPER_BENCHMARKS)]
    cols = [b for b in order if b in present] + sorted(present - set(order))
    common = [b for b in cols if all(b in accs for _, accs in rows)]
    avg_head = f"avg ({len(common)} common)" if len(common) != len(cols) else "avg"
    lines = [
        "| run | " + " | ".join(_DISPLAY.get(b, b) for b in cols) + f" | {avg_head} |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    for label, accs in rows:
        cells = [_pct(accs.get(b)) for b in cols]
        avg = _pct(sum(accs[b] for b in common) / len(common)) if common else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {avg} |")
    if common != cols:
        lines += [
            "",
            "avg: mean over "
            + ", ".join(_DISPLAY.get(b, b) for b in common)
            + " (the benchmarks every row has)",
        ]
    return "\n".join(lines) + "\n"


def compare_runs(dirs: Sequence[str | Path], references: Sequence[str] = ()) -> str:
    """The comparison table of finished runs (labelled by directory name) and named reference rows."""
    rows: list[tuple[str, Mapping[str, float]]] = [(f"paper: {r}", reference_row(r)) for r in references]
    for d in dirs:
        res = load_results(d)
        label = Path(d).name if Path(d).is_dir() else Path(d).parent.name
        rows.append((label, {name: b["accuracy"] for name, b in res["benchmarks"].items()}))
    return compare_markdown(rows)
