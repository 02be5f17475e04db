"""reward.mode "reference": the reference's check step by step (TORL-SPEC §4), and the hand-derived table."""

import pytest

from torl.reward import RewardConfig, execution_failed, extract_answer, reference_extract, score_many
from torl.reward.reference import (
    hendrycks_is_equiv,
    hendrycks_strip_string,
    minerva_normalize,
    reference_equal,
    reference_normalize,
)

from .helpers import DATA

REFERENCE = RewardConfig(mode="reference")
REFERENCE_PENALTY = RewardConfig(mode="reference", exec_penalty=True)
STEP_METHODS = {"1": "no_answer", "2": "ref:lower", "4": "ref:math_verify"}


def load_reference_cases() -> list[tuple]:
    """(response, gold, executions, score, score with penalty, step, why) rows of data/reference_cases.tsv."""
    rows = []
    for lineno, line in enumerate((DATA / "reference_cases.tsv").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        response, gold, calls, plain, penalised, step, why = line.split("\t")
        assert step in STEP_METHODS, f"bad step at line {lineno}"
        executions = []
        for call in [] if calls == "-" else calls.split(","):
            status, _, out = call.partition("+")
            executions.append({"status": status, "stdout": "x" if out else ""})
        rows.append(
            (response.replace("⏎", "\n"), gold, executions, float(plain), float(penalised), step, why)
        )
    return rows


def test_reference_table(grader):
    rows = load_reference_cases()
    assert len(rows) >= 40
    responses, golds, calls = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    plain = score_many(responses, golds, tool_calls=calls, config=REFERENCE, grader=grader)
    penalised = score_many(responses, golds, tool_calls=calls, config=REFERENCE_PENALTY, grader=grader)
    verdicts = grader.verdicts([reference_extract(r) for r in responses], golds, mode="reference")
    wrong = [
        f"{why}: {response!r} vs {gold!r}: expected {want}/{want_pen} (step {step}), "
        f"got {got}/{got_pen} ({verdict.method})"
        for (response, gold, _, want, want_pen, step, why), got, got_pen, verdict in zip(
            rows, plain, penalised, verdicts, strict=True
        )
        if (got, got_pen, verdict.method) != (want, want_pen, STEP_METHODS[step])
    ]
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------- step 1: extraction


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("\\boxed{1} and \\boxed{2}", "2"),
        ("\\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),
        ("\\boxed{{{{x}}}}", "{{{x}}}"),  # four levels: found
        ("\\boxed{{{{{x}}}}}", None),  # five levels: not found
        ("\\boxed{1} \\boxed{{{{{x}}}}}", "1"),  # a too-deep last box leaves the earlier one
        ("\\boxed{1} \\boxed{2", "1"),  # unclosed last box
        ("\\boxed 5", None),
        ("\\fbox{5}", None),
        ("\\boxed {5}", None),
        ("```output\n\\boxed{9}\n```", "9"),  # tool output included
        ("```output\n\\boxed{9}", "9"),  # an open output block too
        ("no box", None),
        ("\\boxed{}", ""),
    ],
)
def test_step1_extraction(response, expected):
    assert reference_extract(response) == expected


def test_step1_differs_from_torl_extraction():
    assert extract_answer("\\boxed 5") == "5" and reference_extract("\\boxed 5") is None
    assert extract_answer("\\fbox{5}") == "5" and reference_extract("\\fbox{5}") is None
    assert extract_answer("\\boxed{1} \\boxed{2") is None and reference_extract("\\boxed{1} \\boxed{2") == "1"
    assert extract_answer("```output\n\\boxed{9}\n```") is None


# --------------------------------------------------------------------------- step 2: case-insensitive


def test_step2_strip_lower_needs_no_worker():
    from torl.reward import Grader

    with Grader(1) as g:
        verdicts = g.verdicts(["A", " \\text{EVEN} ", "X^2"], ["a", "\\text{even}", "x^2"], mode="reference")
        assert [(v.equal, v.method) for v in verdicts] == [(True, "ref:lower")] * 3
        assert g._pool is None


# ------------------------------------------------------------------------ step 3: Minerva without "="


def test_step3_no_split_at_equals():
    assert minerva_normalize("x = 5") == "5"  # the appendix's normaliser splits
    assert reference_normalize("x = 5") == "x=5"  # the reference's variant does not
    assert reference_normalize("y = 2x + 3") == "y=2x+3"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("\\$18", "18"),
        ("10 \\text{ cm}", "10"),
        ("\\frac34", "\\frac{3}{4}"),
        ("\\sqrt2", "\\sqrt{2}"),
        ("1,000", "1000"),
        ("1,000.5", "1,000.5"),  # only a plain integer loses its commas
        ("90^\\circ", "90"),
        ("$5$", "5"),
        ("\\textbf{7}", "7"),
        ("\\overline{3}", "3"),
        ("\\(\\frac{1}{2}\\)", "\\frac{1}{2}"),
        ("\\[x\\]", "x"),
        ("\\text{Tuna sandwich}", "Tunsandwich"),  # the appendix's blunt "a " substitution, kept
        ("5 \\text{ ways}", "5"),
        ("\\boxed{3}", "3"),
        ("\\dfrac{3}{4}", "\\dfrac{3}{4}"),  # not in the appendix
    ],
)
def test_step3_minerva_variant(answer, expected):
    assert reference_normalize(answer) == expected


