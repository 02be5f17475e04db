"""Exact values of answers, and their comparison: the fast, definitive part of the grader.

`parse_value` turns a normalised answer into an exact value when it is built only from numbers: integers,
decimals, fractions, `+ - * / ^` (integer exponents, bounded size), complex numbers with `i`, mixed
numbers (`1\\frac{4}{5}`), repeating decimals (`0.\\overline{3}`), base subscripts (`1011_2`), `\\pm`,
tuples, unordered lists and sets, intervals (open vs closed kept) and their unions, matrices,
multiple-choice letters and short text answers. Anything else (`\\sqrt`, `\\pi`, variables) gives None and
is left to math-verify.

Numbers are Python `Fraction`s, so two different rationals or integers are never equal.

The only tolerance is for genuine decimal approximations (`decimal_rule`) of values with no finite decimal
expansion (1/3, √2, π): the convention of the evaluation behind the ToRL paper's table (Qwen2.5-Math's
`math_equal`), a relative tolerance `rel_tol` (default 1e-4):  |d − v| ≤ rel_tol · max(|d|, |v|).
So 1.4142 = √2 and 0.3333 = 1/3, but 3.14 ≠ π, 0.333 ≠ 1/3 and 0.667 ≠ 2/3. A value with a finite decimal
expansion must be written exactly (0.13 ≠ 1/8, 1.13 ≠ 9/8, 27.04 ≠ 27; stricter than `math_equal`, which
would accept 0.12501 for 1/8: a finite decimal can always be written exactly). Two written decimals must be
equal exactly (0.33 ≠ 0.333). A percent (`50\\%`) matches 50 and 0.5. rel_tol = 0: no tolerance at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from torl.reward.normalize import NormalizedAnswer, split_top_level

MAX_EXACT_CHARS = 1000  # longer answers skip the exact path
MAX_POW_EXPONENT = 4096
MAX_POW_BITS = 200_000
MAX_SCI_EXPONENT = 1000
MAX_DEPTH = 60
DEFAULT_REL_TOL = 1e-4


class _Fail(Exception):
    """The answer is not an exact value this module understands."""


@dataclass(frozen=True)
class Num:
    """An exact (complex) rational. `ulp`/`sig`: written precision of a decimal literal, else None/0."""

    re: Fraction
    im: Fraction = Fraction(0)
    ulp: Fraction | None = None
    sig: int = 0
    percent: bool = False


@dataclass(frozen=True)
class Inf:
    sign: int


@dataclass(frozen=True)
class Based:
    """A numeral with a base subscript: `1011_2` is Based("1011", 2)."""

    digits: str
    base: int

    @property
    def value(self) -> int:
        return int(self.digits, self.base)


@dataclass(frozen=True)
class Seq:
    """kind: "tuple" (ordered), "list" (bare comma list, unordered), "set" (`\\{…\\}`, unordered),
    "pair" (`(a, b)`: an ordered pair or an open interval)."""

    kind: str
    items: tuple


@dataclass(frozen=True)
class Interval:
    left_closed: bool
    lo: object
    hi: object
    right_closed: bool


@dataclass(frozen=True)
class Union:
    parts: tuple


@dataclass(frozen=True)
class Matrix:
    rows: tuple


@dataclass(frozen=True)
class Choice:
    letter: str


@dataclass(frozen=True)
class Text:
    words: str


Value = Num | Inf | Based | Seq | Interval | Union | Matrix | Choice | Text

# ---------------------------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"(?P<num>\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
    r"|(?P<cmd>\\[a-zA-Z]+)"
    r"|(?P<op>[-+*/^(){}\[\]])"
    r"|(?P<letter>[a-zA-Z])"
    r"|(?P<space>\s+)"
)
_MULS = {"*", "\\cdot", "\\times"}
_DIVS = {"/", "\\div"}
_CHOICE = re.compile(r"^(?:\(([A-Ea-e])\)|([A-E])\)?)$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z'\- ]*$")
_LONG_WORD = re.compile(r"^[A-Za-z]{4,}(?: [A-Za-z]+)*$")
_TEXT = re.compile(r"^[A-Za-z][A-Za-z0-9'\-:. ]*$")  # a whole-\text{} answer: "October 30", "Navin"
MAX_TEXT_WORDS = 4
_BASED = re.compile(r"^([0-9A-Za-z]+)_\{?(\d{1,2})\}?$")
_MIXED = re.compile(r"^(-?)(\d+) ?\\frac\{(\d+)\}\{(\d+)\}$")
_MATRIX = re.compile(r"^\\begin\{([pbvBV]?matrix|smallmatrix)\}(.*)\\end\{\1\}$", re.S)
_INF = re.compile(r"^([-+]?)\s*(?:\\infty|∞|\\inf)$")

C = tuple[Fraction, Fraction]  # (real, imaginary)


def _tokens(s: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            raise _Fail
        pos = m.end()
        kind = m.lastgroup
        if kind != "space":
            out.append((kind, m.group()))
    return out


def _number(text: str) -> Fraction:
    mantissa, _, exp = text.lower().partition("e")
    if exp and abs(int(exp)) > MAX_SCI_EXPONENT:
        raise _Fail
    if len(mantissa) > 4000:
        raise _Fail
    value = Fraction(mantissa.rstrip(".") or "0") if mantissa != "." else None
    if value is None:
        raise _Fail
    return value * Fraction(10) ** int(exp) if exp else value


def _mul(a: C, b: C) -> C:
    return (a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0])


def _div(a: C, b: C) -> C:
    d = b[0] * b[0] + b[1] * b[1]
    if d == 0:
        raise _Fail
    return ((a[0] * b[0] + a[1] * b[1]) / d, (a[1] * b[0] - a[0] * b[1]) / d)


def _pow(a: C, e: C) -> C:
    if e[1] != 0 or e[0].denominator != 1:
        raise _Fail
    n = int(e[0])
    if abs(n) > MAX_POW_EXPONENT:
        raise _Fail
    bits = sum(x.numerator.bit_length() + x.denominator.bit_length() for x in a)
    if bits * abs(n) > MAX_POW_BITS:
        raise _Fail
    if a == (0, 0) and n < 0:
        raise _Fail
    if a[1] == 0:
        return (a[0] ** n, Fraction(0))
    result, base, k = (Fraction(1), Fraction(0)), a, abs(n)
    while k:
        if k & 1:
            result = _mul(result, base)
        base = _mul(base, base)
        k >>= 1
    return _div((Fraction(1), Fraction(0)), result) if n < 0 else result


class _Expr:
    """Recursive-descent evaluator over tokens; raises _Fail on anything it does not know."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.t = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.t[self.i][1] if self.i < len(self.t) else None

    def take(self, expected: str | None = None) -> str:
        if self.i >= len(self.t):
            raise _Fail
        tok = self.t[self.i][1]
        if expected is not None and tok != expected:
            raise _Fail
        self.i += 1
        return tok

    def parse(self) -> C:
        value = self.expr()
        if self.i != len(self.t):
            raise _Fail
        return value

    def expr(self) -> C:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            value = (
                (value[0] + rhs[0], value[1] + rhs[1])
                if op == "+"
                else (value[0] - rhs[0], value[1] - rhs[1])
            )
        self.depth -= 1
        return value

    def term(self) -> C:
        value = self.factor()
        while True:
            tok = self.peek()
            if tok in _MULS:
                self.take()
                value = _mul(value, self.factor())
            elif tok in _DIVS:
                self.take()
                value = _div(value, self.factor())
            elif tok in ("(", "{", "\\frac", "i"):  # implicit multiplication: 2i, 3(4), 2\frac{1}{3}
                value = _mul(value, self.factor())
            else:
                return value

    def factor(self) -> C:
        tok = self.peek()
        if tok in ("-", "+"):
            self.take()
            value = self.factor()
            return (-value[0], -value[1]) if tok == "-" else value
        return self.power()

    def power(self) -> C:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            if self.peek() in ("-", "+"):
                sign = self.take()
                e = self.power()
                e = (-e[0], -e[1]) if sign == "-" else e
            else:
                e = self.power()
            return _pow(base, e)
        return base

    def atom(self) -> C:
        tok = self.take()
        kind = self.t[self.i - 1][0]
        if kind == "num":
            value = _number(tok)
            if self.peek() == "\\overline":
                value = self._repeating(tok)
            return (value, Fraction(0))
        if tok in ("(", "{", "["):
            close = {"(": ")", "{": "}", "[": "]"}[tok]
            value = self.expr()
            self.take(close)
            return value
        if tok == "\\frac":
            num = self._braced()
            den = self._braced()
            return _div(num, den)
        if tok == "i":
            return (Fraction(0), Fraction(1))
        raise _Fail

    def _braced(self) -> C:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def _repeating(self, literal: str) -> Fraction:
        """`0.1\\overline{6}` = 1/6: literal is the part before the bar, the bar holds the repeating digits."""
        self.take("\\overline")
        self.take("{")
        digits = self.take()
        self.take("}")
        if "e" in literal.lower() or not digits.isdigit() or "." not in literal:
            raise _Fail
        whole, _, fixed = literal.partition(".")
        scale = 10 ** len(fixed)
        repeating = Fraction(int(digits), 10 ** len(digits) - 1)
        return Fraction(int(whole or "0")) + (Fraction(int(fixed or "0")) + repeating) / scale


