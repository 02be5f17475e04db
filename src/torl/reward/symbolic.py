"""Symbolic comparison with math-verify, plus the exactness guards math-verify lacks.

Runs inside the worker processes (`torl.reward._worker`); importing it loads sympy and math-verify.
math-verify is called the right way: gold first, the answer wrapped in `$…$`, its signal-based timeouts
disabled (`parsing_timeout=None`, `timeout_seconds=None`; the worker's caller enforces a hard deadline).

Guards on top of `verify`:
- numeric constants (no variables, no decimals) are compared at a precision that resolves them exactly
  (|a − b| ≤ 1e-40 · min(1, |a|) with 50 + log10|a| digits), which removes the `1/2^99 = 1/2^98` false
  positive that comes from math-verify's absolute chop; the same for the elements of tuples, sets,
  intervals and matrices made of such constants;
- a decimal literal against an exact irrational (0.866 vs √3/2) follows `values.decimal_rule`.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from functools import lru_cache

import sympy
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify
from sympy import FiniteSet as SympyFiniteSet
from sympy import Float, Interval, MatrixBase, Tuple

from torl.reward.normalize import NormalizedAnswer
from torl.reward.values import Num, decimal_rule, parse_value

logging.getLogger("math_verify").setLevel(logging.CRITICAL)
logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)

# LaTeX only: the answer is the whole `$…$`; plain-expression extraction would pick a number out of text
# ("4:30 p.m." -> 4). math-verify's own unit stripping is off: it eats variables ("a + b + c" -> "a +");
# `normalize_answer` has already removed real units.
_EXTRACTION = (
    LatexExtractionConfig(
        boxed_match_priority=0,
        normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        ),
    ),
)
MAX_DIGITS = 3000  # beyond ~10^3000 a constant is not resolved numerically; math-verify's answer stands
_TOLERANCE_EXP = 40


@lru_cache(maxsize=4096)
def _parse_cached(text: str) -> tuple:
    return tuple(parse(f"${text}$", extraction_config=_EXTRACTION, parsing_timeout=None))


def parse_answer(text: str) -> list:
    """math-verify's parse of one normalised answer (wrapped in `$…$`), without its signal timeout.
    Cached: a gold is usually compared with many sampled answers."""
    return list(_parse_cached(text))


def _constant(x):
    """`x` when it is a numeric constant without decimals (∞ allowed), else None."""
    if not isinstance(x, sympy.Basic) or isinstance(x, (sympy.Set, sympy.logic.boolalg.Boolean)):
        return None
    if x in (sympy.oo, -sympy.oo):
        return x
    if getattr(x, "free_symbols", True) or x.has(Float) or not getattr(x, "is_number", False):
        return None
    return x


def _signature(expr) -> tuple | None:
    """(kind, data) for structures made only of numeric constants; None otherwise."""
    if isinstance(expr, MatrixBase):
        items = [_constant(x) for x in expr]
        return None if any(x is None for x in items) else ("matrix", (expr.shape, items))
    if isinstance(expr, Tuple):
        items = [_constant(x) for x in expr]
        return None if any(x is None for x in items) else ("tuple", items)
    if isinstance(expr, SympyFiniteSet):
        items = [_constant(x) for x in expr.args]
        return None if any(x is None for x in items) else ("set", items)
    if isinstance(expr, Interval):
        ends = [_constant(expr.start), _constant(expr.end)]
        return None if any(x is None for x in ends) else ("interval", (expr.left_open, expr.right_open, ends))
    c = _constant(expr)
    return None if c is None else ("num", [c])


def constants_equal(a, b) -> bool | None:
    """Exact-enough equality of two numeric constants; None when they are too large to resolve."""
    if a == b:
        return True
    if a.is_infinite or b.is_infinite:
        return False
    if a.is_Rational and b.is_Rational:
        return False  # both canonical rationals and not identical
    rough = max(abs(sympy.N(a, 15)), abs(sympy.N(b, 15)))
    if not rough.is_finite:
        return None
    magnitude = 0 if rough == 0 else int(sympy.floor(sympy.log(rough, 10))) if rough > 1 else 0
    if magnitude > MAX_DIGITS:
        return None
    digits = 50 + magnitude
    diff = abs(sympy.N(a, digits) - sympy.N(b, digits))
    scale = min(sympy.Integer(1), rough) if rough != 0 else sympy.Integer(1)
    return bool(diff <= sympy.Float(10) ** -_TOLERANCE_EXP * scale)


def _signatures_equal(sa: tuple, sb: tuple) -> bool | None:
    kind, a = sa
    _, b = sb
    if kind == "interval":
        if a[0] != b[0] or a[1] != b[1]:
            return False
        a, b = a[2], b[2]
    elif kind == "matrix":
        if a[0] != b[0]:
            return False
        a, b = a[1], b[1]
    if len(a) != len(b):
        return False
    if kind == "set":
        unused = list(b)
        for x in a:
            for k, y in enumerate(unused):
                r = constants_equal(x, y)
                if r is None:
                    return None
                if r:
                    del unused[k]
                    break
            else:
                return False
        return True
    for x, y in zip(a, b, strict=True):
        r = constants_equal(x, y)
        if r is not True:
            return r
    return True


def _decimal_literal(answer: NormalizedAnswer) -> Num | None:
    v = parse_value(answer)
    return v if isinstance(v, Num) and v.ulp is not None and v.im == 0 else None


def symbolic_equal(pred: NormalizedAnswer, gold: NormalizedAnswer) -> tuple[bool, str]:
    """(equal, method) for two normalised answers the exact path could not decide."""
    gold_parsed = parse_answer(gold.text)
    pred_parsed = parse_answer(pred.text)
    if not gold_parsed or not pred_parsed:
        return False, "unparsed"
    g, p = gold_parsed[0], pred_parsed[0]
    # a decimal approximation of an exact value
    dec_p, dec_g = _decimal_literal(pred), _decimal_literal(gold)
    if (dec_p is None) != (dec_g is None):
        dec, other = (dec_p, g) if dec_p is not None else (dec_g, p)
        exact = _constant(other)
        if exact is not None and not exact.is_infinite:
            exact = exact.doit()
        if exact is not None and not exact.is_infinite and exact.is_real:
            approximate = not exact.is_Rational
            value = sympy.Rational(sympy.N(exact, 60)) if approximate else exact
            as_fraction = Fraction(int(value.p), int(value.q))
            return decimal_rule(dec.re, dec.ulp, dec.sig, as_fraction, approximate=approximate), "decimal"
    # numeric constants (and tuples, sets, intervals, matrices of them): decided at high precision, no verify
    sg, sp = _signature(g), _signature(p)
    if sg is not None and sp is not None and sg[0] == sp[0]:
        exact_equal = _signatures_equal(sg, sp)
        if exact_equal is not None:
            return exact_equal, "exact-numeric"
    return bool(
        verify(gold_parsed, pred_parsed, timeout_seconds=None, allow_set_relation_comp=True)
    ), "math_verify"


def symbolic_can_parse(text: str) -> bool:
    """Does the whole answer parse as math (a sympy object, not math-verify's string fallback)?"""
    parsed = parse_answer(text)
    return bool(parsed) and isinstance(parsed[0], (sympy.Basic, MatrixBase))
