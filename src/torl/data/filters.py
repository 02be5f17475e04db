"""Content filters: each takes a problem and its gold answer and returns why it must go, or None to keep it.

They are pure functions on text; `torl.data.build` applies them in its `FILTER_ORDER` and counts each dropped
item under the first filter that rejects it. The grader check (`torl.reward.can_parse`) and the prompt-length
check need outside state and live in build.py.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------------------------- shared patterns

_PROOF = re.compile(
    r"\b(?:prove|proves|proving|disprove|proof|show\s+that|show\s+why|demonstrate\s+that|verify\s+that|"
    r"justify|establish\s+that|explain\s+why|deduce\s+that|confirm\s+that)\b|证明|求证",
    re.I,
)
# A clause that asks for a value: with one of these a "show that ..." problem still has an answer to check.
_REQUEST = re.compile(
    r"\b(?:find|compute|calculate|determine|evaluate|what|how\s+many|how\s+much|solve|simplify|"
    r"express|give\s+the\s+value)\b|\?|\\_\\_|_{3,}|=\s*\\underline|\\square(?![a-z])|\(\s*\)",
    re.I,
)
# Answers that state a relation or a proof marker are a boxed claim, not a value.
_RELATION = re.compile(
    r"<|>|\\(?:le|ge|leq|geq|leqslant|geqslant|lt|gt|neq|ne|equiv|perp|parallel|subset|subseteq|supset|"
    r"implies|iff|Rightarrow|Leftrightarrow|blacksquare|square|qed|Box)(?![a-zA-Z])",
)
_PROOF_ANSWERS = {"proof", "proved", "proven", "qed", "q.e.d.", "q.e.d", "shown"}

_LETTER_ANSWER = re.compile(
    r"^\s*(?:\\text(?:bf|rm)?\{\s*)?(?:\\textbf\{\s*)?\(?\s*([A-E])\s*\)?\s*\}?\s*\}?\s*[.)]?\s*$"
)
# Listed choices: (A), \textbf{(A)}, "A." / "A:" / "A)" after a space, a quoted "A", or a run "A, B, C or D".
_CHOICE_MARK = re.compile(
    r"\(\s*([A-Ea-e])\s*\)|\\text(?:bf|rm)?\{\s*\(?([A-E])\)?\s*\}|(?:^|(?<=\s))([A-E])\s*[.:)](?=\s|\$|\\)"
    r"|[\"'“‘]([A-E])[\"'”’]"
)
_CHOICE_RUN = re.compile(r"\b([A-E]),\s*([A-E]),?\s*(?:([A-E]),?\s*)*(?:or|and)\s+([A-E])\b")
_ASY = re.compile(r"\[asy\].*?\[/asy\]", re.S)

# Part markers: (1) (I) (i) (a) ① anywhere after a space or sentence punctuation (never after a letter, digit,
# `$`, `_`, `^` or `{`, so f(1), P(2) and $(1)$ in formulas are not parts), and "1." / "1)" / "I." at a line start.
_PART = re.compile(
    r"(?:^|(?<=[\s.:;,!?。；：]))(?:[Pp]art\s*)?\((?P<p>\d{1,2}|[ivx]{1,4}|[IVX]{1,4}|[a-h])\)"
    r"|^[ \t]*(?:[Pp]art\s*)?(?P<n>\d{1,2}|[IVX]{1,4})[).、](?=\s)"
    r"|(?P<c>[①②③④⑤⑥⑦⑧⑨])",
    re.M,
)
_CIRCLED = "①②③④⑤⑥⑦⑧⑨"
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "x": 10}
_ANSWER_PART = re.compile(r"(?:^|(?<=[\s;,]))\(\s*(1|2|3|I|II|III|i|ii|iii)\s*\)|([①②③])")

_ENVIRONMENT = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}(?:\{[^{}]*\})?")
# A part that asks for something: stricter than _REQUEST, so "half of what he owes" is not a question.
_PART_REQUEST = re.compile(
    r"\?|\b(?:find|compute|calculate|determine|evaluate|solve|simplify)\b"
    r"|\bwhat\s+(?:is|are|was|were|will|would|must|can|should|does|do)\b|\bhow\s+(?:many|much|long|far|old)\b",
    re.I,
)
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[A-Za-z]{2,}")
# Words that are units or mathematical names, not prose.
_NON_PROSE_TEXT = """
    cm mm km m kg mg g lb lbs oz ft feet foot inch inches in yd yard yards mile miles meter meters metre metres
    centimeter centimeters millimeter millimeters kilometer kilometers liter liters litre litres ml gallon gallons
    sec second seconds min minute minutes hr hour hours day days week weeks month months year years
    degree degrees deg rad radian radians units unit square sq cubic cu dollars dollar cents cent percent
    mph kph mps kmh am pm sin cos tan cot sec csc log ln lg exp arcsin arccos arctan sinh cosh tanh gcd lcm
    mod max min det tr dim ker deg arg lim inf sup pi infty infinity ee
