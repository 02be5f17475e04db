"""Evaluation with the training tool loop: shipped benchmarks, metrics, the runner and its results.

- `list_benchmarks()`, `load_benchmark(name)`, `load_benchmark_file(path, columns)`: the problems.
- `EvalConfig`, `evaluate(cfg, backend=..., sandbox=..., out_dir=...)`: run an evaluation (resumable).
- `pass_at_k`, `avg_at_k`, `majority_correct`, `benchmark_metrics`: the metrics.
- `load_results`, `compare_runs`, `REFERENCE_RESULTS`: results.json and the paper's rows.
"""

from torl.data.eval_sets import list_benchmarks, load_benchmark, load_benchmark_file
from torl.eval.metrics import avg_at_k, benchmark_metrics, majority_correct, pass_at_k
from torl.eval.results import REFERENCE_RESULTS, compare_runs, load_results
from torl.eval.runner import EvalConfig, evaluate

__all__ = [
    "REFERENCE_RESULTS",
    "EvalConfig",
    "avg_at_k",
    "benchmark_metrics",
    "compare_runs",
    "evaluate",
    "list_benchmarks",
    "load_benchmark",
    "load_benchmark_file",
    "load_results",
    "majority_correct",
    "pass_at_k",
]
