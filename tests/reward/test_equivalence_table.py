"""The table of (pred, gold, expected) pairs across answer formats, in both directions."""

from collections import Counter

from torl.reward import normalize_answer

from .helpers import load_cases


def test_table_is_large_and_balanced():
    rows = load_cases()
    assert len(rows) >= 150
    assert Counter(r[2] for r in rows)[False] >= 50  # plenty of not-equal pairs
    pairs = [(p, g) for p, g, *_ in rows]
    assert len(set(pairs)) == len(pairs), "duplicate rows"


def test_table(grader):
    preds, golds, expected, notes = [], [], [], []
    for pred, gold, equal, direction, note in load_cases():
        preds.append(pred), golds.append(gold), expected.append(equal), notes.append(note)
        if direction == "both":
            preds.append(gold), golds.append(pred), expected.append(equal), notes.append(note + " (swapped)")
    verdicts = grader.verdicts(preds, golds)
    wrong = [
        f"{n}: pred={p!r} gold={g!r} expected {e} got {v.equal} ({v.method})"
        for p, g, e, v, n in zip(preds, golds, expected, verdicts, notes, strict=True)
        if v.equal != e
    ]
    assert not wrong, "\n".join(wrong)
    assert not [v for v in verdicts if v.method in ("timeout",) or v.method.startswith("error")]


def test_fast_path_decides_numbers_without_a_worker():
    from torl.reward import Grader

    with Grader(1) as g:
        assert g.grade_many(
            ["070", "\\frac{1}{2^{99}}", "(3,4]", "\\text{(C)}"], ["70", "\\frac{1}{2^{98}}", "[3,4]", "C"]
        ) == [
            True,
            False,
            False,
            True,
        ]
        assert g.stats.worker == 0
        assert g._pool is None  # no process was started


def test_normalize_examples():
    assert normalize_answer("\\$32,\\!348").text == "32348"
    assert normalize_answer("\\left( 3, \\dfrac{\\pi}{2} \\right)").text == "( 3, \\frac{\\pi}{2} )"
    assert normalize_answer("10 \\text{ square units}").text == "10"
    assert normalize_answer("x \\in [-2,7]").text == "[-2,7]"
    n = normalize_answer("62.5\\%")
    assert (n.text, n.percent) == ("62.5", True)
    assert normalize_answer("\\text{Evelyn}").was_text
