"""BatchingBackend: turns concurrent `agenerate` calls into batched blocking `generate_batch` calls.

Requests that arrive while the engine is busy wait in a queue; when it is free, everything pending (up to
`max_batch_size`) goes into the next batch, after a short quiet period (`batch_wait_s` without a new arrival,
at most `max_wait_s`) so that samples finishing their tool calls together share a batch. A sample whose tool
call is slow simply joins a later batch: nobody waits for it.

Queueing is O(1) per request (a burst of N requests costs O(N), not O(N^2): benchmarks/rollout_bench.py).
"""

from __future__ import annotations

import abc
import asyncio
from collections import deque
from dataclasses import dataclass

from torl.rollout.backends.base import Backend, Generation, GenerationRequest


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0

    @property
    def mean_batch_size(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class BatchingBackend(Backend):
    def __init__(self, *, max_batch_size: int = 64, batch_wait_s: float = 0.02, max_wait_s: float = 1.0) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._pending: deque[tuple[GenerationRequest, asyncio.Future]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task | None = None

    @abc.abstractmethod
    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generation]:
        """Generate for all requests in one blocking call (runs in a worker thread); results in input order."""

    async def agenerate(self, request: GenerationRequest) -> Generation:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # what an earlier event loop left (an interrupted run): nobody waits for it
            self._pending.clear()
            self._loop, self._drainer = loop, None
        future = loop.create_future()
        self._pending.append((request, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            start, seen = loop.time(), -1
            while (len(self._pending) < self.max_batch_size and len(self._pending) != seen
                   and loop.time() - start < self.max_wait_s):
                seen = len(self._pending)
                await asyncio.sleep(self.batch_wait_s)
            batch = []
            while self._pending and len(batch) < self.max_batch_size:
                r, f = self._pending.popleft()
                if not f.done():  # not cancelled while it waited
                    batch.append((r, f))
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.requests += len(batch)
            try:
                outputs = await asyncio.to_thread(self.generate_batch, [r for r, _ in batch])
                if len(outputs) != len(batch):
                    raise RuntimeError(f"{type(self).__name__}.generate_batch returned {len(outputs)} results "
                                       f"for {len(batch)} requests")
            except Exception as e:  # noqa: BLE001 - handed to every waiting sample
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
                continue
            for (_, f), out in zip(batch, outputs, strict=True):
                if not f.done():
                    f.set_result(out)
