"""Exact and near-duplicate detection over problem texts; the first occurrence of a group is kept.

Exact: equal `compact_key` (case, spacing, `$` and LaTeX sizing ignored). Near: MinHash LSH (datasketch) over
3-grams of `symbol_tokens`, confirmed by the MinHash Jaccard estimate >= `threshold`. In maths a one-word
change makes a new problem ("k < 0" vs "k > 0", "exactly two" vs "all three"), so a similar pair is a near
duplicate only if both texts hold the same numbers (`same_numbers`) and, when a `same_answer` check is given,
their answers agree; similar pairs with different answers are kept and returned as kind "similar" for the
report.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass

from torl.data.textnorm import compact_key, numbers, symbol_tokens


@dataclass(frozen=True)
class DedupConfig:
    threshold: float = 0.8  # Jaccard similarity of shingle sets at which two texts are near duplicates
    num_perm: int = 128
    shingle: int = 3  # tokens per shingle
    same_numbers: bool = True
    seed: int = 1


@dataclass(frozen=True)
class Duplicate:
    """Item `index` duplicates the earlier kept item `kept_index`."""

    index: int
    kept_index: int
    kind: str  # "exact" | "near" | "similar" (similar text, different answer: both kept)
    similarity: float


def _crc32(b: bytes) -> int:
    return zlib.crc32(b)


def shingles(text: str, k: int) -> set[bytes]:
    """The set of k-token shingles of a text (the whole token sequence when it is shorter than k)."""
    toks = symbol_tokens(text)
    if len(toks) <= k:
        return {" ".join(toks).encode()}
    return {" ".join(toks[i : i + k]).encode() for i in range(len(toks) - k + 1)}


def exact_duplicates(texts: Sequence[str]) -> list[Duplicate]:
    """Items whose compact key equals an earlier item's."""
    first: dict[str, int] = {}
    dups = []
    for i, t in enumerate(texts):
        j = first.setdefault(compact_key(t), i)
        if j != i:
            dups.append(Duplicate(i, j, "exact", 1.0))
    return dups


def near_duplicates(
    texts: Sequence[str],
    config: DedupConfig = DedupConfig(),
    *,
    skip: Set[int] = frozenset(),
    same_answer: Callable[[int, int], bool] | None = None,
    progress: bool = False,
) -> list[Duplicate]:
    """Items (not in `skip`) that nearly copy an earlier kept item, in input order; plus, as kind "similar",
    the items that would be near duplicates but for a different answer (`same_answer(i, j)` False)."""
    from datasketch import MinHash, MinHashLSH
    from tqdm.auto import tqdm

    order = [i for i in range(len(texts)) if i not in skip]
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    kept: dict[int, tuple] = {}  # index -> (minhash, numbers)
    found = []
    sketches = MinHash.generator(
        (shingles(texts[i], config.shingle) for i in order), num_perm=config.num_perm, seed=config.seed, hashfunc=_crc32
    )
    for i, mh in tqdm(zip(order, sketches, strict=True), total=len(order), desc="near-dup", disable=not progress):
        nums = numbers(texts[i]) if config.same_numbers else None
        candidates = []
        for j in lsh.query(mh):
            other, other_nums = kept[j]
            sim = mh.jaccard(other)
            if nums == other_nums and sim >= config.threshold:
                candidates.append((sim, j))
        similar = None
        for sim, j in sorted(candidates, key=lambda c: (-c[0], c[1])):
            if same_answer is None or same_answer(i, j):
                found.append(Duplicate(i, j, "near", round(sim, 3)))
                break
            similar = similar or Duplicate(i, j, "similar", round(sim, 3))
        else:
            if similar:
                found.append(similar)
            lsh.insert(i, mh, check_duplication=False)
            kept[i] = (mh, nums)
    return found
