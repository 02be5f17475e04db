"""The grader: fast path in-process, math-verify in a worker pool with a hard timeout, and a memo cache.

`Grader` is the object; `is_equivalent`, `grade_many` and `can_parse` use a shared default grader that
starts its worker processes on first need and stops them at exit. Every entry point is thread-safe and
works from any thread or process (no signals). A comparison that runs past its timeout counts as "not
equivalent" and is counted in `Grader.stats.timeouts`.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields
from fractions import Fraction

from torl.reward.equivalence import fast_compare, has_prose
from torl.reward.normalize import normalize_answer
from torl.reward.pool import WorkerPool
from torl.reward.reference import reference_equal_casefold
from torl.reward.values import DEFAULT_REL_TOL, MAX_EXACT_CHARS, parse_value

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0  # seconds per comparison in a worker
DEFAULT_CACHE_SIZE = 200_000


def default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class Verdict:
    """Result of one comparison. `method`: how it was decided ("string", "exact", "math_verify",
    "exact-numeric", "decimal", "timeout", "no_answer", "error:…", …)."""

    equal: bool
    method: str


@dataclass
class GradingStats:
    """Counters since the grader was created (or `reset_stats`)."""

    pairs: int = 0
    cache_hits: int = 0
    no_answer: int = 0
    fast_path: int = 0
    worker: int = 0
    timeouts: int = 0
    errors: int = 0
    worker_restarts: int = 0

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _as_text(x, what: str) -> str:
    if isinstance(x, str):
        return x
    if isinstance(x, (int, float, Fraction)) and not isinstance(x, bool):
        return str(x)
    raise TypeError(f"{what} must be a string (or a number), got {type(x).__name__}: {x!r}")


class Grader:
    """Math-equivalence grading with a process pool and a memo cache.

    processes: worker processes for math-verify (default: min(4, CPUs)); started on first need.
    timeout: default seconds per worker comparison. cache_size: memoised (pred, gold) pairs (0 = off).
    memory_mb: address-space limit of each worker. rel_tol: default relative tolerance of a decimal against a
    value without a finite decimal expansion (`values.decimal_rule`; 1e-4: 1.4142 = √2, 3.14 ≠ π).
    """

    def __init__(
        self,
        processes: int | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cache_size: int = DEFAULT_CACHE_SIZE,
        memory_mb: int = 2048,
        rel_tol: float = DEFAULT_REL_TOL,
    ):
        if not (isinstance(rel_tol, (int, float)) and 0 <= rel_tol < 1):
            raise ValueError(f"rel_tol must be a number in [0, 1), got {rel_tol!r}")
        self.processes = processes or default_processes()
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.rel_tol = float(rel_tol)
        self._cache = _LRU(cache_size)
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()
        self._stats = GradingStats()

    # ------------------------------------------------------------------------------------ public API
    def is_equivalent(
        self, pred: str | None, gold: str, *, timeout: float | None = None, rel_tol: float | None = None
    ) -> bool:
        """Is the extracted answer `pred` the same answer as `gold`? None is never equivalent."""
        return self.compare(pred, gold, timeout=timeout, rel_tol=rel_tol).equal

    def compare(
        self, pred: str | None, gold: str, *, timeout: float | None = None, rel_tol: float | None = None
    ) -> Verdict:
        """Like `is_equivalent`, with how it was decided."""
        return self.verdicts([pred], [gold], timeout=timeout, rel_tol=rel_tol)[0]

    def grade_many(
        self,
        preds: Sequence[str | None],
        golds: Sequence[str],
        *,
        timeout: float | None = None,
        progress: bool = False,
        rel_tol: float | None = None,
    ) -> list[bool]:
        """`is_equivalent` for many pairs, in parallel over the worker pool; results in input order."""
        return [
            v.equal for v in self.verdicts(preds, golds, timeout=timeout, progress=progress, rel_tol=rel_tol)
        ]

    def verdicts(
        self,
        preds: Sequence[str | None],
        golds: Sequence[str],
        *,
        timeout: float | None = None,
        progress: bool = False,
        mode: str = "torl",
        rel_tol: float | None = None,
    ) -> list[Verdict]:
        """Verdicts for many pairs. mode "reference" reproduces the reference's check (`reference.py`,
        which has no tolerance setting); rel_tol: None = the grader's."""
        if len(preds) != len(golds):
            raise ValueError(f"preds has {len(preds)} items but golds has {len(golds)}")
        if mode not in ("torl", "reference"):
            raise ValueError(f"mode must be 'torl' or 'reference', got {mode!r}")
        op = "equal" if mode == "torl" else "reference"
        tol = self.rel_tol if rel_tol is None else float(rel_tol)
        # the cache key's first item: the op, and the tolerance when it is not the default one
        cache_op = op if op != "equal" or tol == DEFAULT_REL_TOL else f"equal:rel_tol={tol!r}"
        out: list[Verdict | None] = [None] * len(preds)
        todo: dict[tuple, list[int]] = {}
        payloads: dict[tuple, list] = {}
        counts = GradingStats(pairs=len(preds))
        for i, (pred, gold) in enumerate(zip(preds, golds, strict=True)):
            gold = _as_text(gold, "gold")
            if pred is None:
                out[i] = Verdict(False, "no_answer")
                counts.no_answer += 1
                continue
            pred = _as_text(pred, "pred")
            key = (cache_op, pred, gold)
            if key in todo:
                todo[key].append(i)
                continue
            hit = self._cache.get(key)
            if hit is not None:
                out[i] = hit
                counts.cache_hits += 1
                continue
            if op == "equal":
                npred, ngold = normalize_answer(pred), normalize_answer(gold)
                equal, method = fast_compare(npred, ngold, tol)
                if equal is not None:
                    out[i] = Verdict(equal, method)
                    self._cache.put(key, out[i])
                    counts.fast_path += 1
                    continue
                payloads[key] = [npred.to_payload(), ngold.to_payload(), tol]
            else:
                if reference_equal_casefold(pred, gold):  # the reference's step 2, no worker needed
                    out[i] = Verdict(True, "ref:lower")
                    self._cache.put(key, out[i])
                    counts.fast_path += 1
                    continue
                payloads[key] = [pred, gold]
            todo[key] = [i]
            if len(todo) == 1:
                self._get_pool()  # start the workers now: they boot while the fast path runs on
        if todo:
            for key, verdict in self._run_workers(op, payloads, timeout, progress, counts).items():
                self._cache.put(key, verdict)
                for i in todo[key]:
                    out[i] = verdict
        self._add_stats(counts)
        return out  # type: ignore[return-value]

    def can_parse(self, answer: str | None, *, timeout: float | None = None) -> bool:
        """Can the grader turn `answer` into something comparable (a value, an expression, a short text)?

        False for None, empty answers, prose ("…, where b is an integer") and LaTeX that does not parse.
        """
        return self.can_parse_many([answer], timeout=timeout)[0]

    def can_parse_many(self, answers: Sequence[str], *, timeout: float | None = None) -> list[bool]:
        """`can_parse` for many answers, in parallel over the worker pool."""
        out: list[bool | None] = [None] * len(answers)
        todo: dict[tuple, list[int]] = {}
        payloads: dict[tuple, list] = {}
        for i, answer in enumerate(answers):
            if answer is None:
                out[i] = False
                continue
            normalized = normalize_answer(_as_text(answer, "answer"))
            if not normalized.key or len(normalized.text) > MAX_EXACT_CHARS:
                out[i] = False
            elif parse_value(normalized) is not None:
                out[i] = True
            elif has_prose(normalized.text):
                out[i] = False
            else:
                key = ("parse", normalized.text, "")
                hit = self._cache.get(key)
                if hit is not None:
                    out[i] = hit.equal
                else:
                    todo.setdefault(key, []).append(i)
                    payloads[key] = [normalized.text]
        if todo:
            counts = GradingStats()
            for key, verdict in self._run_workers("parse", payloads, timeout, False, counts).items():
                self._cache.put(key, verdict)
                for i in todo[key]:
                    out[i] = verdict.equal
            self._add_stats(counts)
        return out  # type: ignore[return-value]

    @property
    def stats(self) -> GradingStats:
        with self._lock:
            snapshot = GradingStats(**self._stats.to_dict())
        snapshot.worker_restarts = self._pool.restarts if self._pool else 0
        return snapshot

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = GradingStats()

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        """Stop the worker processes. The grader can still be used (it starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ internals
    def _get_pool(self) -> WorkerPool:
        with self._lock:
            if self._pool is not None and self._pool.owner_pid != os.getpid():
                self._pool = None  # inherited through fork: the workers belong to the parent
            if self._pool is None:
                self._pool = WorkerPool(self.processes, memory_mb=self.memory_mb)
            return self._pool

    def _add_stats(self, counts: GradingStats) -> None:
        with self._lock:
            for f in fields(GradingStats):
                setattr(self._stats, f.name, getattr(self._stats, f.name) + getattr(counts, f.name))

    def _run_workers(
        self,
        op: str,
        payloads: dict[tuple, list],
        timeout: float | None,
        progress: bool,
        counts: GradingStats,
    ) -> dict[tuple, Verdict]:
        timeout = self.timeout if timeout is None else timeout
        pool = self._get_pool()
        keys = list(payloads)
        chunk = max(1, min(16, math.ceil(len(keys) / (pool.size * 4))))
        chunks = [keys[k : k + chunk] for k in range(0, len(keys), chunk)]
        results: dict[tuple, Verdict] = {}

        def run(part: list[tuple]) -> list[tuple[tuple, tuple[bool, str]]]:
            return list(zip(part, pool.run(op, [payloads[k] for k in part], timeout), strict=True))

        if len(chunks) == 1:
            done = [run(chunks[0])]
        else:
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(keys), desc="grading", unit="pair", leave=False)
            done = []
            with ThreadPoolExecutor(max_workers=pool.size, thread_name_prefix="torl-grade") as ex:
                for future in as_completed([ex.submit(run, part) for part in chunks]):
                    done.append(future.result())
                    if bar is not None:
                        bar.update(len(done[-1]))
            if bar is not None:
                bar.close()
        for part in done:
            for key, (equal, method) in part:
                results[key] = Verdict(equal, method)
                counts.worker += 1
                if method == "timeout":
                    counts.timeouts += 1
                    logger.debug("grading timed out after %.1fs: %r", timeout, payloads[key])
                elif method.startswith("error"):
                    counts.errors += 1
        return results


# ------------------------------------------------------------------------------- the default graders
_defaults: dict[int, Grader] = {}
_defaults_lock = threading.Lock()


def default_grader(processes: int | None = None) -> Grader:
    """The shared grader for `processes` workers (one per size, created on first use, closed at exit)."""
    n = processes or default_processes()
    with _defaults_lock:
        grader = _defaults.get(n)
        if grader is None:
            grader = _defaults[n] = Grader(n)
        return grader


@atexit.register
def _close_defaults() -> None:
    with _defaults_lock:
        graders = list(_defaults.values())
    for grader in graders:
        grader.close()


def is_equivalent(
    pred: str | None, gold: str, *, timeout: float = DEFAULT_TIMEOUT, rel_tol: float | None = None
) -> bool:
    """Is the extracted answer `pred` mathematically the same answer as `gold`? (None → False.)"""
    return default_grader().is_equivalent(pred, gold, timeout=timeout, rel_tol=rel_tol)


def grade_many(
    preds: Sequence[str | None],
    golds: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    processes: int | None = None,
    progress: bool = False,
    rel_tol: float | None = None,
) -> list[bool]:
    """`is_equivalent` for many (already extracted) answers, over a pool of `processes` workers."""
    return default_grader(processes).grade_many(
        preds, golds, timeout=timeout, progress=progress, rel_tol=rel_tol
    )


def can_parse(answer: str, *, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Can the grader turn `answer` into something comparable? (For data filtering.)"""
    return default_grader().can_parse(answer, timeout=timeout)
