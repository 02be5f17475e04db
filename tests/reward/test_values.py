"""Exact values and the decimal-approximation rule."""

from fractions import Fraction

import pytest

from torl.reward import normalize_answer
from torl.reward.values import Based, Choice, Interval, Num, Seq, Text, decimal_rule, parse_value


def value(text):
    return parse_value(normalize_answer(text))


def test_numbers_are_exact_fractions():
    assert value("1/2^99") == Num(Fraction(1, 2**99))
    assert value("0.1\\overline{6}").re == Fraction(1, 6)
    assert value("1\\frac{4}{5}").re == Fraction(9, 5)
    assert value("(1+i)^2") == Num(Fraction(0), Fraction(2))
    assert value("4.5e33") == Num(Fraction(45 * 10**32), ulp=Fraction(10**32), sig=2)
    assert value("27.0") == Num(Fraction(27), ulp=Fraction(1, 10), sig=3)


def test_structures():
    assert isinstance(value("(3,4]"), Interval)
    assert value("(1,2)").kind == "pair"
    assert value("1, 2, 3").kind == "list"
    assert value("\\{1,2\\}").kind == "set"
    assert value("(1,2,3)").kind == "tuple"
    assert value("52_8") == Based("52", 8)
    assert value("\\text{(C)}") == Choice("C")
    assert value("\\text{Evelyn}") == Text("evelyn")
    assert isinstance(value("3 \\pm 2"), Seq)


@pytest.mark.parametrize(
    "text",
    [
        "\\sqrt{2}",
        "\\pi",
        "x+1",
        "2^{10^{10}}",
        "1e99999",
        "9" * 5000,
        "(" * 100 + "1" + ")" * 100,
        "0^{-1}",
        "1/0",
    ],
)
def test_not_exact_or_unbounded_gives_none(text):
    assert value(text) is None


def test_decimal_rule():
    third = Fraction(1, 3)
    assert decimal_rule(Fraction(333, 1000), Fraction(1, 1000), 3, third)
    assert not decimal_rule(Fraction(33, 100), Fraction(1, 100), 2, third)  # too few digits
    assert decimal_rule(Fraction(666, 1000), Fraction(1, 1000), 3, 2 * third)  # truncated
    assert decimal_rule(Fraction(667, 1000), Fraction(1, 1000), 3, 2 * third)  # rounded
    assert not decimal_rule(Fraction(665, 1000), Fraction(1, 1000), 3, 2 * third)
    assert not decimal_rule(Fraction(113, 100), Fraction(1, 100), 3, Fraction(9, 8))  # 9/8 = 1.125 exactly
    assert decimal_rule(Fraction(1125, 1000), Fraction(1, 1000), 4, Fraction(9, 8))
    assert not decimal_rule(Fraction(27), Fraction(1, 10), 3, Fraction(271, 10))
    assert decimal_rule(Fraction(-667, 1000), Fraction(1, 1000), 3, -2 * third)
    assert decimal_rule(Fraction(-666, 1000), Fraction(1, 1000), 3, -2 * third)
    assert not decimal_rule(Fraction(-665, 1000), Fraction(1, 1000), 3, -2 * third)
