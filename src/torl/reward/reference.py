"""The reference (ToRL) answer check, reproduced step by step for `RewardConfig(mode="reference")` (TORL-SPEC §4).

1. `reference_extract`: the last match of a `\\boxed{…}` regular expression that allows four levels of braces
   (the box's own braces and three nested levels), over the whole response, tool-output blocks included.
2. `reference_equal`: equal after `.strip().lower()` → correct;
3. otherwise both strings go through `reference_normalize`: a whole-answer `\\(…\\)` / `\\[…\\]` wrapper removed,
   Minerva's normaliser (Lewkowycz et al. 2022, appendix D) with the reference's own substitution and removal
   lists (which differ from the appendix's) and *without* its split at "=", then such a wrapper removed again;
4. then math-verify decides: `verify(parse(pred), parse(gold))`, prediction first, no `$…$` added;
5. only if 3–4 raise: `hendrycks_is_equiv` (the MATH repository's `is_equiv`, which itself falls back to plain
   equality) on the values at hand; if that raises too, plain equality;
6. any other exception: not correct.

Defects are kept on purpose. Only math-verify's signal-based timeouts are replaced by the worker's hard
deadline (a timed-out comparison is "not correct" in both). Steps 3–5 run in the grading worker processes.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# \boxed{ + content with at most three nested brace levels + }: four levels in all, as in the reference
_LEVEL = r"[^{}]*"
for _ in range(3):
    _LEVEL = r"(?:[^{}]|\{" + _LEVEL + r"\})*"
_REFERENCE_BOX = re.compile(r"\\boxed\{(" + _LEVEL + r")\}")


def reference_extract(response: str) -> str | None:
    """The reference's answer: the last regex-matched `\\boxed{…}` of the whole response, or None."""
    matches = _REFERENCE_BOX.findall(response)
    return matches[-1] if matches else None


