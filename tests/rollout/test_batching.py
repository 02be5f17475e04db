"""BatchingBackend's queue: a burst of requests costs linear event-loop CPU (it rebuilt the whole pending list on
every call: 6.5 s of CPU for 8,192 requests), cancelled requests are skipped, results go to their callers, and a
run interrupted in an earlier event loop leaves nothing behind."""

from __future__ import annotations

import asyncio
import time

from torl.rollout.backends.base import Generation, GenerationRequest
from torl.rollout.backends.batching import BatchingBackend


class Echo(BatchingBackend):
    """Generates instantly: its one token is the request's sample index."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batches: list[list[int]] = []

    def generate_batch(self, requests):
        self.batches.append([r.sample_index for r in requests])
        return [Generation([r.sample_index], [0.0], "eos") for r in requests]


def burst(backend, n: int):
    async def go():
        return await asyncio.gather(*(backend.agenerate(GenerationRequest([1], 1, sample_index=i)) for i in range(n)))

    return asyncio.run(go())


def test_a_burst_costs_linear_cpu():
    backend = Echo(max_batch_size=1024, batch_wait_s=0.0)
    start = time.process_time()
    out = burst(backend, 8192)
    cpu = time.process_time() - start
    assert [g.token_ids[0] for g in out] == list(range(8192))
    assert [len(b) for b in backend.batches] == [1024] * 8
    assert cpu < 2.0, f"{cpu:.2f} s of CPU for a burst of 8,192 requests (quadratic: ~6.5 s)"


def test_cancelled_requests_are_skipped_and_an_interrupted_run_leaves_nothing():
    backend = Echo(max_batch_size=4, batch_wait_s=0.01)

    async def interrupted():
        tasks = [asyncio.create_task(backend.agenerate(GenerationRequest([1], 1, sample_index=i))) for i in range(6)]
        await asyncio.sleep(0)
        tasks[1].cancel()
        tasks[4].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = asyncio.run(interrupted())
    assert [o.token_ids[0] for o in out if isinstance(o, Generation)] == [0, 2, 3, 5]
    assert sorted(i for b in backend.batches for i in b) == [0, 2, 3, 5]

    async def abandoned():  # the loop ends while requests wait: their futures die with it
        for i in range(3):
            asyncio.get_running_loop().create_task(backend.agenerate(GenerationRequest([1], 1, sample_index=100 + i)))
        await asyncio.sleep(0)

    asyncio.run(abandoned())
    backend.batches.clear()
    assert [g.token_ids[0] for g in burst(backend, 3)] == [0, 1, 2]
    assert backend.batches == [[0, 1, 2]]