def _literal_precision(tokens: list[tuple[str, str]]) -> tuple[Fraction | None, int]:
    """(ulp, significant digits) when the tokens are one decimal literal (`-0.15`, `4.5e33`, `4.5\\times10^{33}`)."""
    toks = [t for _, t in tokens]
    if toks and toks[0] in ("-", "+"):
        toks = toks[1:]
    if not toks or tokens[len(tokens) - len(toks)][0] != "num":
        return None, 0
    mantissa, _, exp = toks[0].lower().partition("e")
    scale = int(exp) if exp else 0
    rest = toks[1:]
    if rest:
        # mantissa \times 10^{k} or 10^k
        if exp or len(rest) < 3 or rest[0] not in ("\\times", "\\cdot") or rest[1] != "10" or rest[2] != "^":
            return None, 0
        tail = rest[3:]
        if tail and tail[0] == "{" and tail[-1] == "}":
            tail = tail[1:-1]
        k = "".join(tail)
        if not re.fullmatch(r"[-+]?\d{1,4}", k):
            return None, 0
        scale = int(k)
    if "." not in mantissa and not exp and not rest:
        return None, 0  # an integer is exact
    frac_digits = len(mantissa.partition(".")[2])
    sig = len(mantissa.replace(".", "").lstrip("0")) or 1
    return Fraction(10) ** (scale - frac_digits), sig


