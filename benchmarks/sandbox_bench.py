"""Sandbox benchmark: LocalSandbox vs a fresh `python -c` per snippet, same run. Prints a table, writes JSON.

    python benchmarks/sandbox_bench.py [--out runs/bench/sandbox_bench.json] [-n 200] [--no-http] [--no-sessions]

Targets (2 cores): p50 <= 5 ms (trivial) and <= 8 ms (sympy); >= 30x faster than a fresh interpreter on the
sympy snippet; >= 300 sympy snippets/s with the default pool; >= 150 requests/s through HTTP at concurrency 32.
Interpreter sessions (ratios, same run): a warm-session call <= 0.5 x a stateless call of the same snippet (p50);
fork() <= 2 x a trivial stateless call (p50); 512 idle sessions (numpy + sympy imported) at <= 8 MiB USS each;
opening 256 sessions with one call each <= 1.5 x 256 stateless calls (wall time).
"""

import argparse

from torl.sandbox.bench import run_bench

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--n-baseline", type=int, default=30)
    ap.add_argument("--n-throughput", type=int, default=1000)
    ap.add_argument("--pool-size", type=int, default=None)
    ap.add_argument("--no-http", action="store_true")
    ap.add_argument("--no-sessions", action="store_true")
    ap.add_argument("--idle-sessions", type=int, default=512)
    ap.add_argument("--start-sessions", type=int, default=256)
    ap.add_argument("--out", default="runs/bench/sandbox_bench.json")
    a = ap.parse_args()
    run_bench(n=a.n, n_baseline=a.n_baseline, n_throughput=a.n_throughput, pool_size=a.pool_size,
              http=not a.no_http, out=a.out, sessions=not a.no_sessions, idle_sessions=a.idle_sessions,
              start_sessions=a.start_sessions)
