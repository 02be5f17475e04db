"""Sandbox benchmark: LocalSandbox vs a fresh interpreter per snippet, in the same run (ratios, not absolutes)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from torl.sandbox.http_bench import bench_http
from torl.sandbox.local import LocalSandbox
from torl.sandbox.session_bench import bench_sessions, format_session_rows

SNIPPETS = {
    "trivial": "print(2**100)",
    "sympy": "import sympy; print(sympy.factorint(2**64-1))",
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _latencies(fn, code: str, n: int, desc: str) -> list[float]:
    out = []
    for _ in tqdm(range(n), desc=desc, leave=False, disable=None):
        t = time.perf_counter()
        fn(code)
        out.append(time.perf_counter() - t)
    return out


def _fresh_python(code: str) -> None:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"baseline snippet failed: {proc.stderr.decode()[-300:]}")


def _throughput(fn, code: str, n: int, workers: int) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: fn(code), range(n)))
    return n / (time.perf_counter() - t)


def run_bench(
    *, n: int = 200, n_baseline: int = 30, n_throughput: int = 1000, http: bool = True, http_n: int = 1000,
    http_concurrency: int = 32, pool_size: int | None = None, out: str | Path | None = None,
    sessions: bool = True, idle_sessions: int = 512, start_sessions: int = 256,
) -> dict:
    """Measure and print the table; write JSON to `out` when given. Returns the results. sessions: also the
    interpreter-session rows (`torl.sandbox.session_bench`)."""
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "snippets": SNIPPETS}
    with LocalSandbox(pool_size=pool_size) as sandbox:
        results["pool_size"] = sandbox.pool_size
        results["layers"] = sandbox.layers

        def ours(code: str) -> None:
            r = sandbox.run(code)
            if r.status != "ok":
                raise RuntimeError(f"snippet failed in the sandbox: {r}")

        for _ in range(20):  # warm the pool (first forks fault in pages)
            ours(SNIPPETS["sympy"])
        for name, code in SNIPPETS.items():
            mine = _latencies(ours, code, n, f"local {name}")
            base = _latencies(_fresh_python, code, n_baseline, f"fresh python {name}")
            results[name] = {
                "local_p50_ms": 1e3 * statistics.median(mine),
                "local_p99_ms": 1e3 * _percentile(mine, 0.99),
                "fresh_python_p50_ms": 1e3 * statistics.median(base),
                "fresh_python_p99_ms": 1e3 * _percentile(base, 0.99),
                "speedup_p50": statistics.median(base) / statistics.median(mine),
            }
        code = SNIPPETS["sympy"]
        results["throughput"] = {
            "local_snippets_per_s": _throughput(ours, code, n_throughput, sandbox.pool_size),
            "fresh_python_snippets_per_s": _throughput(_fresh_python, code, n_baseline, os.cpu_count() or 1),
        }
        if http:
            results["http"] = bench_http(sandbox, n=http_n, concurrency=http_concurrency)
        if sessions:
            results["sessions"] = bench_sessions(sandbox, n=n, idle=idle_sessions, start=start_sessions)
    print(format_table(results))
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=2))
        print(f"wrote {out}")
    return results


def format_table(r: dict) -> str:
    rows = [f"LocalSandbox (pool {r['pool_size']}) vs a fresh `python -c` per snippet, {r['machine']['cpus']} CPUs",
            f"{'snippet':<10}{'ours p50':>11}{'ours p99':>11}{'fresh p50':>12}{'fresh p99':>12}{'speed-up':>10}"]
    for name in SNIPPETS:
        x = r[name]
        rows.append(f"{name:<10}{x['local_p50_ms']:>9.2f}ms{x['local_p99_ms']:>9.2f}ms"
                    f"{x['fresh_python_p50_ms']:>10.1f}ms{x['fresh_python_p99_ms']:>10.1f}ms{x['speedup_p50']:>9.1f}x")
    t = r["throughput"]
    rows.append(f"sympy throughput: ours {t['local_snippets_per_s']:.0f}/s, "
                f"fresh python {t['fresh_python_snippets_per_s']:.1f}/s")
    if "http" in r:
        h = r["http"]
        rows.append("HTTP /run_code: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in h.items()))
    if "sessions" in r:
        rows += format_session_rows(r["sessions"])
    return "\n".join(rows)
