"""Exact and near duplicates: copies go, variants with other numbers or other answers stay."""

from torl.data.dedup import DedupConfig, exact_duplicates, near_duplicates

GARDEN = ("A rectangular garden is 12 meters long and 5 meters wide. A path of uniform width 1 meter surrounds the "
          "garden. What is the area of the path in square meters?")


def test_exact_duplicates_ignore_spacing_case_and_dollars():
    texts = ["Given $f(x)=2x+3$, find $f(2)$.", "Given $f(x) = 2x + 3$,  find $f(2)$ .", "given f(x)=2x+3, find f(2).",
             "Given $f(x)=2x+4$, find $f(2)$."]
    dups = exact_duplicates(texts)
    assert [(d.index, d.kept_index, d.kind) for d in dups] == [(1, 0, "exact"), (2, 0, "exact")]


def test_near_duplicate_rewording_is_found():
    texts = [GARDEN, GARDEN.replace("width 1 meter", "width of 1 meter").replace("path in", "path, in")]
    dups = near_duplicates(texts)
    assert [(d.index, d.kept_index, d.kind) for d in dups] == [(1, 0, "near")]
    assert dups[0].similarity >= 0.8


def test_changed_numbers_make_a_different_problem():
    texts = [GARDEN, GARDEN.replace("5 meters wide", "7 meters wide")]
    assert near_duplicates(texts) == []
    # the number check is what keeps it: without it the pair is a near duplicate
    assert near_duplicates(texts, DedupConfig(threshold=0.7)) == []
    assert [d.kind for d in near_duplicates(texts, DedupConfig(threshold=0.7, same_numbers=False))] == ["near"]


def test_similar_text_with_a_different_answer_is_kept_and_reported():
    a = "Given that $f(x) = x^k$ where $k < 0$, what is the range of $f(x)$ on the interval $[1, \\infty)$?"
    b = a.replace("k < 0", "k > 0")
    answers = ["(0,1]", "[1,\\infty)"]
    found = near_duplicates([a, b], same_answer=lambda i, j: answers[i] == answers[j])
    assert [(d.index, d.kept_index, d.kind) for d in found] == [(1, 0, "similar")]
    found = near_duplicates([a, b], same_answer=lambda i, j: True)
    assert [d.kind for d in found] == ["near"]


def test_unrelated_texts_are_not_duplicates_and_punctuation_is_ignored():
    texts = [GARDEN, "How many primes are less than 100?", "Compute $\\binom{8}{4}$.", "Compute $\\dbinom{8}{4}$!"]
    assert exact_duplicates(texts) == []
    assert [(d.index, d.kept_index, d.kind) for d in near_duplicates(texts)] == [(3, 2, "near")]