def _parse_number(s: str, percent: bool = False) -> Num | Inf | Based:
    s = s.strip()
    if not s:
        raise _Fail
    m = _INF.match(s)
    if m:
        return Inf(-1 if m.group(1) == "-" else 1)
    m = _BASED.match(s)
    if m:
        base = int(m.group(2))
        digits = m.group(1)
        if not 2 <= base <= 36:
            raise _Fail
        try:
            int(digits, base)
        except ValueError:
            raise _Fail from None
        return Based(digits.upper(), base)
    m = _MIXED.match(s)
    if m and int(m.group(3)) < int(m.group(4)):
        value = int(m.group(2)) + Fraction(int(m.group(3)), int(m.group(4)))
        return Num(-value if m.group(1) else value, percent=percent)
    tokens = _tokens(s)
    re_, im = _Expr(tokens).parse()
    ulp, sig = _literal_precision(tokens)
    return Num(re_, im, ulp, sig, percent)


def _outer_brackets(s: str) -> tuple[str, str, str] | None:
    """(open, inner, close) when one bracket pair spans the whole string: `(…)`, `[…)`, `\\{…\\}`, `\\langle…\\rangle`."""
    if s.startswith("\\{") and s.endswith("\\}"):
        inner = s[2:-2]
        return ("{", inner, "}") if _balanced(inner) else None
    if s.startswith("\\langle") and s.endswith("\\rangle"):
        inner = s[7:-7]
        return ("(", inner, ")") if _balanced(inner) else None
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
        return (s[0], inner, s[-1]) if _balanced(inner) else None
    return None


def _balanced(s: str) -> bool:
    depth, i = 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            if s[i + 1] in "{}":
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _parse(s: str, percent: bool, depth: int) -> Value:
    if depth > 8:
        raise _Fail
    s = s.strip()
    m = _MATRIX.match(s)
    if m:
        body = m.group(2).strip().rstrip("\\").strip()
        rows = tuple(
            tuple(_parse_number(cell) for cell in row.split("&"))
            for row in re.split(r"\\\\", body)
            if row.strip()
        )
        if not rows or len({len(r) for r in rows}) != 1:
            raise _Fail
        return Matrix(rows)
    unions = [p for p in re.split(r"\\cup", s)]
    if len(unions) > 1:
        parts = tuple(_as_interval(_parse(p, False, depth + 1)) for p in unions)
        return Union(parts)
    outer = _outer_brackets(s)
    if outer:
        opening, inner, closing = outer
        parts = split_top_level(inner)
        if len(parts) == 1 and opening != "{":
            return _parse_number(s, percent)  # a parenthesised expression
        items = tuple(_parse(p, False, depth + 1) for p in parts)
        if opening == "{":
            return Seq("set", items)
        if len(items) == 2:
            if opening == "(" and closing == ")" and not any(isinstance(x, Inf) for x in items):
                return Seq("pair", items)
            return Interval(opening == "[", items[0], items[1], closing == "]")
        if opening == "(" and closing == ")" or opening == "[" and closing == "]":
            return Seq("tuple", items)
        raise _Fail
    parts = split_top_level(s)
    if len(parts) > 1:
        return Seq("list", tuple(_parse_item(p, depth + 1) for p in parts))
    if "\\pm" in s:
        a, sep, b = s.partition("\\pm")
        if "\\pm" in b or "\\mp" in b:
            raise _Fail
        lo = _parse_number(f"{a}-({b})" if a.strip() else f"-({b})")
        hi = _parse_number(f"{a}+({b})" if a.strip() else f"{b}")
        return Seq("list", (hi, lo))
    return _parse_number(s, percent)


