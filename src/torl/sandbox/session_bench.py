"""Interpreter-session rows of the sandbox benchmark (issue 20 targets), measured as ratios in the same run:

- a call in a warm session vs a stateless call of the same snippet (p50; target ≤ 0.5);
- `fork()` vs a trivial stateless call (p50, each copy closed right after, untimed; target ≤ 2);
- unique memory (USS) per idle session, N sessions held at once, each having imported numpy and sympy (target
  ≤ 8 MiB). Method: USS = Private_Clean + Private_Dirty of /proc/PID/smaps_rollup of each session's interpreter
  (what psutil's memory_full_info().uss sums), its memory cgroup's usage beside it when there is one;
- starting N sessions and running one call in each vs N stateless calls, the same number of threads (wall time;
  target ≤ 1.5).
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

SESSION_SNIPPET = "import sympy; print(sympy.factorint(2**64-1))"
TRIVIAL = "print(2**100)"
IDLE_SETUP = "import numpy, sympy\nx = numpy.arange(10).sum() + sympy.Integer(1)"


def _p50_ms(fn, n: int, desc: str) -> float:
    times = []
    for _ in tqdm(range(n), desc=desc, leave=False, disable=None):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def _ok(result) -> None:
    if result.status != "ok":
        raise RuntimeError(f"snippet failed: {result}")


def uss_bytes(pid: int) -> int:
    """Unique set size of a process: its private pages, clean and dirty (/proc/PID/smaps_rollup)."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:", "Private_Hugetlb:")):
                total += int(line.split()[1]) * 1024
    return total


def bench_sessions(sandbox, *, n: int = 200, idle: int = 512, start: int = 256, threads: int | None = None) -> dict:
    """The session rows (see the module docstring) on `sandbox` (a LocalSandbox)."""
    threads = threads or sandbox.pool_size
    out: dict = {}
    with sandbox.session() as s:
        _ok(s.run(SESSION_SNIPPET))
        warm = _p50_ms(lambda: _ok(s.run(SESSION_SNIPPET)), n, "warm session call")
        stateless = _p50_ms(lambda: _ok(sandbox.run(SESSION_SNIPPET)), n, "stateless call")
        trivial = _p50_ms(lambda: _ok(sandbox.run(TRIVIAL)), n, "trivial stateless call")
        fork_times = []
        for _ in tqdm(range(n), desc="fork()", leave=False, disable=None):
            t = time.perf_counter()
            copy = s.fork()
            fork_times.append(time.perf_counter() - t)
            copy.close()  # not timed
        fork_ms = 1e3 * statistics.median(fork_times)
    out["warm_call"] = {"session_p50_ms": warm, "stateless_p50_ms": stateless, "ratio": warm / stateless,
                        "target": 0.5}
    out["fork"] = {"fork_p50_ms": fork_ms, "trivial_stateless_p50_ms": trivial, "ratio": fork_ms / trivial,
                   "target": 2.0}

    held = []
    try:
        for _ in tqdm(range(idle), desc="idle sessions", leave=False, disable=None):
            session = sandbox.session()
            held.append(session)
            _ok(session.run(IDLE_SETUP))
        time.sleep(0.5)
        uss = [uss_bytes(x.pid) for x in held]
        cgroup = [_cgroup_usage(x) for x in held]
    finally:
        for x in held:
            x.close()
    mib = 1 << 20
    out["idle"] = {"sessions": idle, "uss_mean_mib": statistics.mean(uss) / mib,
                   "uss_p50_mib": statistics.median(uss) / mib, "uss_max_mib": max(uss) / mib,
                   "cgroup_usage_mean_mib": statistics.mean(cgroup) / mib if all(cgroup) else None,
                   "target_mib": 8.0, "method": "Private_Clean + Private_Dirty of /proc/PID/smaps_rollup"}

    def open_and_call(_) -> object:
        session = sandbox.session()
        _ok(session.run(TRIVIAL))
        return session

    stateless_s = sessions_s = close_s = 0.0
    chunk = max(1, start // 4)  # alternate the two in chunks: a shared machine's load hits both alike
    with ThreadPoolExecutor(max_workers=threads) as pool:
        opened: list = []
        for done in range(0, start, chunk):
            k = min(chunk, start - done)
            t = time.perf_counter()
            list(pool.map(lambda _: _ok(sandbox.run(TRIVIAL)), range(k)))
            stateless_s += time.perf_counter() - t
            t = time.perf_counter()
            opened += pool.map(open_and_call, range(k))
            sessions_s += time.perf_counter() - t
        t = time.perf_counter()
        list(pool.map(lambda x: x.close(), opened))
        close_s = time.perf_counter() - t
    out["start"] = {"sessions": start, "threads": threads, "open_and_call_s": sessions_s,
                    "stateless_calls_s": stateless_s, "ratio": sessions_s / stateless_s, "target": 1.5,
                    "close_s": close_s}
    return out


def _cgroup_usage(session) -> int:
    path = session.cgroups.get("memory")
    if not path:
        return 0
    try:
        with open(f"{path}/memory.usage_in_bytes") as f:
            return int(f.read())
    except OSError:
        return 0


def format_session_rows(r: dict) -> list[str]:
    w, f, i, s = r["warm_call"], r["fork"], r["idle"], r["start"]
    return [
        "interpreter sessions (ratios in this run; targets in brackets)",
        f"  warm session call {w['session_p50_ms']:.2f} ms vs stateless {w['stateless_p50_ms']:.2f} ms (sympy "
        f"snippet, p50): {w['ratio']:.2f}x [<= {w['target']}]",
        f"  fork() {f['fork_p50_ms']:.2f} ms vs trivial stateless call {f['trivial_stateless_p50_ms']:.2f} ms "
        f"(p50): {f['ratio']:.2f}x [<= {f['target']}]",
        f"  {i['sessions']} idle sessions (numpy + sympy imported): USS mean {i['uss_mean_mib']:.2f} MiB, "
        f"max {i['uss_max_mib']:.2f} MiB per session [<= {i['target_mib']}] ({i['method']})",
        f"  {s['sessions']} sessions opened + one call each {s['open_and_call_s']:.2f} s vs {s['sessions']} "
        f"stateless calls {s['stateless_calls_s']:.2f} s ({s['threads']} threads): {s['ratio']:.2f}x "
        f"[<= {s['target']}]; closing them {s['close_s']:.2f} s",
    ]
