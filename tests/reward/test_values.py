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


def test_decimal_rule_relative_tolerance():
    """The convention behind the paper's table: |d - v| <= rel_tol * max(|d|, |v|), rel_tol 1e-4."""
    third = Fraction(1, 3)
    tol = 1e-4
    assert decimal_rule(Fraction("0.3333"), third, tol)  # exactly at the tolerance (<=, not <)
    assert not decimal_rule(Fraction("0.333"), third, tol)
    assert not decimal_rule(Fraction("0.33329"), third, tol)  # just beyond
    assert decimal_rule(Fraction("0.6667"), 2 * third, tol)
    assert decimal_rule(Fraction("-0.6667"), -2 * third, tol)
    assert not decimal_rule(Fraction("-0.667"), -2 * third, tol)
    sqrt2 = Fraction("1.41421356237309504880168872420969807856967187537694")
    assert decimal_rule(Fraction("1.4142"), sqrt2, tol, approximate=True)
    assert not decimal_rule(Fraction("1.414"), sqrt2, tol, approximate=True)
    pi = Fraction("3.14159265358979323846264338327950288419716939937510")
    assert not decimal_rule(Fraction("3.14"), pi, tol, approximate=True)
    assert decimal_rule(Fraction("3.1416"), pi, tol, approximate=True)
    assert decimal_rule(Fraction("3.14"), pi, 1e-3, approximate=True)  # a looser setting
    assert not decimal_rule(Fraction("3.1416"), pi, 0.0, approximate=True)  # 0: no tolerance
    # a value with a finite decimal expansion must be written exactly, whatever the tolerance
    assert not decimal_rule(Fraction("1.13"), Fraction(9, 8), 0.1)
    assert decimal_rule(Fraction("1.125"), Fraction(9, 8), tol)
    assert not decimal_rule(Fraction("27.0001"), Fraction(27), tol)


def test_rel_tol_is_a_grader_setting():
    from torl.reward import Grader

    with Grader(1, rel_tol=1e-3) as loose, Grader(1) as default:
        assert loose.compare("0.333", "\\frac13").equal
        assert not default.compare("0.333", "\\frac13").equal
        assert default.compare("0.333", "\\frac13", rel_tol=1e-3).equal  # per call
        assert default._pool is None and loose._pool is None  # decided without a worker
