"""Decontamination: the n-gram index finds benchmark items inside a training set, and ignores boilerplate."""

import json

from torl.data.decontam import build_index, shipped_benchmark_items


def test_math500_is_found_inside_the_math_test_split(shared_data):
    from torl.data.eval_sets import load_benchmark

    math500 = load_benchmark("math500")
    index = build_index(("math500", p.id, p.problem) for p in math500)  # built once
    test = [json.loads(line) for line in (shared_data / "raw" / "math_test5000.jsonl").open()]
    full_hits: dict[str, list[str]] = {}
    for row in test:
        for ref, overlap in index.hits(row["problem"]).items():
            if overlap == 1.0:
                full_hits.setdefault(ref.id, []).append(row["problem"])
    assert len(full_hits) == 500
    text = {p.id: p.problem for p in math500}
    assert all(text[i] in problems for i, problems in full_hits.items())  # each found at its identical copy
    assert index.n_items == {"math500": 500}


def test_boilerplate_shared_13grams_are_not_contamination():
    bench = ("The probability that a fair coin lands heads 5 times in 8 tosses is $\\frac{m}{n}$, where $m$ and $n$ are "
             "relatively prime positive integers. Find $m+n$.")
    train = ("Three dice are rolled. The probability that their sum is 10 is $\\frac{m}{n}$, where $m$ and $n$ are "
             "relatively prime positive integers. Find $m+n$.")
    index = build_index([("aime", "1", bench)])
    overlaps = index.overlaps(train)
    assert overlaps and 0 < max(overlaps.values()) < 0.5  # a shared 13-gram, but a small part of the item
    assert index.hits(train) == {}
    assert build_index([("aime", "1", bench)], min_overlap=0.0).hits(train)  # the plain any-13-gram rule flags it


def test_copy_inside_a_longer_problem_and_short_items():
    bench = "Let $f(x) = 3x^2 - 5$. What is the value of $f(f(1))$? Give your answer as an integer please."
    index = build_index([("b", "long", bench), ("b", "short", "Compute $\\dbinom{8}{4}$.")])
    found = index.hits("Warm-up. " + bench.replace("$", "") + " Then explain.")
    assert {r.id for r in found} == {"long"} and found[next(iter(found))] == 1.0
    assert {r.id for r in index.hits("First, compute $\\binom{8}{4}$, then add 1.")} == {"short"}
    assert index.hits("Compute $\\binom{8}{5}$.") == {}


def test_shipped_benchmarks_are_all_indexed():
    from torl.data.eval_sets import list_benchmarks

    items = shipped_benchmark_items()
    counts = {}
    for bench, _id, _text in items:
        counts[bench] = counts.get(bench, 0) + 1
    assert counts == list_benchmarks()