# ------------------------------------------------------------------------------ step 4: math-verify


def test_step4_prediction_first_on_normalised_strings():
    seen = []
    assert reference_equal("\\$5", "\\text{6}", verifier=lambda a, b: seen.append((a, b)) or True) == (
        True,
        "ref:math_verify",
    )
    assert seen == [("5", "6")]  # normalised, prediction first, no $…$


# ----------------------------------------------------------------------------- step 5 and 6: fallbacks


def _raises(a, b):
    raise ValueError("math-verify failed")


def test_step5_strip_string_on_the_values_at_hand():
    # math-verify raised: Hendrycks is_equiv on the *normalised* values ("7" vs "7")
    assert reference_equal("\\textbf{7}", "7", verifier=_raises) == (True, "ref:strip_string")
    assert not hendrycks_is_equiv("\\textbf{7}", "7")  # on the raw values it would say no
    assert reference_equal("\\dfrac{1}{2}", "0.5", verifier=_raises) == (True, "ref:strip_string")
    assert reference_equal("3", "4", verifier=_raises) == (False, "ref:strip_string")


def test_hendrycks_strip_string():
    assert hendrycks_strip_string("\\dfrac12") == "\\frac{1}{2}"
    assert hendrycks_strip_string("0.5") == "\\frac{1}{2}"
    assert hendrycks_strip_string("3/4") == "\\frac{3}{4}"
    assert hendrycks_strip_string("a/b") == "a/b"
    assert hendrycks_strip_string("k = 3") == "3"
    assert hendrycks_strip_string("\\sqrt3") == "\\sqrt{3}"
    assert hendrycks_strip_string("5 \\text{ cm}") == "5"
    assert hendrycks_strip_string(".5") == "\\frac{1}{2}"
    assert hendrycks_strip_string("\\left( 1, 2 \\right)") == "(1,2)"
    assert hendrycks_strip_string("50\\%") == "50"
    # the original raises here; is_equiv then compares the raw strings
    with pytest.raises(AssertionError):
        hendrycks_strip_string("1 \\text{ m} 2 \\text{ s}")
    with pytest.raises(IndexError):
        hendrycks_strip_string("2\\sqrt")
    assert hendrycks_is_equiv("2\\sqrt", "2\\sqrt") and not hendrycks_is_equiv("2\\sqrt", "2 \\sqrt")


def test_step6_any_exception_is_wrong():
    assert reference_equal(5, "5") == (False, "ref:error")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the penalty's flag


@pytest.mark.parametrize(
    ("statuses", "failed"),
    [
        ([], True),  # no code: the flag was never set (a reference defect)
        ([("ok", "")], False),
        ([("error", "")], True),
        ([("error", ""), ("ok", "")], False),  # only the last execution counts
        ([("ok", ""), ("error", "")], True),
        ([("error", "Traceback")], False),  # printed something: passed
        ([("timeout", "partial")], False),
        ([("ok", ""), ("sandbox_error", "")], True),
    ],
)
def test_reference_flag_is_the_last_execution(statuses, failed):
    calls = [{"status": s, "stdout": out} for s, out in statuses]
    assert execution_failed(calls, mode="reference") is failed
    printed = [{"status": s, "printed": bool(out)} for s, out in statuses]  # the training path's form
    assert execution_failed(printed, mode="reference") is failed


def test_training_reward_sees_the_reference_flag(grader):
    """The rollout function's extras carry what the flag needs (did the execution print?) to TIRReward."""
    from torl.rollout import RolloutResult, ToolCall
    from torl.sandbox import ExecResult
    from torl.train.rewards import TIRReward
    from torl.train.rollout_func import to_trl_output

    printed_then_crashed = ToolCall(
        "print(5); 1/0", ExecResult("error", stdout="5\n", stderr="ZeroDivisionError"), "5"
    )
    silent_ok = ToolCall("x = 1", ExecResult("ok"), "")
    silent_crash = ToolCall("1/0", ExecResult("error", stderr="ZeroDivisionError"), "ZeroDivisionError")
    results = [
        RolloutResult(
            prompt="p", prompt_ids=[1], completion_ids=[5], mask=[1], logprobs=[0.0], tool_calls=calls
        )
        for calls in ([printed_then_crashed], [silent_crash, silent_ok], [silent_ok, silent_crash], [])
    ]
    extras = to_trl_output(results, eos_token_id=9)
    assert extras["tool_printed"] == [[True], [False, False], [False, False], []]
    reward = TIRReward(REFERENCE_PENALTY, recorder=None, grader=grader)
    rewards = reward(
        prompts=["p"] * 4,
        completions=["\\boxed{5}"] * 4,
        answer=["5"] * 4,
        tool_statuses=extras["tool_statuses"],
        tool_printed=extras["tool_printed"],
    )
    assert rewards == [1.0, 1.0, 0.5, 0.5]
