"""Two sandboxes on one machine never harm each other (issue 20, part 1): a pool's job root and cgroups are stale
only when no live process holds their flock, whatever the PID numbers say in the PID namespace looking at them.

Both pools of a test share a private temp directory (what /tmp is on a shared machine), so these tests touch no
job root of the other pools on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

from torl.sandbox.local import LocalSandbox, _lock_new

UNSHARE = shutil.which("unshare")

# The second sandbox: started in its own process, it runs one snippet and reports where its pool lived.
SECOND = """
import json
from torl.sandbox.local import LocalSandbox
with LocalSandbox(pool_size=1, preload=()) as sb:
    r = sb.run("print(6 * 7)")
    print(json.dumps({"stdout": r.stdout, "pid": __import__("os").getpid(), "job_root": sb.job_root}), flush=True)
"""

# An owner that dies by SIGKILL (so close() never runs) right after its pool started.
KILLED = """
import json, os, signal
from torl.sandbox.local import LocalSandbox
sb = LocalSandbox(pool_size=1, preload=())
assert sb.run("print(1)").ok
print(json.dumps({"job_root": sb.job_root, "cgroups": sb._cgroups}), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""

# Holds an exclusive flock on argv[1] until killed.
HOLD = """
import fcntl, sys, time
f = open(sys.argv[1])
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


def _pid_namespace_allowed() -> bool:
    if UNSHARE is None:
        return False
    return subprocess.run([UNSHARE, "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


@pytest.fixture
def shared_tmp(monkeypatch):
    """A temp directory shared by this test's pools (this process and its children), o+x as /tmp's job roots
    need for an unprivileged worker uid."""
    path = tempfile.mkdtemp(prefix="torl-test-tmp-")
    os.chmod(path, 0o711)
    monkeypatch.setattr(tempfile, "tempdir", path)
    monkeypatch.setenv("TMPDIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _python(code: str, *, pid_namespace: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code]
    if pid_namespace:
        cmd = [UNSHARE, "--pid", "--fork", "--mount-proc", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=dict(os.environ))


@pytest.mark.parametrize("pid_namespace", [False, True], ids=["same-pid-namespace", "other-pid-namespace"])
def test_a_second_sandbox_leaves_the_first_running(shared_tmp, pid_namespace):
    """The second pool's start-up cleanup must not delete the first's job root or kill its cgroups: in another PID
    namespace the first's PID is invisible, which a PID-liveness rule took for a dead owner."""
    if pid_namespace and not _pid_namespace_allowed():
        pytest.skip("this machine does not allow `unshare --pid --fork`")
    with LocalSandbox(pool_size=1, preload=()) as first:
        assert first.job_root.startswith(shared_tmp + os.sep)
        workers, cgroups = first.worker_pids(), list(first._cgroups)
        assert len(cgroups) == bool(first.plan.cgroup_pids) + bool(first.plan.cgroup_memory)
        assert first.run("print(1)").stdout == "1\n"

        out = _python(SECOND, pid_namespace=pid_namespace)
        assert out.returncode == 0, out.stderr[-2000:]
        second = json.loads(out.stdout)
        assert second["stdout"] == "42\n" and second["job_root"].startswith(shared_tmp + os.sep)
        if pid_namespace:
            assert second["pid"] == 1  # it really ran in a fresh PID namespace

        assert os.path.isdir(first.job_root) and all(os.path.isdir(p) for p in cgroups)
        for i in range(3):
            r = first.run(f"import os; print({i}, sorted(os.listdir('.')) != [])")
            assert (r.status, r.stdout) == ("ok", f"{i} True\n"), r
        assert first.worker_pids() == workers and first.stats.workers_replaced == 0
        assert first.stats.sandbox_error == 0


def test_leftovers_of_a_sigkilled_owner_are_removed(shared_tmp):
    """SIGKILL skips close(): the next pool must still find the job root and cgroups stale (their lock died with the
    owner) and remove them, with a child cgroup (as sessions make) and the process still in it."""
    out = _python(KILLED)
    assert out.returncode == -signal.SIGKILL, out.stderr[-2000:]
    dead = json.loads(out.stdout)
    assert dead["job_root"].startswith(shared_tmp + os.sep) and os.path.isdir(dead["job_root"])
    assert all(os.path.isdir(p) for p in dead["cgroups"])
    lingering = None
    try:
        if dead["cgroups"]:
            child = os.path.join(dead["cgroups"][0], "child")
            os.mkdir(child)
            lingering = subprocess.Popen(["sleep", "120"])
            with open(os.path.join(child, "cgroup.procs"), "w") as f:
                f.write(str(lingering.pid))
        with LocalSandbox(pool_size=1, preload=()) as sandbox:
            assert sandbox.run("print(1)").ok
            assert not os.path.exists(dead["job_root"])
            assert not [p for p in dead["cgroups"] if os.path.exists(p)]
            assert os.path.isdir(sandbox.job_root)
        if lingering is not None:
            assert lingering.wait(timeout=10) == -signal.SIGKILL
    finally:
        if lingering is not None and lingering.poll() is None:
            lingering.kill()
            lingering.wait()


def test_a_new_lock_taken_first_by_another_process_is_given_up(tmp_path):
    """Start-up cleanup elsewhere may lock (then remove) a job root's lock or a cgroup between our mkdir and our
    flock: the creator must then make another, never run on in what that cleanup removes."""
    lock = tmp_path / "owner.lock"
    lock.touch()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert _lock_new(str(lock), os.O_RDWR | os.O_CREAT) is None
    finally:
        holder.kill()
        holder.wait()
    assert _lock_new(str(tmp_path / "gone"), os.O_RDONLY | os.O_DIRECTORY) is None
    fd = _lock_new(str(lock), os.O_RDWR | os.O_CREAT)  # the holder died: its lock went with it
    assert fd is not None
    os.close(fd)
