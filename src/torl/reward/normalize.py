"""String normalisation of competition answers: the cosmetic differences that never change an answer.

`normalize_answer` turns an answer (a gold or an extracted prediction) into canonical LaTeX:

- math delimiters (`$…$`, `\\(…\\)`, `\\[…\\]`) and a whole-answer `\\boxed{…}` removed;
- `\\dfrac`/`\\tfrac`/`\\cfrac` → `\\frac`, `\\frac43` → `\\frac{4}{3}`, `\\sqrt2` → `\\sqrt{2}`;
- `\\left`/`\\right`, spacing commands (`\\,` `\\!` `\\quad` `~`), `\\displaystyle` removed;
- `\\text{}`/`\\mbox{}`/`\\mathrm{}`/`\\mathbf{}`/`\\textbf{}` unwrapped; a trailing unit (`\\text{ cm}^2`,
  `square units`, `dollars`, `degrees`, …) after a number removed;
- degrees (`^\\circ`, `°`), dollars (`\\$`), a trailing period removed; `x \\in` removed;
- thousands separators (`10,\\!080`, `58,500`) removed when the whole answer is one number;
- a leading assignment (`x = 3`, `f(x) = 2x`, `k=3`) removed from each comma-separated part (the variable of
  a one-part `y = …` is kept in `NormalizedAnswer.assigned`, so that the answer still compares as an equation);
- a stray trailing backslash (`185\\`) removed.

Percent signs (`\\%`, `%`, the words percent / percentage / pct) are removed too, and reported
(`NormalizedAnswer.percent`) so that `50\\%` can match both `50` and `0.5`. The result is still LaTeX that
math-verify can parse. Text answers keep their case here; `values.parse_value` compares them case-insensitively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Answers longer than this (after stripping) are not normalised or parsed: they are compared as plain
# strings only. Real answers are far shorter (the longest benchmark gold is ~400 characters).
MAX_ANSWER_CHARS = 4000


@dataclass(frozen=True)
class NormalizedAnswer:
    """`text`: canonical LaTeX; `key`: `text` without spaces (for the string-equality shortcut);
    `percent`: the answer carried a percent sign; `was_text`: the whole answer was wrapped in `\\text{}`;
    `assigned`: the variable of a removed leading assignment of a one-part answer (`y = 2x + 3` → "y"), so
    that it can still be compared as an equation (`2x - y + 3 = 0`)."""

    text: str
    key: str
    percent: bool = False
    was_text: bool = False
    assigned: str = ""

    def to_payload(self) -> list:
        """What a grading worker needs (JSON-serialisable)."""
        return [self.text, self.percent, self.assigned]

    @classmethod
    def from_payload(cls, payload: list) -> NormalizedAnswer:
        text, percent, assigned = (list(payload) + [False, ""])[:3]
        return cls(text, text.replace(" ", ""), bool(percent), assigned=assigned)


_TEXT_COMMANDS = re.compile(
    r"\\(?:mbox|textbf|textit|textrm|textnormal|textsf|texttt|mathrm|mathbf|mathit|mathsf|mathtt|boldsymbol|bm|"
    r"hbox)\s*(?=\{)"
)
_SPACING = re.compile(r"(?<!\\)\\(?:quad|qquad|enspace|thinspace|medspace|thickspace|,|;|:|>| )|~")
_LEFT_RIGHT = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)\b\s*"
)
_NULL_DELIM = re.compile(r"\\(?:left|right)\s*\.")
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\\degree\b|\^\s*\{\s*o\s*\}")
_PERCENT = re.compile(r"\\%|%|\\text\{\s*(?:percent|percentage|pct)\s*\}|\s*\b(?:percent|percentage|pct)\b")
_FRAC_FIX = re.compile(r"\\frac\s*(?:(\d)|\{([^{}]*)\}|(\\[a-zA-Z]+))\s*(?:(\d)|\{([^{}]*)\}|(\\[a-zA-Z]+))")
_SQRT_FIX = re.compile(r"\\sqrt\s*(\d)")
_THOUSANDS_BANG = re.compile(r"(\d),\s*\\!\s*(?=\d{3}(?!\d))")
_THOUSANDS = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_THOUSANDS_SPACE = re.compile(r"^[-+]?\d{1,3}(?:\s\d{3})+(?:\.\d+)?$")
_SET_MEMBER = re.compile(r"^[a-zA-Z]\s*\\in\s*")
_ASSIGNMENT = re.compile(r"^\s*(?:[a-zA-Z](?:_\{[^{}=]*\}|_\w+)?|[a-zA-Z]\s*\(\s*[a-zA-Z]\s*\))\s*=(?!=)\s*")
_RELATION = re.compile(r"=|<|>|\\le|\\ge|\\neq|\\ne\b|\\approx")
_UNIT_WORDS = (
    "square units|square unit|sq units|sq\\.? units|cubic units|units|unit|square feet|square inches|"
    "square meters|square centimeters|square miles|square yards|sq ft|"
    "dollars|dollar|cents|cent|degrees|degree|radians|"
    "inches|inch|feet|foot|ft|yards|yard|miles|mile|meters|meter|metres|metre|centimeters|centimeter|"
    "kilometers|kilometer|millimeters|mm|cm|km|"
    "hours|hour|hrs|hr|minutes|minute|mins|min|seconds|second|sec|days|day|weeks|week|years|year|months|month|"
    "mph|km/h|kmh|m/s|kg|grams|gram|pounds|pound|lbs|lb|ounces|ounce|oz|liters|liter|litres|litre|gallons|gallon|"
    "people|persons|students|ways|times|points|marbles|coins|apples|boxes|pages|eggs|cookies"
)
_UNIT_PHRASE = re.compile(r"(?:" + _UNIT_WORDS + r")")
_TRAILING_UNIT = re.compile(r"(?<=[\d}\)])\s*(?:" + _UNIT_WORDS + r")\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")
_TRAILING_M = re.compile(r"(?<=\d)\s+m(?:\^\s*\{?\s*[23]\s*\}?)?\s*$")  # "5 m", "12 m^2" (not "5m" = 5*m)
_WS = re.compile(r"\s+")
_UNICODE = str.maketrans(
    {"−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ", "∞": "\\infty ",
     "≤": "\\leq ", "≥": "\\geq ", "\u00a0": " "}
)  # fmt: skip


def matching_brace(s: str, open_at: int) -> int:
    """Index of the `}` closing the `{` at `open_at` (escaped braces ignored), or -1."""
    depth = 0
    i = open_at
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _strip_wrapper(s: str, command: str) -> str:
    """`\\command{X}` → `X` when the wrapper spans the whole string."""
    while s.startswith(command):
        rest = s[len(command) :].lstrip()
        if not rest.startswith("{"):
            break
        offset = len(s) - len(rest)
        end = matching_brace(s, offset)
        if end != len(s) - 1:
            break
        s = s[offset + 1 : end].strip()
    return s


def _unwrap_text(s: str) -> str:
    """Replace every `\\text{X}` by `X` (balanced braces; at most a few hundred occurrences)."""
    out = []
    i = 0
    for _ in range(500):
        j = s.find("\\text", i)
        if j < 0:
            break
        k = j + 5
        while k < len(s) and s[k] == " ":
            k += 1
        if k >= len(s) or s[k] != "{":
            out.append(s[i:k])
            i = k
            continue
        end = matching_brace(s, k)
        if end < 0:
            break
        out.append(s[i:j])
        out.append(s[k + 1 : end])
        i = end + 1
    out.append(s[i:])
    return "".join(out)


def _strip_trailing_text_unit(s: str) -> str:
    """Drop a trailing `\\text{…}` made of words (a unit) that follows some math: `5.4 \\text{ cents}` → `5.4`."""
    m = re.search(r"\\text\s*\{([^{}]*)\}\s*(?:\^\s*\{?\s*[23]\s*\}?)?\s*$", s)
    if not m:
        return s
    head = s[: m.start()].strip()
    words = m.group(1).strip()
    if not head or not re.fullmatch(r"[A-Za-z][A-Za-z .\-/]*", words):
        return s
    after_number = re.search(r"[\d}\)]$", head)
    after_symbol = _UNIT_PHRASE.fullmatch(words) and re.search(r"[A-Za-z]$", head)  # 164 \pi square feet
    return head if after_number or after_symbol else s


def split_top_level(s: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside (), [], {} (escaped `\\{`, `\\}` count as brackets)."""
    parts, depth, start, i, n = [], 0, 0, 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\" and i + 1 < n:
            if s[i + 1] in "{}":
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        i += 1
    parts.append(s[start:])
    return parts