"""
_NON_PROSE = frozenset(_NON_PROSE_TEXT.split())

# the order `torl.data.build` applies the filters in (and reports them): each item is counted once, by the
# first filter that drops it
FILTER_ORDER = (
    "invalid_row", "missing_fields", "proof", "multiple_choice", "multi_part", "free_text_answer",
    "unparseable_answer", "prompt_too_long", "contaminated", "exact_duplicate", "near_duplicate",
)


def prose_words(answer: str) -> list[str]:
    """The natural-language words of an answer: words of 2+ letters inside \\text{}-like wrappers and bare runs of
    3+ letters elsewhere (the answer is maths, so "ab" is a product), minus units and function names."""
    text = _ENVIRONMENT.sub(" ", answer)
    wrapped = []
    while True:
        found = _TEXT_WRAPPER.findall(text)
        if not found:
            break
        wrapped += found
        text = _TEXT_WRAPPER.sub(" ", text)
    bare = re.findall(r"[A-Za-z]{3,}", _COMMAND.sub(" ", text))
    words = [w for chunk in wrapped for w in _WORD.findall(_COMMAND.sub(" ", chunk))] + bare
    return [w for w in words if w.lower() not in _NON_PROSE]


# --------------------------------------------------------------------------------------------- the filters


def missing_fields(problem: str | None, answer: str | None) -> str | None:
    """Empty or missing problem, or no answer (no `answer` and no `\\boxed{}` in the solution)."""
    if problem is None or not problem.strip():
        return "empty or missing problem"
    if answer is None or not answer.strip():
        return "no answer and no \\boxed{} in the solution"
    if answer.strip().lower() in ("notfound", "none", "null", "n/a"):
        return f"answer is the placeholder `{answer.strip()}`"
    return None


def _asks_for_value(problem: str) -> bool:
    return _REQUEST.search(problem) is not None


def _value_like(answer: str) -> bool:
    a = answer.strip()
    return a.lower() not in _PROOF_ANSWERS and not _RELATION.search(a) and len(prose_words(a)) < 2


def is_proof(problem: str, answer: str) -> str | None:
    """A proof problem: asks to prove/show/demonstrate, unless it also asks for a value and the answer is one."""
    if answer.strip().lower() in _PROOF_ANSWERS:
        return f"answer `{answer.strip()}` marks a proof"
    m = _PROOF.search(problem)
    if not m:
        return None
    if _asks_for_value(problem) and _value_like(answer):
        return None
    why = "no value is asked for" if not _asks_for_value(problem) else f"the answer `{answer}` is a claim"
    return f"asks to `{m.group(0).lower()}` and {why}"


def _choice_labels(problem: str) -> set[str]:
    labels = {next(g for g in m.groups() if g).upper() for m in _CHOICE_MARK.finditer(problem)}
    for m in _CHOICE_RUN.finditer(problem):
        labels.update(g for g in m.groups() if g)
    return labels


def _letter_sequence(problem: str, letter: str) -> bool:
    """The problem is about a string of letters ("the 100th letter of ABCABC...") that contains the answer."""
    return any(letter in run for run in re.findall(r"[A-Z]{3,}", _ASY.sub(" ", problem)))


def _math_variable(problem: str, letter: str) -> bool:
    """The letter is a symbol of the problem's mathematics ("constants $C$ and $D$"), outside [asy] drawings."""
    text = _ASY.sub(" ", problem)
    math = " ".join(re.findall(r"\$([^$]+)\$", text)) + " ".join(re.findall(r"\\\[(.+?)\\\]", text, re.S))
    return re.search(rf"(?<![A-Za-z\\]){letter}(?![A-Za-z])", math) is not None


