"""reward.mode "reference": the reference's check step by step (TORL-SPEC §4), and the hand-derived table."""

import argparse
import json
import re
from functools import partial

import pytest

from torl.reward import RewardConfig, execution_failed, extract_answer, reference_extract, score_many
from torl.reward.reference import (
    APPENDIX_REMOVED,
    APPENDIX_SUBSTITUTIONS,
    REFERENCE_REMOVED,
    REFERENCE_SUBSTITUTIONS,
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
        ("\\text{Tuna sandwich}", "Tunasandwich"),  # no ("a ", ""): the appendix gives Tunsandwich
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"),  # appendix: \le(…\right)
        ("\\infty", "\\infty"),  # no "ft": the appendix gives \iny
        ("x \\simeq 2", "x=2"),  # \simeq before \sim, else x=eq2
        ("1，000", "1000"),  # U+FF0C becomes a thousands comma, then removed
        ("$\\(x\\)$", "x"),  # the wrapper stripped again after the $ are gone
        ("5 \\text{ ways}", "5"),
        ("\\boxed{3}", "3"),
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),  # the reference's ("\\dfrac", "\\frac"), not in the appendix
    ],
)
def test_step3_minerva_variant(answer, expected):
    assert reference_normalize(answer) == expected


# ---------------------------------------------- step 3: the reference's lists against the appendix's

# what torl's reference mode applied before issue 22: the appendix's lists and one wrapper strip
APPENDIX_NORMALIZE = partial(
    reference_normalize, substitutions=APPENDIX_SUBSTITUTIONS, removed=APPENDIX_REMOVED, strip_again=False
)
TAG = re.compile(r"\[([+-]sub|[+-]removal) (.*?)\] |\[(strip again)\] ")


def list_differences() -> set[tuple[str, str]]:
    """(kind, search string) of every substitution and removal that only one of the two lists has."""
    return (
        {("+sub", b) for b, a in REFERENCE_SUBSTITUTIONS if (b, a) not in APPENDIX_SUBSTITUTIONS}
        | {("-sub", b) for b, a in APPENDIX_SUBSTITUTIONS if (b, a) not in REFERENCE_SUBSTITUTIONS}
        | {("+removal", e) for e in REFERENCE_REMOVED if e not in APPENDIX_REMOVED}
        | {("-removal", e) for e in APPENDIX_REMOVED if e not in REFERENCE_REMOVED}
    )


def toggled(kind: str, entry: str):
    """The reference's step 3 with one differing entry (or the second strip) switched to the appendix's way."""
    if kind == "strip again":
        return partial(reference_normalize, strip_again=False)
    subs, removed = list(REFERENCE_SUBSTITUTIONS), list(REFERENCE_REMOVED)
    if kind == "+sub":
        subs = [pair for pair in subs if pair[0] != entry]
    elif kind == "-sub":
        pair = next(pair for pair in APPENDIX_SUBSTITUTIONS if pair[0] == entry)
        subs.insert(APPENDIX_SUBSTITUTIONS.index(pair), pair)
    elif kind == "+removal":
        removed.remove(entry)
    else:
        removed.insert(APPENDIX_REMOVED.index(entry), entry)
    return partial(reference_normalize, substitutions=tuple(subs), removed=tuple(removed))


def tagged_rows() -> list[tuple[str, str, str, str, float]]:
    """(kind, entry, extracted prediction, gold, score) of the table's rows tagged with a list difference."""
    rows = []
    for response, gold, _, score, _, _, why in load_reference_cases():
        if m := TAG.match(why):
            kind, entry = (m[1], m[2]) if m[1] else (m[3], "")
            rows.append((kind, entry, reference_extract(response), gold, score))
    return rows


def test_the_lists_are_the_specs():
    """TORL-SPEC §4 step 3: 17 more substitutions, no ("a ", ""), no "ft"; the shared entries in the same order."""
    added = ("\\left", "\\right", "\u2236", "\uff0c", "$", "\\approx", "\\simeq", "\\sim", "^\\prime", "^{\\prime}",
             "\\dfrac", "\\tfrac", "^\\circ", "%", "\u221a", "\u221e", "\u222a")  # fmt: skip
    assert list_differences() == {("+sub", b) for b in added} | {("-sub", "a "), ("-removal", "ft")}
    shared = [pair for pair in REFERENCE_SUBSTITUTIONS if pair in APPENDIX_SUBSTITUTIONS]
    assert shared == [pair for pair in APPENDIX_SUBSTITUTIONS if pair in REFERENCE_SUBSTITUTIONS]
    assert list(REFERENCE_REMOVED) == [e for e in APPENDIX_REMOVED if e != "ft"]


def test_table_has_a_flipping_row_per_list_difference():
    """Every differing entry (and the second strip) has a table row; each row's verdict is the table's under the
    reference's step 3 and the opposite under the appendix's lists and with that entry alone toggled."""
    rows = tagged_rows()
    assert {(kind, entry) for kind, entry, *_ in rows} == list_differences() | {("strip again", "")}
    wrong = []
    for kind, entry, pred, gold, score in rows:
        normalizers = (reference_normalize, APPENDIX_NORMALIZE, toggled(kind, entry))
        verdicts = [reference_equal(pred, gold, normalize=f)[0] for f in normalizers]
        if verdicts != [score > 0, score < 0, score < 0]:
            wrong.append(f"{kind} {entry!r}: {pred!r} vs {gold!r}: reference/appendix/toggled {verdicts}")
    assert not wrong, "\n".join(wrong)


def test_every_entry_point_grades_with_the_reference_lists(grader, tmp_path, capsys):
    """Training (and its validation), `torl grade --mode reference` and veRL's reward_kwargs.mode=reference all
    reach the reference's extraction and step 3: +1 needs the regex's box and ("\\dfrac", "\\frac"), -1 needs
    no "%" left for math-verify to read as 1/4."""
    from torl.reward.cli import register
    from torl.train.rewards import grade_responses
    from torl.verl.reward import compute_score

    responses = ["\\boxed{\\dfrac{3}{4}}, or \\fbox{1}", "\\boxed{25%}"]
    golds = ["\\frac{3}{4}", "\\frac{1}{4}"]
    assert score_many(responses, golds, config=REFERENCE, grader=grader) == [1.0, -1.0]
    assert grade_responses(responses, golds, [[], []], REFERENCE, grader)[0] == [1.0, -1.0]
    pairs = list(zip(responses, golds, strict=True))
    assert [compute_score("demo", r, g, {}, mode="reference")["score"] for r, g in pairs] == [1.0, -1.0]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"response": r, "gold": g}) + "\n" for r, g in pairs))
    subparsers = argparse.ArgumentParser().add_subparsers()
    register(subparsers)  # `torl grade` alone, without the other subcommands' imports
    args = subparsers.choices["grade"].parse_args(["--file", str(path), "--mode", "reference", "--json"])
    capsys.readouterr()
    assert args.func(args) == 0
    assert [json.loads(line)["correct"] for line in capsys.readouterr().out.splitlines()] == [True, False]


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
