"""LocalSandbox: every status, output capture, limits, the pool's life cycle. Real worker processes."""

import asyncio
import os
import re
import signal
import time

import psutil
import pytest

from torl.errors import UserInputError
from torl.sandbox import ExecResult, LocalSandbox, make_sandbox


def test_ok_with_output(local_sandbox):
    r = local_sandbox.run("print(2**100)")
    assert (r.status, r.return_code, r.stdout, r.stderr) == ("ok", 0, "1267650600228229401496703205376\n", "")
    assert not r.truncated and r.reason == "" and r.duration_s > 0


def test_ok_without_output(local_sandbox):
    r = local_sandbox.run("x = 1")
    assert (r.status, r.stdout, r.stderr, r.return_code) == ("ok", "", "", 0)


def test_output_without_trailing_newline(local_sandbox):
    assert local_sandbox.run("print('a', end='')").stdout == "a"


def test_non_utf8_bytes_are_replaced_not_fatal(local_sandbox):
    r = local_sandbox.run("import sys; sys.stdout.buffer.write(b'\\xff\\xfeabc\\n')")
    assert r.status == "ok" and r.stdout == "\ufffd\ufffdabc\n"


def test_huge_output_keeps_head_and_tail(local_sandbox):
    r = local_sandbox.run("for i in range(200000): print(f'line{i}')")
    assert r.status == "ok" and r.truncated
    assert r.stdout.startswith("line0\nline1\n") and r.stdout.endswith("line199999\n")
    assert "bytes omitted" in r.stdout and len(r.stdout.encode()) < 64 * 1024 + 100


def test_output_then_crash_keeps_both_streams(local_sandbox):
    r = local_sandbox.run("print('partial result 42')\nraise ValueError('boom')")
    assert r.status == "error" and r.return_code == 1
    assert r.stdout == "partial result 42\n"
    assert re.match(r'Traceback \(most recent call last\):\n  File "/\S+\.py", line 2, in <module>\n'
                    r"    raise ValueError\('boom'\)", r.stderr), r.stderr
    assert r.stderr.rstrip().endswith("ValueError: boom")
    assert "_worker.py" not in r.stderr  # the sandbox's own frames are not shown


def test_syntax_error(local_sandbox):
    r = local_sandbox.run("def f(:\n  pass")
    assert r.status == "error" and "SyntaxError" in r.stderr


@pytest.mark.parametrize(("code", "rc", "stderr"), [
    ("import sys; sys.exit(3)", 3, ""),
    ("import sys; sys.exit('bad input')", 1, "bad input\n"),
    ("raise SystemExit(0)", 0, ""),
    ("import os; os._exit(7)", 7, ""),
])
def test_exit_codes(local_sandbox, code, rc, stderr):
    r = local_sandbox.run(code)
    assert r.return_code == rc and r.stderr == stderr
    assert r.status == ("ok" if rc == 0 else "error")
    assert r.reason == ("" if rc == 0 else f"exit code {rc}")


def test_killed_by_signal(local_sandbox):
    r = local_sandbox.run("import os, signal; print('before', flush=True); os.kill(os.getpid(), signal.SIGSEGV)")
    assert r.status == "error" and r.return_code == -signal.SIGSEGV
    assert "SIGSEGV" in r.reason and r.stdout == "before\n"


def test_timeout_keeps_partial_output_and_has_no_return_code(local_sandbox):
    start = time.monotonic()
    r = local_sandbox.run("print('started', flush=True)\nwhile True: pass", timeout=1.0)
    assert r.status == "timeout" and r.return_code is None and r.stdout == "started\n"
    assert "timeout" in r.reason and 1.0 <= r.duration_s < 1.5
    assert time.monotonic() - start < 3.0


def test_cpu_limit_in_threads_counts_as_timeout(local_sandbox):
    # Two spinning threads burn CPU twice as fast as wall time: RLIMIT_CPU (timeout + 1 s) may fire first.
    code = "import threading\nfor _ in range(2): threading.Thread(target=lambda: [0 for _ in iter(int, 1)]).start()"
    r = local_sandbox.run(code, timeout=1.0)
    assert r.status == "timeout" and r.return_code is None


def test_memory_limit_is_an_error_with_reason(local_sandbox):
    r = local_sandbox.run("x = bytearray(1024 * 1024 * 1024)", memory_mb=512)
    assert r.status == "error" and "MemoryError" in r.stderr and r.reason.startswith("out of memory")


def test_memory_limit_default_allows_numpy_work(local_sandbox):
    r = local_sandbox.run("import numpy as np; print(int(np.ones((1000, 1000)).sum()))")
    assert r.status == "ok" and r.stdout == "1000000\n"


def test_stdin_given_and_absent(local_sandbox):
    assert local_sandbox.run("print(input()[::-1])", stdin="abc\n").stdout == "cba\n"
    r = local_sandbox.run("input()")
    assert r.status == "error" and "EOFError" in r.stderr


def test_large_stdin_is_written_without_deadlock(local_sandbox):
    data = "x" * (2 * 1024 * 1024)
    r = local_sandbox.run("import sys; print(len(sys.stdin.read()))", stdin=data, timeout=5)
    assert r.status == "ok" and r.stdout == f"{len(data)}\n"


