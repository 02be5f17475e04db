"""`torl sandbox run|doctor|bench|serve`."""

from __future__ import annotations

import argparse
import json
import sys

from torl.errors import UserInputError
from torl.sandbox import make_sandbox
from torl.sandbox.auth import resolve_token
from torl.sandbox.bench import run_bench
from torl.sandbox.doctor import diagnose, format_report
from torl.sandbox.server import serve_local


def register(subparsers) -> None:
    p = subparsers.add_parser("sandbox", help="run untrusted Python: run a file, check isolation, benchmark, serve",
                              description="The code-execution sandbox behind every tool call.")
    p.set_defaults(group_parser=p)
    sub = p.add_subparsers(dest="sandbox_command", metavar="SUBCOMMAND")

    run = sub.add_parser("run", help="run a Python file (or - for stdin) in the sandbox and print the result")
    run.add_argument("file", help="Python file to run, or - to read the code from standard input")
    run.add_argument("--timeout", type=float, default=10.0, help="wall-clock limit in seconds (default 10)")
    run.add_argument("--memory-mb", type=int, default=None, help="address-space limit (default 2048)")
    run.add_argument("--stdin", default=None, metavar="FILE", help="file whose content is the snippet's stdin")
    run.add_argument("--sandbox", default="local", help="'local' (default) or a Sandbox Fusion URL")
    run.add_argument("--json", action="store_true", help="print the ExecResult as JSON")
    run.add_argument("--token-file", default=None, metavar="FILE",
                     help="bearer token of a Sandbox Fusion URL served with --token-file (default: "
                          "$TORL_SANDBOX_TOKEN, else the file named by $TORL_SANDBOX_TOKEN_FILE)")
    run.set_defaults(func=_run)

    doctor = sub.add_parser("doctor", help="show which isolation layers are active here, verified by probes")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.set_defaults(func=_doctor)

    bench = sub.add_parser("bench", help="latency/throughput of LocalSandbox vs a fresh interpreter per snippet")
    bench.add_argument("-n", type=int, default=200, help="snippets per latency measurement (default 200)")
    bench.add_argument("--n-baseline", type=int, default=30, help="fresh-interpreter runs per measurement")
    bench.add_argument("--n-throughput", type=int, default=1000, help="snippets for the throughput measurement")
    bench.add_argument("--pool-size", type=int, default=None, help="workers (default 2 x CPU cores)")
    bench.add_argument("--no-http", action="store_true", help="skip the HTTP server measurement")
    bench.add_argument("--out", default="runs/bench/sandbox_bench.json", help="where to write the JSON results")
    bench.set_defaults(func=_bench)

    serve = sub.add_parser("serve", help="serve the Sandbox Fusion API (POST /run_code, GET /v1/ping) locally",
                           description="Sandbox Fusion's /run_code for language 'python' (other languages answer "
                                       "Failed: no toolchain). Differences: see the README's Sandbox Fusion section.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="bind address (default loopback only); any other needs a token or --trust-network")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--pool-size", type=int, default=None, help="workers (default 2 x CPU cores)")
    serve.add_argument("--memory-limit-mb", type=int, default=2048,
                       help="memory limit of a request whose memory_limit_MB is -1 (or <= 0); Sandbox Fusion sets "
                            "none there (default 2048)")
    serve.add_argument("--max-output-bytes", type=int, default=1 << 20,
                       help="stdout/stderr bytes returned per stream, head and tail beyond it (default 1 MiB, as "
                            "Sandbox Fusion)")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="file holding a bearer token every request but GET /v1/ping must send (Authorization: "
                            "Bearer ...; 401 otherwise); default: $TORL_SANDBOX_TOKEN, else the file named by "
                            "$TORL_SANDBOX_TOKEN_FILE, else no token")
    serve.add_argument("--trust-network", action="store_true",
                       help="allow a non-loopback --host without a token: everyone who can reach the port may "
                            "run code here")
    serve.add_argument("--max-sessions", type=int, default=1024,
                       help="interpreter sessions (/torl/v1/sessions) held at once (default 1024)")
    serve.add_argument("--session-ttl-s", type=float, default=900.0,
                       help="a session idle this long is closed; its next call says it was lost (default 900)")
    serve.set_defaults(func=_serve)


def _run(args: argparse.Namespace) -> int:
    if args.file == "-":
        code = sys.stdin.read()
    else:
        try:
            with open(args.file, encoding="utf-8") as f:
                code = f.read()
        except OSError as e:
            raise UserInputError(f"{args.file}: {e.strerror}") from None
    stdin = None
    if args.stdin:
        try:
            with open(args.stdin, encoding="utf-8") as f:
                stdin = f.read()
        except OSError as e:
            raise UserInputError(f"--stdin {args.stdin}: {e.strerror}") from None
    kwargs = {"token_file": args.token_file} if args.token_file else {}
    if kwargs and args.sandbox == "local":
        raise UserInputError("--token-file is for a Sandbox Fusion URL (--sandbox http://...), not 'local'")
    with make_sandbox(args.sandbox, workers=1, **kwargs) as sandbox:
        result = sandbox.run(code, timeout=args.timeout, memory_mb=args.memory_mb, stdin=stdin)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        detail = f" ({result.reason})" if result.reason else ""
        print(f"[{result.status}{detail}, {result.duration_s * 1e3:.1f} ms"
              f"{', output truncated' if result.truncated else ''}]", file=sys.stderr)
    return 0 if result.ok else 1


def _doctor(args: argparse.Namespace) -> int:
    report = diagnose()
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0 if report["all_probes_passed"] else 1


def _bench(args: argparse.Namespace) -> int:
    run_bench(n=args.n, n_baseline=args.n_baseline, n_throughput=args.n_throughput, pool_size=args.pool_size,
              http=not args.no_http, out=args.out)
    return 0


def _serve(args: argparse.Namespace) -> int:
    if args.memory_limit_mb <= 0:
        raise UserInputError(f"--memory-limit-mb must be > 0, got {args.memory_limit_mb}")
    if args.max_output_bytes <= 0:
        raise UserInputError(f"--max-output-bytes must be > 0, got {args.max_output_bytes}")
    if args.max_sessions < 0 or not args.session_ttl_s > 0:
        raise UserInputError("--max-sessions must be >= 0 and --session-ttl-s > 0")
    serve_local(args.host, args.port, pool_size=args.pool_size, memory_limit_mb=args.memory_limit_mb,
                max_output_bytes=args.max_output_bytes, token=resolve_token(token_file=args.token_file),
                trust_network=args.trust_network, max_sessions=args.max_sessions, session_ttl_s=args.session_ttl_s)
    return 0
