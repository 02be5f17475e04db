"""Gold-answer helpers: every `\\boxed{}` of a solution, and the answer-type buckets of the build report."""

from __future__ import annotations

import re

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_INTEGER = re.compile(r"^[-+]?\d+$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+)$")
_FRACTION = re.compile(r"^[-+]?(?:\\[dt]?frac\{-?\d+\}\{\d+\}|\d+/\d+)$")
_INTERVAL = re.compile(r"^[(\[].*,.*[)\]]$")


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` in `text`, in order, nested braces included."""
    out = []
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1])
    return out


def other_boxed(solution: str, final: str) -> tuple[str, ...]:
    """The different answers a solution boxes besides its final one (whitespace ignored), in order."""
    squash = lambda t: re.sub(r"\s+", "", t)  # noqa: E731
    last = squash(final)
    return tuple(b for b in dict.fromkeys(squash(b) for b in boxed_contents(solution)) if b != last)


def answer_type(answer: str) -> str:
    """A coarse bucket for the report: integer, decimal, fraction, interval/tuple, list, choice letter, text,
    expression."""
    a = answer.strip().replace("\\!", "").replace("{,}", "").replace("\\,", "")
    if _INTEGER.match(a.replace(",", "")) and (len(a) < 4 or "," not in a or re.fullmatch(r"-?\d{1,3}(,\d{3})+", a)):
        return "integer"
    if _DECIMAL.match(a):
        return "decimal"
    if _FRACTION.match(a):
        return "fraction"
    if _INTERVAL.match(a):
        return "interval/tuple"
    if "," in a:
        return "list"
    if re.fullmatch(r"\(?[A-E]\)?", a):
        return "choice letter"
    if re.search(r"\\text\{[^}]*[A-Za-z]{2,}", a) or re.fullmatch(r"[A-Za-z ]{2,}", a):
        return "text"
    return "expression"