# Minerva's lists (Lewkowycz et al. 2022, appendix D), verbatim
APPENDIX_SUBSTITUTIONS = (
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
APPENDIX_REMOVED = (
    "square", "ways", "integers", "dollars", "mph", "inches", "ft", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals", "edges",
    "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}", "\\text{}^2",
    "\\text{}^3", "\\text{\n}", "\\text{}", "\\mathrm{th}", "^\\circ", "^{\\circ}", "\\;", ",\\!", "{,}", '"',
    "\\dots",
)  # fmt: skip

# The reference's own lists (TORL-SPEC §4 step 3), in its order: no ("a ", ""), 17 more substitutions, no "ft"
REFERENCE_SUBSTITUTIONS = (
    ("an ", ""),
    (".$", "$"),
    ("\\$", ""),
    ("\\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
    ("\\left", ""),
    ("\\right", ""),
    ("\u2236", ":"),
    ("\uff0c", ","),
    ("$", ""),
    ("\\approx", "="),
    ("\\simeq", "="),
    ("\\sim", "="),
    ("^\\prime", "'"),
    ("^{\\prime}", "'"),
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("^\\circ", ""),
    ("%", ""),
    ("\u221a", "\\sqrt"),
    ("\u221e", "\\infty"),
    ("\u222a", "\\cup"),
)
REFERENCE_REMOVED = tuple(expr for expr in APPENDIX_REMOVED if expr != "ft")


def _strip_math_wrapper(s: str) -> str:
    t = s.strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if t.startswith(left) and t.endswith(right) and len(t) >= 4:
            return t[2:-2]
    return s


def _minerva_steps(s: str, substitutions: tuple, removed: tuple) -> str:
    """Minerva's steps after its "=" split, with the given substitution and removal lists."""
    for before, after in substitutions:
        s = s.replace(before, after)
    for expr in removed:
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


def minerva_normalize(answer: str, *, split_equals: bool = True) -> str:
    """Minerva's `normalize_final_answer` (appendix D lists); `split_equals=False` skips its `split("=")[-1]`."""
    s = answer.split("=")[-1] if split_equals else answer
    return _minerva_steps(s, APPENDIX_SUBSTITUTIONS, APPENDIX_REMOVED)


def reference_normalize(
    answer: str,
    substitutions: tuple = REFERENCE_SUBSTITUTIONS,
    removed: tuple = REFERENCE_REMOVED,
    *,
    strip_again: bool = True,
) -> str:
    """Step 3 (TORL-SPEC §4): a whole-answer `\\(…\\)`/`\\[…\\]` removed, Minerva's steps with the reference's
    lists and without the "=" split, then such a wrapper removed once more. Other lists and `strip_again=False`
    give the variants the tests compare against (the appendix's lists, one strip: torl's reference mode before
    issue 22)."""
    s = _minerva_steps(_strip_math_wrapper(answer), substitutions, removed)
    return _strip_math_wrapper(s) if strip_again else s


# ------------------------------------------------------------------ Hendrycks MATH `is_equiv` (step 5)


def _fix_fracs(string: str) -> str:
    substrs = string.split("\\frac")
    new_str = substrs[0]
    for substr in substrs[1:]:
        new_str += "\\frac"
        if substr[0] == "{":  # IndexError on a trailing "\frac", as in the original
            new_str += substr
            continue
        if len(substr) < 2:
            return string
        a, b, rest = substr[0], substr[1], substr[2:]
        new_str += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return new_str


def _fix_a_slash_b(string: str) -> str:
    parts = string.split("/")
    if len(parts) != 2:
        return string
    try:
        a, b = int(parts[0]), int(parts[1])
        if string != f"{a}/{b}":
            return string
    except Exception:  # noqa: BLE001 - the original's bare except
        return string
    return "\\frac{" + str(a) + "}{" + str(b) + "}"


def _remove_right_units(string: str) -> str:
    if "\\text{ " in string:
        splits = string.split("\\text{ ")
        if len(splits) != 2:
            raise AssertionError("more than one '\\text{ '")  # the original asserts
        return splits[0]
    return string


def _fix_sqrt(string: str) -> str:
    if "\\sqrt" not in string:
        return string
    splits = string.split("\\sqrt")
    new_string = splits[0]
    for split in splits[1:]:
        if split[0] != "{":  # IndexError on a trailing "\sqrt", as in the original
            new_string += "\\sqrt{" + split[0] + "}" + split[1:]
        else:
            new_string += "\\sqrt" + split
    return new_string


def hendrycks_strip_string(string: str) -> str:
    """`_strip_string` of the MATH repository (hendrycks/math, modeling/math_equivalence.py), same steps."""
    string = string.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    string = string.replace("tfrac", "frac").replace("dfrac", "frac")
    string = string.replace("\\left", "").replace("\\right", "")
    string = string.replace("^{\\circ}", "").replace("^\\circ", "")
    string = string.replace("\\$", "")
    string = _remove_right_units(string)
    string = string.replace("\\%", "").replace("%", "")
    string = string.replace(" .", " 0.").replace("{.", "{0.")
    if len(string) == 0:
        return string
    if string[0] == ".":
        string = "0" + string
    if len(string.split("=")) == 2 and len(string.split("=")[0]) <= 2:
        string = string.split("=")[1]
    string = _fix_sqrt(string)
    string = string.replace(" ", "")
    string = _fix_fracs(string)
    if string == "0.5":
        string = "\\frac{1}{2}"
    return _fix_a_slash_b(string)


def hendrycks_is_equiv(str1: str | None, str2: str | None) -> bool:
    """`is_equiv` of the MATH repository: stripped strings equal; plain equality if stripping raises."""
    if str1 is None and str2 is None:
        return True
    if str1 is None or str2 is None:
        return False
    try:
        return hendrycks_strip_string(str1) == hendrycks_strip_string(str2)
    except Exception:  # noqa: BLE001 - the original's bare except
        return str1 == str2


# ------------------------------------------------------------------------------------- steps 2 to 6


def reference_equal_casefold(pred: str, gold: str) -> bool:
    """Step 2: equal after `.strip().lower()`."""
    return pred.strip().lower() == gold.strip().lower()


def math_verify_check(pred: str, gold: str) -> bool:
    """Step 4 as the reference calls it: prediction first, the strings as they are (no `$…$` added).
    math-verify's signal timeouts are off: the grading worker enforces a hard deadline instead."""
    from math_verify import parse, verify

    return bool(
        verify(parse(pred, parsing_timeout=None), parse(gold, parsing_timeout=None), timeout_seconds=None)
    )


def reference_equal(
    pred: str,
    gold: str,
    *,
    verifier: Callable[[str, str], bool] = math_verify_check,
    normalize: Callable[[str], str] = reference_normalize,
) -> tuple[bool, str]:
    """(correct, deciding step) of the reference's check of an extracted answer against a gold (steps 2–6).
    `verifier` is step 4 (math-verify; replaceable to test the fallbacks), `normalize` step 3 (replaceable to
    compare normaliser lists)."""
    try:
        if reference_equal_casefold(pred, gold):
            return True, "ref:lower"
        a, b = pred, gold
        try:
            a, b = normalize(pred), normalize(gold)
            return bool(verifier(a, b)), "ref:math_verify"
        except Exception:  # noqa: BLE001 - the reference falls back on any exception
            try:
                return hendrycks_is_equiv(a, b), "ref:strip_string"
            except Exception:  # noqa: BLE001
                return a == b, "ref:equality"
    except Exception:  # noqa: BLE001 - step 6: anything else is wrong
        return False, "ref:error"
