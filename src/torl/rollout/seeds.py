"""Per-sample seeds: a sample's randomness depends on who it is, never on when or with whom it was generated.

A seed is a hash of its parts, e.g. (run seed, step, prompt index, sample index) for a sample and
(sample seed, round) for one generation round, so the same config and seed give the same tokens whatever the
batching, concurrency or timing (on a backend that honours `GenerationRequest.seed`).
"""

from __future__ import annotations

import hashlib

SEED_BITS = 31  # servers differ in the integer range they accept; 2**31 seeds are plenty


def derive_seed(*parts: int | str) -> int:
    """A seed in [0, 2**31) from `parts` (ints or strings); stable across processes, machines and versions."""
    text = "/".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") % (1 << SEED_BITS)


def sample_seeds(seed: int | None, n: int, *context: int | str) -> list[int] | None:
    """Seeds for samples 0..n-1 of one call: derive_seed(seed, *context, i); None when `seed` is None."""
    if seed is None:
        return None
    return [derive_seed(seed, *context, i) for i in range(n)]