def _parse_item(s: str, depth: int) -> Value:
    """An element of a bare list: a value, or a word ("Softball, Kickball, Picnic")."""
    try:
        return _parse(s, False, depth)
    except _Fail:
        words = " ".join(s.lower().split())
        if _WORDS.match(words) and len(words.split()) <= MAX_TEXT_WORDS:
            return Text(words)
        raise


def _as_interval(v: Value) -> Interval:
    if isinstance(v, Interval):
        return v
    if isinstance(v, Seq) and v.kind == "pair":
        return Interval(False, v.items[0], v.items[1], False)
    if isinstance(v, Seq) and v.kind == "set":  # {1} in (-oo, 0) U {1}: keep as a degenerate part
        return Interval(True, v, v, True)
    raise _Fail


def parse_value(answer: NormalizedAnswer) -> Value | None:
    """The exact value of a normalised answer, or None when it needs symbolic comparison (math-verify)."""
    s = answer.text
    if not s or len(s) > MAX_EXACT_CHARS:
        return None
    m = _CHOICE.match(s)
    if m:
        return Choice((m.group(1) or m.group(2)).upper())
    words = " ".join(s.lower().split())
    if len(words.split()) <= MAX_TEXT_WORDS and (
        (answer.was_text and _TEXT.match(s)) or (_WORDS.match(s) and _LONG_WORD.match(s))
    ):
        return Text(words)
    try:
        return _parse(s, answer.percent, 0)
    except (_Fail, ValueError, ZeroDivisionError, OverflowError, RecursionError, MemoryError):
        return None


# ------------------------------------------------------------------------------------------- comparison


def _terminates(x: Fraction) -> bool:
    d = x.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d == 1


def decimal_rule(value: Fraction, exact: Fraction, rel_tol: float, *, approximate: bool = False) -> bool:
    """Does a decimal literal `value` stand for `exact`?

    `exact` is the exact value, or (approximate=True) a 60-digit rational approximation of an irrational
    one. See the module docstring for the rule.
    """
    if not approximate and _terminates(exact):
        return value == exact  # a value with a finite decimal expansion has to be written exactly
    tolerance = Fraction(repr(float(rel_tol)))  # 1e-4 exactly, not its binary neighbour
    return abs(value - exact) <= tolerance * max(abs(value), abs(exact))


def _num_equal(a: Num, b: Num, rel_tol: float) -> bool:
    if a.percent != b.percent:  # 50% matches 50 and 0.5
        p, q = (a, b) if a.percent else (b, a)
        scaled = Num(p.re / 100, p.im / 100, p.ulp / 100 if p.ulp else None, p.sig)
        return _num_equal(Num(p.re, p.im, p.ulp, p.sig), q, rel_tol) or _num_equal(scaled, q, rel_tol)
    if a.re == b.re and a.im == b.im:
        return True
    if a.im or b.im or (a.ulp is not None and b.ulp is not None):
        return False
    d, v = (a, b) if a.ulp is not None else (b, a)
    if d.ulp is None:
        return False
    return decimal_rule(d.re, v.re, rel_tol)


def _scalar_equal(a, b, rel_tol: float) -> bool:
    if isinstance(a, Num) and isinstance(b, Num):
        return _num_equal(a, b, rel_tol)
    if isinstance(a, Inf) and isinstance(b, Inf):
        return a.sign == b.sign
    if isinstance(a, Based) and isinstance(b, Based):
        return a.value == b.value
    if isinstance(a, Based) or isinstance(b, Based):  # 1011_2 vs 1011: the subscript is only notation
        based, other = (a, b) if isinstance(a, Based) else (b, a)
        if isinstance(other, Num) and other.ulp is None and other.im == 0 and other.re.denominator == 1:
            return based.digits.lstrip("0") == str(int(other.re)).lstrip("0")
    return False