def _strip_assignments(s: str) -> tuple[str, str]:
    """(`x = 3` → `3`; `a=2, a=-6` → `2, -6`; an equation such as `5x + 4 = 0` or `y = 2x = 4` is kept,
    the assigned variable when the answer is one removed plain-variable assignment, else "")."""
    if "=" not in s:
        return s, ""
    parts = split_top_level(s)
    out = []
    assigned = ""
    for part in parts:
        m = _ASSIGNMENT.match(part)
        if m and not _RELATION.search(part[m.end() :]):
            variable = part[: m.end()].strip().rstrip("=").strip()
            assigned = variable if len(parts) == 1 and re.fullmatch(r"[a-zA-Z]", variable) else ""
            part = part[m.end() :]
        out.append(part.strip())
    return (", ".join(out), "") if len(out) > 1 else (out[0], assigned)


def _fix_frac(m: re.Match) -> str:
    """`\\frac43` → `\\frac{4}{3}`, `\\frac\\pi 2` → `\\frac{\\pi}{2}`."""
    num = m.group(1) or m.group(2) or m.group(3) or ""
    den = m.group(4) or m.group(5) or m.group(6) or ""
    return f"\\frac{{{num}}}{{{den}}}"


def normalize_answer(answer: str) -> NormalizedAnswer:
    """Canonical form of one answer; see the module docstring for the rules. Never raises."""
    s = str(answer).strip()
    if len(s) > MAX_ANSWER_CHARS:
        return NormalizedAnswer(s, s)
    s = s.replace("\n", " ").replace("\r", " ").replace("\t", " ")
    s = s.translate(_UNICODE).replace("{,}", ",")
    # delimiters and a whole-answer box
    s = s.replace("\\$", "").replace("$", "")
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right):
            s = s[2:-2]
    s = s.strip()
    s = _strip_wrapper(s, "\\boxed")
    s = _strip_wrapper(s, "\\fbox")
    # thousands separators written with a negative space: 10,\!080
    s = _THOUSANDS_BANG.sub(r"\1", s)
    s = s.replace("\\!", "")
    s = _NULL_DELIM.sub("", s)
    s = _LEFT_RIGHT.sub("", s)
    s = _SPACING.sub(" ", s)
    s = s.replace("\\displaystyle", "").replace("\\textstyle", "")
    s = re.sub(r"\\[dtc]frac", r"\\frac", s)
    s = re.sub(r"\\[dt]binom", r"\\binom", s)
    s = s.replace("\\geqslant", "\\geq").replace("\\leqslant", "\\leq")
    s = re.sub(r"\\ge(?![a-zA-Z])", r"\\geq", s)
    s = re.sub(r"\\le(?![a-zA-Z])", r"\\leq", s)
    s = s.replace("\\varnothing", "\\emptyset").replace("\\infinity", "\\infty")
    s = _TEXT_COMMANDS.sub(r"\\text", s)
    s = re.sub(r"\\text\s*\{\s*(?:and|or)\s*\}", ",", s)
    s = re.sub(r",(?:\s*,)+", ",", s)  # "2, 3, \\text{ and } 4"
    s = re.sub(r"\\phantom\s*(?:\{[^{}]*\}|\S)", "", s)
    s = re.sub(r"^(?:\\approx|\\sim|≈)\s*", "", s.strip())
    s = s.strip().rstrip(".").rstrip()
    was_text = _strip_wrapper(s, "\\text") != s
    percent = bool(_PERCENT.search(s))  # before units: `28 \\text{ percent}` is not a unit
    if percent:
        s = _PERCENT.sub("", s).strip()
    s = _strip_trailing_text_unit(s)
    s = _unwrap_text(s)
    s = _DEGREES.sub("", s)
    s = _WS.sub(" ", s).strip()
    for _ in range(2):
        s = _TRAILING_UNIT.sub("", s).strip()
    s = _TRAILING_M.sub("", s).strip()
    s = s.rstrip(".;, ").strip()
    s = re.sub(r"\\+$", "", s).strip()  # stray trailing backslashes: `185\\`
    s = _FRAC_FIX.sub(_fix_frac, s)
    s = _SQRT_FIX.sub(r"\\sqrt{\1}", s)
    s = _SET_MEMBER.sub("", s)
    s, assigned = _strip_assignments(s)
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    elif _THOUSANDS_SPACE.match(s):
        s = s.replace(" ", "")
    if s.startswith(".") and s[1:2].isdigit():
        s = "0" + s
    s = re.sub(r"(?<=[-+(\[, ])\.(?=\d)", "0.", s)
    s = _WS.sub(" ", s).strip()
    return NormalizedAnswer(
        text=s, key=s.replace(" ", ""), percent=percent, was_text=was_text, assigned=assigned
    )
