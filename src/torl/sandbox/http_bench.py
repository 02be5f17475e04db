"""Load generator for a Sandbox Fusion–compatible server: latency percentiles and throughput of `/run_code`."""

from __future__ import annotations

import asyncio
import math
import statistics
import time

import httpx
from tqdm import tqdm

from torl.sandbox.base import Sandbox
from torl.sandbox.server import ServerThread, create_app

__all__ = ["bench_http"]


def bench_http(
    target,
    *,
    n: int = 1000,
    concurrency: int = 32,
    code: str = "print(2**100)",
    expect_stdout: str | None = "1267650600228229401496703205376\n",
    run_timeout: float = 10.0,
    warmup: int = 32,
    progress: bool = False,
) -> dict:
    """POST `code` to `/run_code` n times with `concurrency` requests in flight; returns the measurements.

    target: a base URL ("http://127.0.0.1:8080"), a Starlette/ASGI app, or a Sandbox (served with `create_app`);
    an app or a Sandbox is served from a background thread of this process for the duration of the run.
    A request fails unless it answers HTTP 200 with status "Success" (and `expect_stdout`, when given).
    Returns {n, concurrency, ok, failures, failure_examples, wall_s, requests_per_s, p50_ms, p90_ms, p99_ms,
    max_ms, mean_ms}.
    """
    if n < 1 or concurrency < 1:
        raise ValueError(f"n and concurrency must be >= 1, got n={n}, concurrency={concurrency}")
    if isinstance(target, str):
        return asyncio.run(_bench(target.rstrip("/"), n, concurrency, code, expect_stdout, run_timeout, warmup,
                                  progress))

    app = create_app(target) if isinstance(target, Sandbox) else target
    with ServerThread(app) as server:
        return asyncio.run(_bench(server.url, n, concurrency, code, expect_stdout, run_timeout, warmup, progress))


async def _bench(url: str, n: int, concurrency: int, code: str, expect_stdout: str | None, run_timeout: float,
                 warmup: int, progress: bool) -> dict:
    body = {"code": code, "language": "python", "run_timeout": run_timeout}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    failures: list[str] = []
    bar = None
    if progress:
        bar = tqdm(total=n, desc=f"POST /run_code x{concurrency}", unit="req")

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=run_timeout + 60, trust_env=False) as client:

        async def one(record: bool) -> None:
            t0 = time.perf_counter()
            try:
                r = await client.post("/run_code", json=body)
                problem = _problem(r, expect_stdout)
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}"
            if record:
                latencies.append(time.perf_counter() - t0)
                if problem:
                    failures.append(problem)
                if bar is not None:
                    bar.update(1)

        async def worker(count: int, record: bool) -> None:
            for _ in range(count):
                await one(record)

        async def run(total: int, record: bool) -> None:
            workers = min(concurrency, total)
            share = [total // workers + (i < total % workers) for i in range(workers)]
            await asyncio.gather(*(worker(k, record) for k in share))

        if warmup:
            await run(warmup, record=False)  # opens the connections, warms the sandbox's workers
        start = time.perf_counter()
        await run(n, record=True)
        wall = time.perf_counter() - start
    if bar is not None:
        bar.close()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "n": n,
        "concurrency": concurrency,
        "ok": n - len(failures),
        "failures": len(failures),
        "failure_examples": failures[:5],
        "wall_s": round(wall, 3),
        "requests_per_s": round(n / wall, 1),
        "p50_ms": round(_percentile(ms, 50), 2),
        "p90_ms": round(_percentile(ms, 90), 2),
        "p99_ms": round(_percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def _problem(r: httpx.Response, expect_stdout: str | None) -> str:
    if r.status_code != 200:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    data = r.json()
    if data.get("status") != "Success":
        return f"status {data.get('status')!r}: {data.get('message', '')[:200]}"
    stdout = (data.get("run_result") or {}).get("stdout")
    if expect_stdout is not None and stdout != expect_stdout:
        return f"stdout {stdout!r} != {expect_stdout!r}"
    return ""


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]
