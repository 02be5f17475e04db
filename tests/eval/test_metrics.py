import itertools
import math

import pytest

from torl.eval.metrics import (
    avg_at_k,
    benchmark_metrics,
    macro_average,
    majority_correct,
    pass_at_k,
    pass_at_k_values,
    tool_stats,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 is the share correct
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (6, 2, 3, 0.8),  # 1 - C(4,3)/C(6,3) = 1 - 4/20
        (3, 1, 3, 1.0),  # n - c < k: some k-subset always holds a correct one
        (8, 0, 4, 0.0),
        (16, 16, 16, 1.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_share_of_k_subsets_with_a_correct_sample():
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_stable():
    exact = 1 - math.comb(900, 64) / math.comb(1000, 64)
    assert pass_at_k(1000, 100, 64) == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_avg_and_macro():
    assert avg_at_k([[True, False], [True, True], [False, False]]) == pytest.approx(0.5)
    assert avg_at_k([[True], [False], [False], [True]]) == 0.5
    assert macro_average([0.2, 0.4, 0.9]) == pytest.approx(0.5)


def test_majority_vote():
    assert majority_correct(["2", "3", "3"], [True, False, False]) is False
    assert majority_correct(["2", "3", "2"], [True, False, True]) is True
    # no-answer samples do not vote, whitespace does not split a group
    assert majority_correct([None, None, "x + 1", "x+1", "y"], [False, False, True, True, False]) is True
    # tie: the answer seen first wins
    assert majority_correct(["5", "7", "7", "5"], [False, True, True, False]) is False
    assert majority_correct(["7", "5", "5", "7"], [True, False, False, True]) is True
    assert majority_correct([None, None], [False, False]) is False


def test_pass_at_k_values():
    assert pass_at_k_values(1) == [1]
    assert pass_at_k_values(4) == [1, 2, 4]
    assert pass_at_k_values(10) == [1, 2, 4, 8, 10]


def rec(pid, i, correct, pred="1", *, code=False, calls=(), tokens=10, truncated=False):
    return {
        "problem_id": pid,
        "sample_index": i,
        "pred": pred,
        "correct": correct,
        "has_code": code,
        "num_executions": len(calls),
        "tool_calls": [{"status": s} for s in calls],
        "response_tokens": tokens,
        "truncated": truncated,
    }


def test_tool_stats():
    samples = [
        rec("a", 0, True, code=True, calls=["ok"], tokens=100),
        rec("b", 0, False, code=True, calls=["error", "ok"], tokens=50, truncated=True),
        rec("c", 0, False, pred=None, code=False, tokens=30),
        rec("d", 0, True, code=True, calls=["sandbox_error"], tokens=20),
    ]
    t = tool_stats(samples)
    assert t.code_ratio == 0.75
    assert t.code_pass_ratio == pytest.approx(2 / 3)  # sandbox_error is not the code's fault
    assert t.sandbox_errors == 1
    assert t.executions_per_response == 1.0
    assert t.mean_response_tokens == 50.0
    assert t.truncated_ratio == 0.25
    assert t.no_answer_ratio == 0.25
    assert tool_stats([rec("a", 0, True)]).code_pass_ratio is None


def test_benchmark_metrics_sampled():
    # item a: 3/4 correct, majority "2" correct; item b: 1/4 correct, majority "9" wrong
    samples = [
        rec("a", i, ok, p) for i, (ok, p) in enumerate([(True, "2"), (False, "3"), (True, "2"), (True, "2")])
    ]
    samples += [
        rec("b", i, ok, p)
        for i, (ok, p) in enumerate([(False, "9"), (False, "9"), (True, "4"), (False, "8")])
    ]
    samples += [rec("a", 7, False)]  # index beyond n: ignored
    m = benchmark_metrics(samples, 4, ["a", "b", "c"])
    assert m.n_items == 2 and m.n_missing == 1 and m.n_samples == 4 and m.n_responses == 8
    assert m.accuracy == pytest.approx((0.75 + 0.25) / 2)
    assert m.at_k["avg@4"] == m.accuracy
    assert m.at_k["pass@1"] == pytest.approx(0.5)
    assert m.at_k["pass@2"] == pytest.approx((1.0 + 0.5) / 2)  # a: 1 - 0/6, b: 1 - C(3,2)/C(4,2)
    assert m.at_k["pass@4"] == 1.0
    assert m.at_k["maj@4"] == 0.5
    d = m.to_dict()
    assert d["accuracy"] == m.accuracy and d["pass@2"] == m.at_k["pass@2"] and d["code_ratio"] == 0.0


def test_benchmark_metrics_greedy_and_incomplete_items():
    samples = [rec("a", 0, True), rec("b", 0, False), rec("c", 0, True)]
    m = benchmark_metrics(samples, 1)
    assert m.accuracy == pytest.approx(2 / 3) and set(m.at_k) == {"avg@1", "pass@1"}
    with pytest.raises(ValueError):
        benchmark_metrics(samples, 2)  # nobody has 2 samples
