"""score: +1 / -1, the execution penalty in its two modes, ToolCall objects and JSONL dicts."""

import pytest

from torl.reward import Grader, RewardConfig, execution_failed, score, score_many
from torl.rollout.result import ToolCall
from torl.sandbox.base import ExecResult

PENALTY = RewardConfig(exec_penalty=True)
REFERENCE = RewardConfig(exec_penalty=True, mode="reference")


@pytest.fixture(scope="module")
def calls(local_sandbox):
    """Real tool calls: code run by the real local sandbox."""
    ok = local_sandbox.run("print(2**10)")
    crash = local_sandbox.run("print(1/0)")
    printed_then_crashed = local_sandbox.run("print(5)\nraise SystemExit(3)")
    slow = local_sandbox.run("import time\ntime.sleep(5)", timeout=0.5)
    assert (ok.status, crash.status, printed_then_crashed.status, slow.status) == (
        "ok",
        "error",
        "error",
        "timeout",
    )
    return {name: ToolCall(code="...", result=r, observation=r.stdout) for name, r in
            {"ok": ok, "crash": crash, "printed_then_crashed": printed_then_crashed, "slow": slow}.items()}  # fmt: skip


def test_correct_wrong_and_missing_box(grader):
    assert score("so \\boxed{\\frac12}", "0.5", grader=grader) == 1.0
    assert score("so \\boxed{3}", "4", grader=grader) == -1.0
    assert score("the answer is 4", "4", grader=grader) == -1.0  # no box
    assert score("the answer is 4", "4", grader=grader, config=RewardConfig(fallback_extraction=True)) == 1.0
    assert (
        score("\\boxed{5}", "5", config=RewardConfig(correct_reward=2.0, wrong_reward=0.0), grader=grader)
        == 2.0
    )


def test_box_in_tool_output_does_not_count(grader):
    response = "```python\nprint(chr(92) + 'boxed{7}')\n```\n```output\n\\boxed{7}\n```\nI am not sure."
    assert score(response, "7", grader=grader) == -1.0


def test_penalty_off_by_default(grader, calls):
    assert score("\\boxed{1024}", "1024", tool_calls=[calls["crash"]], grader=grader) == 1.0


def test_torl_penalty(grader, calls):
    assert score("\\boxed{1024}", "1024", tool_calls=[calls["ok"]], config=PENALTY, grader=grader) == 1.0
    assert (
        score(
            "\\boxed{1024}", "1024", tool_calls=[calls["ok"], calls["crash"]], config=PENALTY, grader=grader
        )
        == 0.5
    )
    assert score("\\boxed{1}", "1024", tool_calls=[calls["slow"]], config=PENALTY, grader=grader) == -1.5
    assert (
        score("\\boxed{1}", "1024", tool_calls=[], config=PENALTY, grader=grader) == -1.0
    )  # no code: no penalty
    assert score("\\boxed{1}", "1024", tool_calls=None, config=PENALTY, grader=grader) == -1.0
    sandbox_failure = ToolCall("...", ExecResult("sandbox_error", reason="pool down"), "")
    assert score("\\boxed{1024}", "1024", tool_calls=[sandbox_failure], config=PENALTY, grader=grader) == 1.0


def test_reference_penalty_hits_responses_without_code(grader, calls):
    assert score("\\boxed{1024}", "1024", tool_calls=[], config=REFERENCE, grader=grader) == 0.5
    assert score("\\boxed{1024}", "1024", tool_calls=None, config=REFERENCE, grader=grader) == 0.5
    assert score("\\boxed{1024}", "1024", tool_calls=[calls["ok"]], config=REFERENCE, grader=grader) == 1.0
    assert score("\\boxed{1024}", "1024", tool_calls=[calls["crash"]], config=REFERENCE, grader=grader) == 0.5
    # the reference counts a program that printed before crashing as passed
    assert (
        score("\\boxed{5}", "5", tool_calls=[calls["printed_then_crashed"]], config=REFERENCE, grader=grader)
        == 1.0
    )
    assert (
        score("\\boxed{5}", "5", tool_calls=[calls["printed_then_crashed"]], config=PENALTY, grader=grader)
        == 0.5
    )


def test_reference_mode_uses_the_reference_grader(grader):
    # math-verify called the reference way (prediction first, no $...$) misses this LaTeX answer ...
    assert score("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}", grader=grader) == 1.0
    ref = RewardConfig(mode="reference")
    assert score("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}", config=ref, grader=grader) == -1.0
    # ... and has math-verify's false positive
    assert score("\\boxed{1/2^{99}}", "1/2^{98}", config=ref, grader=grader) == 1.0
    assert score("\\boxed{1/2^{99}}", "1/2^{98}", grader=grader) == -1.0


def test_jsonl_dicts_are_accepted(grader):
    dumped = [{"code": "x", "status": "error", "observation": "ZeroDivisionError"}]
    assert score("\\boxed{2}", "2", tool_calls=dumped, config=PENALTY, grader=grader) == 0.5
    nested = [{"code": "x", "result": {"status": "ok", "stdout": "2"}}]
    assert score("\\boxed{2}", "2", tool_calls=nested, config=PENALTY, grader=grader) == 1.0
    with_result_object = [{"result": ExecResult("timeout")}]
    assert execution_failed(with_result_object)
    with pytest.raises(ValueError, match="status"):
        score("\\boxed{2}", "2", tool_calls=[{"code": "x"}], config=PENALTY, grader=grader)


def test_score_many_matches_score(grader, calls):
    responses = ["\\boxed{1}", "\\boxed{2}", "nothing", "\\boxed{1024}"]
    golds = ["1", "3", "1", "2^{10}"]
    tool_calls = [None, [calls["crash"]], [], [calls["ok"]]]
    batch = score_many(responses, golds, tool_calls=tool_calls, config=PENALTY, grader=grader)
    assert batch == [score(r, g, tool_calls=t, config=PENALTY, grader=grader)
                     for r, g, t in zip(responses, golds, tool_calls, strict=True)]  # fmt: skip
    assert batch == [1.0, -1.5, -1.0, 1.0]


def test_config_validation():
    with pytest.raises(ValueError):
        RewardConfig(mode="other")
    with pytest.raises(ValueError):
        score_many(["a"], ["b", "c"], grader=Grader(1))