def test_fresh_job_directory_holds_only_the_script_and_is_removed_afterwards(local_sandbox):
    r = local_sandbox.run("import os; print(os.getcwd()); print(os.listdir('.')); open('f.txt', 'w').write('x')")
    cwd, listing = r.stdout.splitlines()
    assert re.fullmatch(r"\['tmp\w{8}\.py'\]", listing) and cwd.startswith(local_sandbox.job_root)
    assert not os.path.exists(cwd)
    r2 = local_sandbox.run("import os; print(os.listdir('.'))")
    assert re.fullmatch(r"\['tmp\w{8}\.py'\]\n", r2.stdout)


def test_snippet_runs_from_a_real_file_like_python_file_py(local_sandbox):
    """As Sandbox Fusion runs `python /tmp/…/tmpXXXX.py`: __file__, sys.argv[0] and sys.path[0] name the file and
    its directory, __main__ has a script's attributes, and tracebacks quote the source line."""
    r = local_sandbox.run("import os, sys\nprint(__file__ == sys.argv[0] == os.path.abspath(__file__), len(sys.argv))\n"
                          "print(os.path.dirname(__file__) == os.getcwd() == sys.path[0], __spec__, __package__)\n"
                          "print(open(__file__).read().count('\\n'))\n"
                          "x = 1\ny = x / 0\n")
    assert r.status == "error"
    assert r.stdout == "True 1\nTrue None None\n6\n"
    assert re.search(r'File "/[^"]+/tmp\w{8}\.py", line 6, in <module>\n    y = x / 0\n', r.stderr), r.stderr


def test_environment_is_scrubbed(local_sandbox, monkeypatch):
    monkeypatch.setenv("TORL_TEST_SECRET", "hunter2")  # set after the pool started: also check a new pool
    with LocalSandbox(pool_size=1) as fresh:
        r = fresh.run("import os; print(sorted(os.environ)); print(os.environ['HOME'] == os.getcwd())")
    names, home_is_cwd = r.stdout.splitlines()
    assert "TORL_TEST_SECRET" not in names and home_is_cwd == "True"
    assert "hunter2" not in r.stdout


def test_big_integers_print(local_sandbox):
    r = local_sandbox.run("print(len(str(10**5000)))")
    assert r.stdout == "5001\n"


def test_preloaded_modules_are_available(local_sandbox):
    r = local_sandbox.run("import sys; print(all(m in sys.modules for m in ('numpy', 'sympy', 'scipy')))")
    assert r.stdout == "True\n"


def test_state_does_not_leak_between_snippets(local_sandbox):
    local_sandbox.run_many(["import math; math.pi = 3; import os; os.environ['LEAK'] = '1'; LEAKED = 1"] * 4)
    r = local_sandbox.run_many(["import math, os; print(math.pi, os.environ.get('LEAK'), 'LEAKED' in globals())"] * 4)
    assert {x.stdout for x in r} == {"3.141592653589793 None False\n"}


def test_run_many_keeps_order_and_runs_concurrently(local_sandbox):
    codes = [f"import time; time.sleep(0.3); print({i})" for i in range(4)]
    start = time.monotonic()
    results = local_sandbox.run_many(codes)
    elapsed = time.monotonic() - start
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(4)]
    assert elapsed < 4 * 0.3  # 2 workers: about 0.6 s, never the serial 1.2 s


def test_async_forms(local_sandbox):
    async def go():
        one = await local_sandbox.arun("print('a')")
        many = await local_sandbox.arun_many(["print(1)", "print(2)", "1/0"])
        return one, many

    one, many = asyncio.run(go())
    assert one.stdout == "a\n"
    assert [m.status for m in many] == ["ok", "ok", "error"] and many[1].stdout == "2\n"


def test_bad_arguments_raise(local_sandbox):
    with pytest.raises(ValueError, match="timeout"):
        local_sandbox.run("1", timeout=0)
    with pytest.raises(ValueError, match="memory_mb"):
        local_sandbox.run("1", memory_mb=-1)
    with pytest.raises(TypeError):
        local_sandbox.run(b"print(1)")
    with pytest.raises(ValueError, match="stdins"):
        local_sandbox.run_many(["1", "2"], stdins=["x"])


def test_dead_worker_is_replaced():
    with LocalSandbox(pool_size=1) as sandbox:
        [pid] = sandbox.worker_pids()
        os.kill(pid, signal.SIGKILL)
        r = sandbox.run("print(1)")
        assert r.status == "sandbox_error" and "worker" in r.reason
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = sandbox.run("print(1)", timeout=5)
            if r.status == "ok":
                break
        assert r.stdout == "1\n" and sandbox.stats.workers_replaced == 1
        assert sandbox.worker_pids() and sandbox.worker_pids()[0] != pid


def test_close_leaves_no_process_and_no_files():
    sandbox = LocalSandbox(pool_size=2)
    pids = sandbox.worker_pids()
    launchers = [w.proc.pid for w in sandbox._workers.values()]
    assert len(pids) == 2 and sandbox.run("print(1)").ok
    sandbox.close()
    for pid in pids + launchers:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(sandbox.job_root)
    with pytest.raises(RuntimeError, match="closed"):
        sandbox.run("print(1)")


def test_exec_result_validates_and_round_trips():
    with pytest.raises(ValueError, match="status"):
        ExecResult("fine")
    r = ExecResult("timeout", stdout="a", reason="wall-clock timeout after 1 s")
    assert ExecResult.from_dict(r.to_dict()) == r


def test_make_sandbox_rejects_unknown_specs():
    with pytest.raises(UserInputError, match="local"):
        make_sandbox("docker")

