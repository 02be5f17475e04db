"""Hard time bounds: pathological input returns in bounded time, timeouts are counted, workers replaced."""

import threading
import time

import pytest

from torl.reward import Grader

SLOW = ("(x+1)^{1000}", "x^{1000}+1")  # sympy expands this for far longer than the timeout


@pytest.fixture(scope="module")
def quick():
    with Grader(2, timeout=1.5) as g:
        yield g


PATHOLOGICAL = [
    ("10^{10^{10}}", "10^{10^{10}}+1"),
    ("2^{2^{2^{2^{2^{2}}}}}", "2^{2^{2^{2^{2^{2}}}}}+1"),
    ("9" * 100_000, "9" * 99_999 + "8"),
    ("x" * 100_000, "x"),
    ("(" * 5000 + "1" + ")" * 5000, "1"),
    ("\\frac{" * 2000 + "1" + "}{2}" * 2000, "1"),
    ("\u2603\x00\ud7ff\u202e" * 500, "5"),
    ("\\boxed{" * 300, "1"),
    ("\\sqrt{\\sqrt{\\sqrt{\\sqrt{\\sqrt{2}}}}}" * 20, "2"),
    ("1e999999999", "1"),
    (SLOW[0], SLOW[1]),
]


def test_pathological_inputs_return_in_bounded_time(quick):
    start = time.monotonic()
    verdicts = quick.verdicts([p for p, _ in PATHOLOGICAL], [g for _, g in PATHOLOGICAL])
    elapsed = time.monotonic() - start
    assert all(not v.equal for v in verdicts), verdicts
    # every item is bounded by the timeout; with 2 workers in parallel the batch is well under n * timeout
    assert elapsed < len(PATHOLOGICAL) * 1.5 + 10
    assert quick.is_equivalent("9" * 100_000, "9" * 100_000)  # equal long strings still match


def test_timeout_is_counted_and_the_worker_replaced():
    with Grader(1, timeout=1.0) as g:
        assert g.is_equivalent("\\cot x", "\\frac{\\cos x}{\\sin x}")  # the worker is up
        start = time.monotonic()
        verdict = g.compare(*SLOW)
        assert time.monotonic() - start < 5
        assert verdict.equal is False and verdict.method == "timeout"
        stats = g.stats
        assert stats.timeouts == 1 and stats.worker_restarts == 1
        # the replacement worker grades normally
        assert g.is_equivalent("\\sqrt{8}", "2\\sqrt{2}")
        assert g.compare("p-q", "q-p").method == "math_verify"
        # a timed-out pair is remembered: no second wait
        start = time.monotonic()
        assert g.compare(*SLOW).method == "timeout"
        assert time.monotonic() - start < 0.5


def test_timeout_in_one_thread_does_not_block_the_others():
    with Grader(2, timeout=2.0) as g:
        g.is_equivalent("\\cot x", "\\frac{\\cos x}{\\sin x}")
        slow = threading.Thread(target=g.is_equivalent, args=SLOW)
        slow.start()
        time.sleep(0.2)
        start = time.monotonic()
        assert g.is_equivalent("p - q", "-q + p")  # served by the other worker
        assert time.monotonic() - start < 1.5
        slow.join()
        assert g.stats.timeouts == 1


def test_unknown_inputs_are_rejected_clearly(quick):
    with pytest.raises(ValueError, match="items"):
        quick.grade_many(["1"], ["1", "2"])
    with pytest.raises(TypeError, match="gold"):
        quick.is_equivalent("1", None)
    assert quick.is_equivalent(None, "1") is False
    assert quick.compare(None, "1").method == "no_answer"
    assert quick.is_equivalent("27.0", 27) and quick.is_equivalent("0.5", 0.5)  # numeric golds accepted


def test_workers_that_cannot_start_raise_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "executable", "/bin/false")  # every worker process exits at once
    with Grader(1) as g:
        assert g.is_equivalent("1/2", "0.5")  # decided in-process: no worker needed
        with pytest.raises(RuntimeError, match="failed to start"):
            g.is_equivalent("p-q", "-q+p")
    monkeypatch.undo()
    with Grader(1) as g:
        assert g.is_equivalent("p-q", "-q+p")
