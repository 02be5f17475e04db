"""The reference (ToRL) equivalence check, reproduced for `RewardConfig(mode="reference")` and benchmarks.

As published: exact string match, then Minerva-style normalisation (Lewkowycz et al. 2022, appendix D) and
string match, then math-verify called the way the reference calls it: `verify(parse(pred), parse(gold))`
(prediction first, no `$…$` around the strings). Its known defects are kept on purpose; only its
signal-based timeouts are replaced by the worker's hard deadline. Runs in the worker processes.
"""

from __future__ import annotations

import re

_SUBSTITUTIONS = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"',
    "\\dots",
)  # fmt: skip


def minerva_normalize(answer: str) -> str:
    """Minerva's `normalize_final_answer`: keep the right-hand side of `=`, drop units and LaTeX noise."""
    s = answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        s = s.replace(before, after)
    for expr in _REMOVED:
        s = s.replace(expr, "")
    s = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", s)
    s = re.sub(r"(\\text\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", s)
    s = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", s)
    s = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", s)
    s = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", s)
    s = s.replace("$", "")
    if s.replace(",", "").isdigit():
        s = s.replace(",", "")
    return s


def reference_equal(pred: str, gold: str) -> bool:
    """The reference's check of an extracted answer against a gold (defects included)."""
    if pred == gold:
        return True
    if minerva_normalize(pred) == minerva_normalize(gold):
        return True
    from math_verify import parse, verify

    return bool(
        verify(parse(pred, parsing_timeout=None), parse(gold, parsing_timeout=None), timeout_seconds=None)
    )
