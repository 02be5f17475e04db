"""Decontamination: n-gram overlap between training problems and benchmark problems.

Texts are cut into `word_tokens` (lower-cased words and numbers; LaTeX spacing, `$` and punctuation dropped).
A training problem is contaminated by a benchmark item when the n-grams they share (default n = 13, as in
GPT-3) cover at least `min_overlap` of the benchmark item's distinct n-grams; a benchmark item shorter than n
tokens hits when its whole token sequence occurs in the training problem. The coverage rule matters for maths:
boilerplate such as "where m and n are relatively prime positive integers. Find m+n" is a shared 13-gram
between hundreds of unrelated AIME problems but covers only a small part of any one of them, while a copied
problem covers all of it (`min_overlap=0` gives the plain any-shared-n-gram rule). The index of benchmark
n-grams is built once; each lookup is one pass over the training problem's n-grams.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from torl.data.eval_sets import list_benchmarks, load_benchmark
from torl.data.textnorm import word_tokens
from torl.errors import UserInputError

DEFAULT_NGRAM = 13
DEFAULT_MIN_OVERLAP = 0.5


@dataclass(frozen=True)
class BenchmarkRef:
    benchmark: str
    id: str


@dataclass
class NgramIndex:
    """Benchmark n-grams -> the benchmark items that contain them, and each item's number of distinct n-grams."""

    n: int = DEFAULT_NGRAM
    min_overlap: float = DEFAULT_MIN_OVERLAP
    grams: dict[tuple[str, ...], list[BenchmarkRef]] = field(default_factory=dict)
    short: dict[int, dict[tuple[str, ...], list[BenchmarkRef]]] = field(default_factory=dict)
    sizes: dict[BenchmarkRef, int] = field(default_factory=dict)
    n_items: dict[str, int] = field(default_factory=dict)

    def add(self, benchmark: str, item_id: str, text: str) -> None:
        ref = BenchmarkRef(benchmark, str(item_id))
        toks = word_tokens(text)
        self.n_items[benchmark] = self.n_items.get(benchmark, 0) + 1
        if not toks:
            return
        if len(toks) < self.n:
            self.short.setdefault(len(toks), {}).setdefault(tuple(toks), []).append(ref)
            self.sizes[ref] = 1
            return
        distinct = {tuple(toks[i : i + self.n]) for i in range(len(toks) - self.n + 1)}
        self.sizes[ref] = len(distinct)
        for g in distinct:
            self.grams.setdefault(g, []).append(ref)

    def overlaps(self, text: str) -> dict[BenchmarkRef, float]:
        """Every benchmark item sharing an n-gram with `text` -> the share of its n-grams found in `text`."""
        toks = word_tokens(text)
        shared: dict[BenchmarkRef, int] = {}
        for size, table in ((self.n, self.grams), *self.short.items()):
            for g in {tuple(toks[i : i + size]) for i in range(len(toks) - size + 1)}:
                for ref in table.get(g, ()):
                    shared[ref] = shared.get(ref, 0) + 1
        return {ref: k / self.sizes[ref] for ref, k in shared.items()}

    def hits(self, text: str) -> dict[BenchmarkRef, float]:
        """The benchmark items `text` contaminates (overlap >= min_overlap) -> their overlap."""
        return {ref: o for ref, o in self.overlaps(text).items() if o >= self.min_overlap}


def build_index(
    items: Iterable[tuple[str, str, str]], n: int = DEFAULT_NGRAM, min_overlap: float = DEFAULT_MIN_OVERLAP
) -> NgramIndex:
    """An index over (benchmark, item id, problem text) triples."""
    index = NgramIndex(n=n, min_overlap=min_overlap)
    for benchmark, item_id, text in items:
        index.add(benchmark, item_id, text)
    return index


def shipped_benchmark_items(names: Sequence[str] | None = None) -> list[tuple[str, str, str]]:
    """(benchmark, id, problem) for the shipped benchmarks (`torl.data.eval_sets`), all of them by default."""
    available = list_benchmarks()
    names = list(available) if names is None else list(names)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise UserInputError(f"unknown benchmark(s) {unknown}; shipped: {', '.join(available)}")
    return [(name, p.id, p.problem) for name in names for p in load_benchmark(name)]
