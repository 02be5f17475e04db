"""Generated arithmetic problems for the demo, and the two ways of solving them that the warm-start teaches.

Every problem has an integer answer and a one-line Python expression that computes it (`Exercise.code`).
`level` (1-3) sets the size of the numbers (at most 6 digits): level 1 is mental arithmetic a tiny model can
learn, levels 2-3 (multi-digit products, remainders, powers, sums of series, linear equations) are hopeless
without a calculator but exact with one, and short enough that copying the numbers is easy. A solution is written one of two ways (`solution_text`):

- "nl": a mentally computed result stated and boxed;
- "tool": a ```` ```python print(<expression>) ``` ```` block, the ```` ```output ```` block with the true
  result, and the output boxed. A model only has to copy numbers to get it right.

Answers are computed here with integer arithmetic (the expressions are ours, nothing is evaluated).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torl.data.schema import Problem

LEVELS = (1, 2, 3)
TOOL_INTRO = "Let me compute this with Python."
ANSWER_LINE = "The answer is \\boxed{{{answer}}}."


@dataclass(frozen=True)
class Exercise:
    """One generated problem: its text, the Python expression that solves it, the answer, and a mental
    "working" sentence that precedes the stated result in a natural-language solution."""

    family: str
    level: int
    problem: str
    code: str
    answer: int
    working: str

    def to_problem(self, id: str, source: str = "torl-demo") -> Problem:
        return Problem(id=id, problem=self.problem, answer=str(self.answer), source=source,
                       meta={"family": self.family, "level": self.level, "code": self.code})


def _num(rng: random.Random, digits: int) -> int:
    """A random integer with exactly `digits` digits (1 digit: 2-9)."""
    return rng.randint(2, 9) if digits <= 1 else rng.randint(10 ** (digits - 1), 10**digits - 1)


def _product(rng: random.Random, level: int) -> Exercise:
    a, b = _num(rng, level), _num(rng, max(1, level - (rng.random() < 0.5)))
    return Exercise("product", level, f"Compute {a} * {b}.", f"{a} * {b}", a * b,
                    f"Multiplying {a} by {b} gives")


def _sum_diff(rng: random.Random, level: int) -> Exercise:
    a, b, c = _num(rng, level + 1), _num(rng, level + 1), _num(rng, level)
    return Exercise("sum_diff", level, f"What is {a} + {b} - {c}?", f"{a} + {b} - {c}", a + b - c,
                    f"Adding {a} and {b} and subtracting {c} gives")


def _remainder(rng: random.Random, level: int) -> Exercise:
    a, m = _num(rng, level + 2), _num(rng, 1 if level == 1 else 2)
    return Exercise("remainder", level, f"What is the remainder when {a} is divided by {m}?", f"{a} % {m}",
                    a % m, f"Dividing {a} by {m} leaves")


def _power(rng: random.Random, level: int) -> Exercise:
    if level == 1:
        b, e = rng.randint(2, 9), 2
    else:
        e = rng.choice((2, 3) if level == 2 else (2, 3, 4))
        lo, hi = {(2, 2): (11, 99), (2, 3): (5, 21), (3, 2): (101, 999), (3, 3): (22, 99), (3, 4): (11, 31)}[level, e]
        b = rng.randint(lo, hi)
    return Exercise("power", level, f"Compute {b}^{e}.", f"{b}**{e}", b**e,
                    f"Multiplying {b} by itself {e} times gives")


def _series(rng: random.Random, level: int) -> Exercise:
    lo = rng.randint(1, 5 * 10 ** (level - 1))
    hi = lo + _num(rng, level)
    return Exercise("series", level, f"Compute the sum of all integers from {lo} to {hi}.",
                    f"sum(range({lo}, {hi} + 1))", (lo + hi) * (hi - lo + 1) // 2,
                    f"Adding the integers from {lo} to {hi} gives")


def _linear(rng: random.Random, level: int) -> Exercise:
    x, a, b = _num(rng, level), _num(rng, max(1, level - 1)), _num(rng, level + 1)
    c = a * x + b
    return Exercise("linear", level, f"Solve for x: {a}x + {b} = {c}.", f"({c} - {b}) // {a}", x,
                    f"Subtracting {b} from {c} and dividing by {a} gives")


FAMILIES: dict[str, Callable[[random.Random, int], Exercise]] = {
    "product": _product,
    "sum_diff": _sum_diff,
    "remainder": _remainder,
    "power": _power,
    "series": _series,
    "linear": _linear,
}


def generate(n: int, *, seed: int, levels: Sequence[int] = LEVELS,
             families: Sequence[str] | None = None, exclude: set[str] | frozenset[str] = frozenset()
             ) -> list[Exercise]:
    """`n` distinct exercises, families and levels drawn uniformly; problems whose text is in `exclude`
    (e.g. the training set, for a held-out set) are skipped."""
    names = list(families or FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown problem families {unknown}; known: {sorted(FAMILIES)}")
    if not levels or any(lv not in LEVELS for lv in levels):
        raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {list(levels)}")
    rng = random.Random(seed)
    out: list[Exercise] = []
    seen = set(exclude)
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not draw {n} distinct problems from families {names} at levels {levels}")
        ex = FAMILIES[rng.choice(names)](rng, rng.choice(list(levels)))
        if ex.problem in seen:
            continue
        seen.add(ex.problem)
        out.append(ex)
    return out


def solution_parts(ex: Exercise, style: str) -> list[tuple[str, bool]]:
    """The response solving `ex` in `style` "nl" or "tool", as (text, written_by_model) pieces: in a tool
    solution the ```` ```output ```` block's content is what the tool inserts (the rollout loop's
    `wrap_observation` minus the model's own "```output"), not model text."""
    box = ANSWER_LINE.format(answer=ex.answer)
    if style == "nl":
        return [(f"{ex.working} {ex.answer}.\n{box}", True)]
    if style == "tool":
        return [(f"{TOOL_INTRO}\n```python\nprint({ex.code})\n```\n```output", True),
                (f"\n{ex.answer}\n```\n", False), (box, True)]
    raise ValueError(f"style must be 'nl' or 'tool', got {style!r}")


def solution_text(ex: Exercise, style: str) -> str:
    """The whole response text (what follows the prompt) solving `ex` in `style` "nl" or "tool"."""
    return "".join(text for text, _ in solution_parts(ex, style))


def to_problems(exercises: Sequence[Exercise], prefix: str) -> list[Problem]:
    return [ex.to_problem(f"{prefix}-{i:05d}") for i, ex in enumerate(exercises)]
