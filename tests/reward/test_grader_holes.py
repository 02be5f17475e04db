"""Grader holes a policy could exploit, closed (the pairs themselves are rows of equivalence_cases.tsv)."""

import pytest

from torl.reward import Grader, RewardConfig, normalize_answer, score


def test_undefined_values_equal_nothing(grader):
    for pred, gold in [
        ("1:00", "12:00"),
        ("3:00", "12:00"),
        ("\\frac10", "\\frac20"),
        ("\\frac{0}{0}", "0/0"),
    ]:
        verdict = grader.compare(pred, gold)
        assert (verdict.equal, verdict.method) == (False, "undefined"), (pred, gold)
    assert grader.compare("12:00", "12:00").equal  # the same text is still the same answer


def test_relative_tolerance_is_a_reward_setting(grader):
    assert score("\\boxed{1.4142}", "\\sqrt{2}", grader=grader) == 1.0
    assert score("\\boxed{3.14}", "\\pi", grader=grader) == -1.0
    assert score("\\boxed{0.333}", "\\frac{1}{3}", grader=grader) == -1.0
    loose = RewardConfig(rel_tol=1e-3)
    assert score("\\boxed{3.14}", "\\pi", grader=grader, config=loose) == 1.0
    assert score("\\boxed{0.333}", "\\frac{1}{3}", grader=grader, config=loose) == 1.0
    exact = RewardConfig(rel_tol=0.0)
    assert score("\\boxed{1.4142}", "\\sqrt{2}", grader=grader, config=exact) == -1.0
    assert (
        score("\\boxed{0.125}", "\\frac18", grader=grader, config=exact) == 1.0
    )  # exact decimals still match
    for bad in (-1e-4, 1.0, "1e-4"):
        with pytest.raises(ValueError, match="rel_tol"):
            RewardConfig(rel_tol=bad)
        with pytest.raises(ValueError, match="rel_tol"):
            Grader(1, rel_tol=bad)


def test_a_removed_assignment_is_remembered():
    assert normalize_answer("y = 2x + 3").assigned == "y"
    assert normalize_answer("y=-\\frac12x+\\frac34").assigned == "y"
    assert normalize_answer("2x - y + 3 = 0").assigned == ""  # an equation, kept whole
    assert normalize_answer("f(x) = 2x").assigned == ""  # not a plain variable
    assert normalize_answer("a=2, a=-6").assigned == ""  # several parts


def test_equations_compare_as_equations(grader):
    for pred, gold, equal in [
        ("2x - y + 3 = 0", "y = 2x + 3", True),
        ("2x + y = 0", "y = -2x", True),
        ("y=-\\frac12x+\\frac34", "2x+4y-3=0", True),
        ("2x - y + 4 = 0", "y = 2x + 3", False),
        ("y = 2x + 3", "x = 2y + 3", False),
        ("x^2 = 4", "x = 2", False),
    ]:
        verdict = grader.compare(pred, gold)
        assert (verdict.equal, verdict.method) == (equal, "equation"), (pred, gold)


def test_percent_words_and_trailing_backslash():
    for text in ("28 pct", "28 percentage", "28 \\text{ percent}", "28\\%"):
        normalized = normalize_answer(text)
        assert (normalized.text, normalized.percent) == ("28", True), text
    assert normalize_answer("185\\").text == "185"
    assert normalize_answer("185\\\\").text == "185"
    matrix = "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"
    assert normalize_answer(matrix).text == matrix


def test_undecidable_constant_comparison_falls_back_to_verify():
    import sympy

    from torl.reward.normalize import NormalizedAnswer
    from torl.reward.symbolic import constants_equal, parse_answer, symbolic_equal

    unevaluated = parse_answer("28 pct")[0]  # 28*(1/100) with an unevaluated factor: sympy cannot order it
    assert constants_equal(unevaluated, sympy.Integer(28)) is None  # was a TypeError
    raw = NormalizedAnswer("28 pct", "28pct")  # as if the percent word had not been read
    assert symbolic_equal(raw, NormalizedAnswer("28", "28", percent=True)) == (True, "math_verify")
    assert symbolic_equal(raw, NormalizedAnswer("0.28", "0.28"))[0]
