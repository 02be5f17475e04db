import json

import pytest

from torl.errors import UserInputError
from torl.eval.metrics import benchmark_metrics
from torl.eval.results import (
    REFERENCE_RESULTS,
    build_results,
    compare_markdown,
    compare_runs,
    load_results,
    results_markdown,
    write_results,
)


def rec(pid, i, correct, *, code=True, calls=("ok",), tokens=100):
    return {
        "problem_id": pid,
        "sample_index": i,
        "pred": "1" if correct else "0",
        "correct": correct,
        "has_code": code,
        "num_executions": len(calls),
        "tool_calls": [{"status": s} for s in calls],
        "response_tokens": tokens,
        "truncated": False,
    }


def make_results(accs: dict[str, tuple[int, int]], run=None):
    metrics = {}
    for name, (right, total) in accs.items():
        samples = [rec(str(i), 0, i < right) for i in range(total)]
        metrics[name] = benchmark_metrics(samples, 1)
    return build_results(metrics, run or {"model": "m", "mode": "tir", "n": 1})


def test_results_json_fields_and_macro_average(tmp_path):
    res = make_results({"aime24": (3, 30), "math500": (400, 500)})
    assert res["macro_average"] == pytest.approx((0.1 + 0.8) / 2)
    b = res["benchmarks"]["math500"]
    for key in (
        "accuracy",
        "n_items",
        "n_samples",
        "code_ratio",
        "code_pass_ratio",
        "executions_per_response",
        "mean_response_tokens",
        "truncated_ratio",
    ):
        assert key in b, key
    assert b["accuracy"] == 0.8 and b["n_items"] == 500 and b["n_samples"] == 1
    json_path, md_path = write_results(tmp_path, res)
    assert json.loads(json_path.read_text()) == res
    md = md_path.read_text()
    assert "| AIME24 | 30 | 1 | 10.0 |" in md and "| MATH500 | 500 | 1 | 80.0 |" in md
    assert "**45.0**" in md  # macro average
    assert load_results(tmp_path) == res and load_results(json_path) == res


def test_markdown_of_a_sampled_run_shows_pass_and_maj_columns():
    samples = [rec("a", i, i < 2) for i in range(4)] + [rec("b", i, False) for i in range(4)]
    res = build_results({"aime24": benchmark_metrics(samples, 4)}, {"n": 4})
    md = results_markdown(res)
    header = md.splitlines()[2]
    assert "accuracy (avg@n)" in header and "pass@2" in header and "pass@4" in header and "maj@4" in header
    assert header.index("pass@4") < header.index("maj@4")
    row = next(line for line in md.splitlines() if line.startswith("| AIME24"))
    assert row.startswith("| AIME24 | 2 | 4 | 25.0 | 41.7 | 50.0 | 50.0 |")  # pass@2 of a: 1 - 1/6


def test_reference_rows_are_the_spec_table():
    assert REFERENCE_RESULTS["torl-1.5b"] == {
        "aime24": 0.267,
        "aime25": 0.267,
        "math500": 0.778,
        "olympiadbench": 0.440,
        "amc23": 0.675,
    }
    assert REFERENCE_RESULTS["torl-7b"]["olympiadbench"] == 0.499
    assert REFERENCE_RESULTS["qwen2.5-math-7b-instruct-tir"]["amc23"] == 0.700


def test_compare_uses_common_benchmarks_for_the_average(tmp_path):
    run_a = tmp_path / "run_a"
    write_results(run_a, make_results({"aime24": (9, 30), "math500": (390, 500), "gsm8k": (1000, 1319)}))
    run_b = tmp_path / "run_b"
    write_results(run_b, make_results({"aime24": (6, 30), "math500": (350, 500)}))
    table = compare_runs([run_a, run_b], references=["torl-1.5b"])
    lines = table.splitlines()
    assert lines[0] == "| run | AIME24 | AIME25 | MATH500 | Olympiad | AMC23 | GSM8K | avg (2 common) |"
    assert lines[2] == "| paper: torl-1.5b | 26.7 | 26.7 | 77.8 | 44.0 | 67.5 | – | 52.2 |"
    assert lines[3] == "| run_a | 30.0 | – | 78.0 | – | – | 75.8 | 54.0 |"
    assert lines[4] == "| run_b | 20.0 | – | 70.0 | – | – | – | 45.0 |"
    assert "mean over AIME24, MATH500" in table


def test_compare_without_missing_columns_has_plain_avg():
    table = compare_markdown([("x", {"aime24": 0.5, "amc23": 0.25}), ("y", {"aime24": 0.0, "amc23": 1.0})])
    assert table.splitlines()[0] == "| run | AIME24 | AMC23 | avg |"
    assert table.splitlines()[2] == "| x | 50.0 | 25.0 | 37.5 |"


def test_compare_errors(tmp_path):
    with pytest.raises(UserInputError, match="unknown reference 'torl-3b'; available: .*torl-1.5b"):
        compare_runs([], references=["torl-3b"])
    with pytest.raises(UserInputError, match="no results.json"):
        compare_runs([tmp_path])
    (tmp_path / "results.json").write_text("{oops")
    with pytest.raises(UserInputError, match="invalid JSON"):
        load_results(tmp_path)
