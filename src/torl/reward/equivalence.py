"""The in-process fast path of the grader: normalised-string equality, then exact values.

`fast_compare` decides a pair without sympy when it can (most competition answers are integers,
fractions, decimals, tuples, intervals, letters); it returns `None` when only symbolic comparison
(math-verify, in a worker process) can decide.
"""

from __future__ import annotations

import re

from torl.reward.normalize import MAX_ANSWER_CHARS, NormalizedAnswer
from torl.reward.values import DEFAULT_REL_TOL, parse_value, values_equal

MAX_NESTING = 64  # deeper bracket nesting is not a real answer; it only ties up a worker until the timeout
_COMMAND = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = frozenset(
    {
        "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "log",
        "ln", "lg", "exp", "max", "min", "gcd", "lcm", "mod", "det", "lim", "sup", "inf", "deg", "dim", "ker",
        "arg", "floor", "ceil", "sqrt", "frac", "pmod", "bmod",
    }
)  # fmt: skip


def fast_compare(
    pred: NormalizedAnswer, gold: NormalizedAnswer, rel_tol: float = DEFAULT_REL_TOL
) -> tuple[bool | None, str]:
    """(equal, method), or (None, "") when the pair needs symbolic comparison."""
    if not pred.key or not gold.key:
        return False, "empty"
    if pred.key == gold.key:
        return True, "string"
    if len(pred.text) > MAX_ANSWER_CHARS or len(gold.text) > MAX_ANSWER_CHARS:
        return False, "too_long"
    if _nesting(pred.text) > MAX_NESTING or _nesting(gold.text) > MAX_NESTING:
        return False, "too_deep"
    vp, vg = parse_value(pred), parse_value(gold)
    if vp is not None and vg is not None:
        return values_equal(vp, vg, rel_tol), "exact"
    return None, ""


def has_prose(text: str) -> bool:
    """Does a (normalised) answer contain words of a sentence rather than math (`…, where b is an integer`)?"""
    words = [w.lower() for w in _WORD.findall(_COMMAND.sub(" ", text))]
    words = [w for w in words if w not in _MATH_WORDS]
    return any(len(w) >= 4 for w in words) or len(words) >= 2


def _nesting(text: str) -> int:
    depth = deepest = 0
    for c in text:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
    return deepest
