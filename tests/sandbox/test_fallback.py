"""LocalSandbox without namespaces/Landlock/seccomp (isolation="none", as in a locked-down container): the
worker is a child subreaper and still kills every process a snippet leaves behind. Non-destructive cases only."""

import os
import time

import psutil
import pytest

from torl.sandbox import LocalSandbox

DAEMON = """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
print('parent done')
"""


@pytest.fixture(scope="module")
def bare_sandbox():
    with LocalSandbox(pool_size=1, isolation="none") as sandbox:
        yield sandbox


def _no_descendants(sandbox, wait=2.0):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        kids = [c for pid in sandbox.worker_pids() for c in psutil.Process(pid).children(recursive=True)]
        if not kids:
            return True
        time.sleep(0.05)
    return False


def test_layers_are_reported_off(bare_sandbox):
    layers = bare_sandbox.layers
    assert not layers["pid_namespace"] and not layers["seccomp"] and layers["landlock_abi"] == 0


def test_double_forked_daemon_is_killed(bare_sandbox):
    r = bare_sandbox.run(DAEMON, timeout=5)
    assert r.status == "ok" and r.stdout == "parent done\n"
    assert _no_descendants(bare_sandbox)


def test_timeout_kills_children_too(bare_sandbox):
    code = "import subprocess\nsubprocess.Popen(['sleep', '60'])\nwhile True: pass"
    r = bare_sandbox.run(code, timeout=1)
    assert r.status == "timeout"
    assert _no_descendants(bare_sandbox)
    assert bare_sandbox.run("print(1)").stdout == "1\n"


def test_limits_still_apply(bare_sandbox):
    r = bare_sandbox.run("x = bytearray(1 << 30)", memory_mb=256)
    assert r.status == "error" and "MemoryError" in r.stderr
    r = bare_sandbox.run("import os; print(os.environ.get('HOME') == os.getcwd(), 'PYTEST_CURRENT_TEST' in os.environ)")
    assert r.stdout == "True False\n"
    assert os.environ.get("PYTEST_CURRENT_TEST")  # the caller has it; the snippet must not