def letter_answer(answer: str) -> str | None:
    """The choice letter when the answer is only a letter A-E ("C", "(C)", "\\textbf{(C)}"), else None."""
    m = _LETTER_ANSWER.match(answer)
    return m.group(1) if m else None


def is_letter_without_choices(problem: str, answer: str) -> str | None:
    """A multiple-choice item whose answer is only a letter while the problem does not list the choices."""
    letter = letter_answer(answer)
    if letter is None:
        return None
    labels = _choice_labels(problem)
    if len(labels) >= 2 and letter in labels:
        return None
    if _math_variable(problem, letter) or _letter_sequence(problem, letter):
        return None
    return f"answer is the letter `{letter}` but the problem lists no choices"


def is_multiple_choice(problem: str, answer: str) -> str | None:
    """Any item answered by a choice letter (used only when the build is asked to drop all such items)."""
    letter = letter_answer(answer)
    return f"answer is the choice letter `{letter}`" if letter else None


def _ordinal(marker: re.Match) -> tuple[str, int] | None:
    """(kind, position) of a part marker: ("num", 2) for (2), ("roman", 2) for (II), ("alpha", 2) for (b)."""
    tok = marker.group("p") or marker.group("n") or marker.group("c")
    if tok in _CIRCLED:
        return "circled", _CIRCLED.index(tok) + 1
    if tok.isdigit():
        return "num", int(tok)
    if tok.lower() in _ROMAN and (tok.isupper() or len(tok) > 1 or tok == "i"):
        return ("Roman" if tok.isupper() else "roman"), _ROMAN[tok.lower()]
    if len(tok) == 1 and tok.islower():
        return "alpha", ord(tok) - ord("a") + 1
    return None


def part_segments(problem: str) -> list[str]:
    """The texts of enumerated parts ((1)..(n), (I)..., (a)..., ①...) when the problem has at least 2, else []."""
    marks: dict[str, list[tuple[int, int]]] = {}
    for m in _PART.finditer(problem):
        o = _ordinal(m)
        if o:
            marks.setdefault(o[0], []).append((o[1], m.start()))
    for _kind, found in marks.items():
        positions = {}
        for pos, start in found:
            positions.setdefault(pos, start)
        if 1 in positions and 2 in positions and positions[1] < positions[2]:
            starts = [positions[k] for k in sorted(positions) if k == 1 or positions[k] > positions[1]]
            starts = sorted(starts) + [len(problem)]
            return [problem[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    return []


def is_multi_part(problem: str, answer: str) -> str | None:
    """Several requested answers: two or more enumerated parts that each ask for a value, or a gold answer with
    part labels ("(1) 3 (2) 5"). (A solution boxing answers that differ from its last is checked by the build,
    which needs the grader.)"""
    labels = {a or b for a, b in _ANSWER_PART.findall(answer)}
    if len(labels) >= 2:
        return f"the answer `{answer}` has several labelled parts"
    segments = part_segments(problem)
    asking = [s for s in segments if _PART_REQUEST.search(s) and not (_PROOF.search(s) and not _value_request(s))]
    if len(asking) >= 2:
        return f"{len(asking)} of its {len(segments)} parts ask for an answer"
    return None


def _value_request(segment: str) -> bool:
    """A part that asks for a value even though it mentions a proof ("prove ... and find x")."""
    rest = _PROOF.sub(" ", segment)
    return re.search(r"\b(?:find|compute|calculate|determine|evaluate|what|how\s+many|how\s+much)\b", rest, re.I) is not None


def is_free_text(problem: str, answer: str) -> str | None:
    """An answer in words: three or more prose words, or two without any digit ("\\text{two lines}"); a number
    with a few words of unit ("65 \\text{ children tickets}") is a value."""
    words = prose_words(answer)
    if len(words) >= 3 or (len(words) == 2 and not re.search(r"\d", answer)):
        return f"answer is free text (`{' '.join(words[:6])}`)"
    return None