def _unordered_equal(xs: tuple, ys: tuple, rel_tol: float) -> bool:
    if len(xs) != len(ys):
        return False
    unused = list(ys)
    for x in xs:
        for k, y in enumerate(unused):
            if values_equal(x, y, rel_tol):
                del unused[k]
                break
        else:
            return False
    return True


def _ordered_equal(xs: tuple, ys: tuple, rel_tol: float) -> bool:
    return len(xs) == len(ys) and all(values_equal(x, y, rel_tol) for x, y in zip(xs, ys, strict=True))


def _flat(v) -> tuple | None:
    """Items of a one-row or one-column matrix (a vector), else None."""
    if isinstance(v, Matrix):
        if len(v.rows) == 1:
            return v.rows[0]
        if all(len(r) == 1 for r in v.rows):
            return tuple(r[0] for r in v.rows)
    return None


def values_equal(pred: Value, gold: Value, rel_tol: float = DEFAULT_REL_TOL) -> bool:
    """Are two exact values the same answer? Where notation is ambiguous the gold's form decides
    (a bare list `1, 2` is unordered, a tuple `(1, 2)` is ordered)."""
    scalars = (Num, Inf, Based)
    if isinstance(pred, scalars) and isinstance(gold, scalars):
        return _scalar_equal(pred, gold, rel_tol)
    if isinstance(pred, Choice) or isinstance(gold, Choice):
        return isinstance(pred, Choice) and isinstance(gold, Choice) and pred.letter == gold.letter
    if isinstance(pred, Text) or isinstance(gold, Text):
        return isinstance(pred, Text) and isinstance(gold, Text) and pred.words == gold.words
    # a one-element list or set equals its element
    if (
        isinstance(gold, Seq)
        and gold.kind in ("list", "set")
        and len(gold.items) == 1
        and not isinstance(pred, Seq)
    ):
        return values_equal(pred, gold.items[0], rel_tol)
    if (
        isinstance(pred, Seq)
        and pred.kind in ("list", "set")
        and len(pred.items) == 1
        and not isinstance(gold, Seq)
    ):
        return values_equal(pred.items[0], gold, rel_tol)
    if isinstance(pred, Interval) and isinstance(gold, Interval):
        return (
            pred.left_closed == gold.left_closed
            and pred.right_closed == gold.right_closed
            and values_equal(pred.lo, gold.lo, rel_tol)
            and values_equal(pred.hi, gold.hi, rel_tol)
        )
    if isinstance(pred, Interval) or isinstance(gold, Interval):  # an open interval (a, b) vs the pair (a, b)
        interval, other = (pred, gold) if isinstance(pred, Interval) else (gold, pred)
        if (
            isinstance(other, Seq)
            and other.kind == "pair"
            and not interval.left_closed
            and not interval.right_closed
        ):
            return values_equal(interval.lo, other.items[0], rel_tol) and values_equal(
                interval.hi, other.items[1], rel_tol
            )
        if isinstance(other, Union) and len(other.parts) == 1:
            return values_equal(interval, other.parts[0], rel_tol)
        return False
    if isinstance(pred, Union) and isinstance(gold, Union):
        return _unordered_equal(pred.parts, gold.parts, rel_tol)
    if isinstance(pred, Matrix) and isinstance(gold, Matrix):
        return len(pred.rows) == len(gold.rows) and all(
            _ordered_equal(p, g, rel_tol) for p, g in zip(pred.rows, gold.rows, strict=True)
        )
    pred_items, gold_items = _items(pred), _items(gold)
    if pred_items is None or gold_items is None:
        return False
    pk, gk = _kind(pred), _kind(gold)
    if gk in ("list", "set"):
        if pk in ("list", "set"):
            return _unordered_equal(pred_items, gold_items, rel_tol)
        return gk == "list" and _unordered_equal(
            pred_items, gold_items, rel_tol
        )  # solutions 1, 2 written as (1, 2)
    if pk == "set":
        return False  # a set is not a tuple
    return _ordered_equal(pred_items, gold_items, rel_tol)  # a tuple written without parentheses still counts


def _items(v) -> tuple | None:
    if isinstance(v, Seq):
        return v.items
    return _flat(v)


def _kind(v) -> str:
    return v.kind if isinstance(v, Seq) else "vector"
