"""Symbolic comparison with math-verify, plus the exactness guards math-verify lacks.

Runs inside the worker processes (`torl.reward._worker`); importing it loads sympy and math-verify.
math-verify is called the right way: gold first, the answer wrapped in `$…$`, its signal-based timeouts
disabled (`parsing_timeout=None`, `timeout_seconds=None`; the worker's caller enforces a hard deadline).

Guards on top of `verify`:
- numeric constants (no variables, no decimals) are compared at a precision that resolves them exactly
  (|a − b| ≤ 1e-40 · min(1, |a|) with 50 + log10|a| digits), which removes the `1/2^99 = 1/2^98` false
  positive that comes from math-verify's absolute chop; the same for the elements of tuples, sets,
  intervals and matrices made of such constants;
- a decimal literal against an exact value without a finite decimal expansion (1.4142 vs √2) follows
  `values.decimal_rule` (relative tolerance `rel_tol`, default 1e-4);
- an undefined or unsigned-infinite value (1/0, `1:00` read as 1/00) equals nothing: sympy's `zoo == zoo`
  and math-verify would otherwise call `\\frac10` and `\\frac20` equal;
- equations compare as equations: `2x - y + 3 = 0` and `y = 2x + 3` (also when the `y =` of one side was
  removed by `normalize_answer`) are equal when (lhs − rhs) of one is a non-zero constant times that of the
  other;
- a comparison of constants that sympy cannot decide (a `TypeError` from an unevaluated `Abs`, …) falls back
  to `verify` instead of failing.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache

import sympy
from latex2sympy2_extended.latex2sympy2 import NormalizationConfig
from math_verify import LatexExtractionConfig, parse, verify
from sympy import FiniteSet as SympyFiniteSet
from sympy import Float, Interval, MatrixBase, Tuple

from torl.reward.normalize import NormalizedAnswer, split_top_level
from torl.reward.values import DEFAULT_REL_TOL, Num, decimal_rule, parse_value

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


def _undefined(x) -> bool:
    """Is `x` (or a part of it) undefined or an unsigned infinity (1/0, 0/0)?"""
    return isinstance(x, sympy.Basic) and x.has(sympy.zoo, sympy.nan)


def constants_equal(a, b) -> bool | None:
    """Exact-enough equality of two numeric constants; None when undecidable (too large, or sympy cannot
    order an unevaluated expression)."""
    try:
        return _constants_equal(a, b)
    except (TypeError, ValueError, ArithmeticError):
        return None


def _constants_equal(a, b) -> bool | None:
    if _undefined(a) or _undefined(b):
        return False
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


def _exact_value(x) -> tuple[bool, Fraction] | None:
    """(is an approximation, value as a Fraction) of a real constant; None when it is not one or sympy
    cannot evaluate it (an unevaluated `Abs` raises TypeError)."""
    exact = _constant(x)
    if exact is None or exact.is_infinite:
        return None
    try:
        exact = exact.doit()
        if exact.is_infinite or not exact.is_real:
            return None
        approximate = not exact.is_Rational
        value = sympy.Rational(sympy.N(exact, 60)) if approximate else exact
        return approximate, Fraction(int(value.p), int(value.q))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return None


def _decimal_literal(answer: NormalizedAnswer) -> Num | None:
    v = parse_value(answer)
    return v if isinstance(v, Num) and v.ulp is not None and v.im == 0 else None


_OTHER_RELATION = re.compile(r"<|>|\\le|\\ge|\\neq|\\ne\b|\\approx|\\in\b")


def _equation_sides(answer: NormalizedAnswer) -> tuple[str, str] | None:
    """(lhs, rhs) of an answer that is one equation (`2x - y + 3 = 0`) or a removed assignment (`y = …`)."""
    if answer.assigned:
        return answer.assigned, answer.text
    text = answer.text
    if text.count("=") != 1 or _OTHER_RELATION.search(text) or len(split_top_level(text)) > 1:
        return None
    lhs, rhs = (side.strip() for side in text.split("="))
    return (lhs, rhs) if lhs and rhs else None


def _side(text: str):
    parsed = parse_answer(text)
    if not parsed or not isinstance(parsed[0], sympy.Expr) or _undefined(parsed[0]):
        return None
    return parsed[0]


def equations_equal(a: tuple[str, str], b: tuple[str, str]) -> bool | None:
    """Do two equations (lhs, rhs) describe the same relation, (lhs − rhs) of one a non-zero constant times
    that of the other? None when a side does not parse or neither has a variable."""
    sides = [_side(t) for t in (*a, *b)]
    if any(x is None for x in sides):
        return None
    da, db = sides[0] - sides[1], sides[2] - sides[3]
    if not da.free_symbols and not db.free_symbols:
        return None
    if da == 0 or db == 0:
        return da == db
    ratio = sympy.cancel(da / db)
    if ratio.free_symbols:
        ratio = sympy.simplify(ratio)
    return bool(not ratio.free_symbols and ratio.is_number and ratio.is_finite and ratio != 0)


def symbolic_equal(
    pred: NormalizedAnswer, gold: NormalizedAnswer, rel_tol: float = DEFAULT_REL_TOL
) -> tuple[bool, str]:
    """(equal, method) for two normalised answers the exact path could not decide."""
    if "=" in pred.text or "=" in gold.text or pred.assigned not in ("", gold.assigned):
        ep, eg = _equation_sides(pred), _equation_sides(gold)
        if ep is not None and eg is not None:
            same = equations_equal(ep, eg)
            if same is not None:
                return same, "equation"
    gold_parsed = parse_answer(gold.text)
    pred_parsed = parse_answer(pred.text)
    if not gold_parsed or not pred_parsed:
        return False, "unparsed"
    g, p = gold_parsed[0], pred_parsed[0]
    if _undefined(g) or _undefined(p):
        return False, "undefined"
    # a decimal approximation of an exact value
    dec_p, dec_g = _decimal_literal(pred), _decimal_literal(gold)
    if (dec_p is None) != (dec_g is None):
        dec, other = (dec_p, g) if dec_p is not None else (dec_g, p)
        exact = _exact_value(other)
        if exact is not None:
            approximate, as_fraction = exact
            return decimal_rule(dec.re, as_fraction, rel_tol, approximate=approximate), "decimal"
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
