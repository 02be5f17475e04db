"""Machinery of the adversarial sandbox suite (tests/sandbox/test_attacks.py): the attack record, the host-side
bait (listeners, a canary process, a secret), snapshots of everything a snippet must not touch, and the checker
that every attack goes through.

An attack's code names host facts through placeholders (`@MARK@`, `@TCP_PORT@`, ...) that `render` replaces with
Python literals. Every file or process an attack tries to create outside its job directory carries its own marker
(`@MARK@`), so the checker can look for exactly those on a machine where other programs write to /tmp as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from torl.sandbox.base import ExecResult
from torl.sandbox.local import LocalSandbox

SLACK_S = 2.0  # every result must arrive within timeout + SLACK_S
SYSVIPC_KINDS = ("shm", "msg", "sem")


# ---------------------------------------------------------------------------------------------------------------
# Attacks
# ---------------------------------------------------------------------------------------------------------------
Check = Callable[[ExecResult], "str | None"]  # returns a problem description, None when fine


@dataclass(frozen=True)
class Attack:
    """One hostile snippet and what the sandbox must answer.

    expect: the acceptable statuses (one, unless the outcome legitimately varies).
    checks: extra conditions on the result (see `stdout_has`, `stderr_has`, ...).
    followup: code run afterwards on every worker; each run must be "ok" and pass `followup_checks`.
    late_s: how long to keep watching for files and processes after the result (for delayed daemons).
    """

    name: str
    code: str
    expect: tuple[str, ...]
    timeout: float = 2.0
    checks: tuple[Check, ...] = ()
    memory_mb: int | None = None
    stdin: str | None = None
    followup: str | None = None
    followup_checks: tuple[Check, ...] = ()
    late_s: float = 0.0
    destructive: bool = False


def stdout_has(text: str) -> Check:
    return lambda r: None if text in r.stdout else f"stdout lacks {text!r}"


def stdout_lacks(text: str) -> Check:
    return lambda r: None if text not in r.stdout else f"stdout contains {text!r}"


def stderr_has(*alternatives: str) -> Check:
    def check(r: ExecResult) -> str | None:
        return None if any(a in r.stderr for a in alternatives) else f"stderr lacks any of {alternatives}"
    return check


def return_code(code: int) -> Check:
    return lambda r: None if r.return_code == code else f"return_code {r.return_code} != {code}"


def is_truncated(r: ExecResult) -> str | None:
    return None if r.truncated and len(r.stdout) + len(r.stderr) < 200_000 else "output not capped"


def stdout_int_at_most(limit: int) -> Check:
    """The last integer printed is <= limit (e.g. how many processes or files the snippet managed to open)."""
    def check(r: ExecResult) -> str | None:
        found = re.findall(r"-?\d+", r.stdout)
        if not found:
            return f"no count in stdout {r.stdout[-200:]!r}"
        return None if int(found[-1]) <= limit else f"count {found[-1]} > {limit}"
    return check


# ---------------------------------------------------------------------------------------------------------------
# The host: bait the snippets try to reach
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Host:
    """Everything outside the sandbox that an attack aims at, and the means to see whether it was hit."""

    base: Path  # a private directory of the test (secret file, unix socket, victims)
    prefix: str = field(default_factory=lambda: f"torlattack-{secrets.token_hex(4)}")
    secret_name: str = "TORL_ATTACK_SECRET"
    secret_value: str = field(default_factory=lambda: f"s3cret-{secrets.token_hex(8)}")
    home: str = field(default_factory=lambda: os.path.expanduser("~"))
    cwd: str = field(default_factory=os.getcwd)
    test_pid: int = field(default_factory=os.getpid)
    server_port: int = 0
    job_root: str = ""

    def __post_init__(self) -> None:
        self.secret_file = self.base / "secret.txt"
        self.secret_file.write_text(self.secret_value)
        self.victim_file = self.base / "victim.txt"
        self.victim_file.write_text("intact")
        self.victim_dir = self.base / "victim_dir"
        self.victim_dir.mkdir()
        (self.victim_dir / "keep.txt").write_text("intact")
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.unix_path = str(self.base / "host.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        self.unix.listen(8)
        self.unix.setblocking(False)
        self.abstract_name = f"{self.prefix}-abstract"
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(8)
        self.abstract.setblocking(False)
        env = dict(os.environ, **{self.secret_name: self.secret_value})
        self.canary = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10**6)"], env=env)

    def close(self) -> None:
        self.canary.kill()
        self.canary.wait()
        for s in (self.tcp, self.udp, self.unix, self.abstract):
            s.close()

    def literals(self, mark: str) -> dict[str, str]:
        return {
            "MARK": repr(mark), "HOME": repr(self.home), "CWD": repr(self.cwd), "JOB_ROOT": repr(self.job_root),
            "SECRET_NAME": repr(self.secret_name), "SECRET_VALUE": repr(self.secret_value),
            "SECRET_FILE": repr(str(self.secret_file)), "VICTIM_FILE": repr(str(self.victim_file)),
            "VICTIM_DIR": repr(str(self.victim_dir)), "TCP_PORT": str(self.tcp.getsockname()[1]),
            "UDP_PORT": str(self.udp.getsockname()[1]), "SERVER_PORT": str(self.server_port),
            "UNIX_PATH": repr(self.unix_path), "ABSTRACT": repr(self.abstract_name),
            "TEST_PID": str(self.test_pid), "CANARY_PID": str(self.canary.pid),
        }

    def render(self, code: str, mark: str) -> str:
        for key, value in self.literals(mark).items():
            code = code.replace(f"@{key}@", value)
        leftover = re.findall(r"@[A-Z_]+@", code)
        assert not leftover, f"unknown placeholders {leftover}"
        return code

    def contacts(self) -> list[str]:
        """Connections or datagrams that reached the host's listeners (drained, so each is reported once)."""
        hits = []
        for name, sock in (("tcp", self.tcp), ("unix", self.unix), ("abstract", self.abstract)):
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.close()
                hits.append(f"{name} listener accepted a connection")
        while True:
            try:
                data = self.udp.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            hits.append(f"udp listener received {data[:40]!r}")
        return hits

    def victims_intact(self) -> list[str]:
        problems = []
        if not self.victim_file.is_file() or self.victim_file.read_text() != "intact":
            problems.append("host victim file was changed or removed")
        keep = self.victim_dir / "keep.txt"
        if not keep.is_file() or keep.read_text() != "intact":
            problems.append("host victim directory was changed or emptied")
        if not self.secret_file.is_file():
            problems.append("host secret file was removed")
        return problems

    def metadata(self) -> dict[str, tuple]:
        """(mode, uid, gid, mtime, xattrs) of the host files a snippet can name but must not change, and of the
        sandbox's job root."""
        meta = {}
        for path in (self.victim_file, self.victim_dir, self.secret_file, Path(self.job_root)):
            with contextlib.suppress(OSError):
                st = os.stat(path)
                meta[str(path)] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, tuple(os.listxattr(path)))
        return meta

    @staticmethod
    def restore_metadata(meta: dict[str, tuple]) -> None:
        for path, (mode, uid, gid, mtime_ns, xattrs) in meta.items():
            with contextlib.suppress(OSError):
                os.chown(path, uid, gid)
                os.chmod(path, mode & 0o7777)
                os.utime(path, ns=(mtime_ns, mtime_ns))
                for name in set(os.listxattr(path)) - set(xattrs):
                    os.removexattr(path, name)


# ---------------------------------------------------------------------------------------------------------------
# Snapshots: what must look the same before and after an attack
# ---------------------------------------------------------------------------------------------------------------
def _listdir(path: str) -> frozenset[str]:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return frozenset()


def _walk(root: str, depth: int = 4) -> frozenset[str]:
    """Relative paths below `root`, at most `depth` levels deep (a hostile tree may be thousands deep)."""
    found, stack = set(), [("", 0)]
    while stack:
        rel, level = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(root, rel)))
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(rel, entry.name)
            found.add(path)
            if level + 1 < depth and entry.is_dir(follow_symlinks=False):
                stack.append((path, level + 1))
    return frozenset(found)


def new_roots(before: frozenset[str], after: frozenset[str]) -> set[str]:
    """The outermost new paths: removing them removes everything new."""
    roots = set()
    for path in after - before:
        parts = path.split(os.sep)
        for i in range(1, len(parts) + 1):
            prefix = os.sep.join(parts[:i])
            if prefix not in before:
                roots.add(prefix)
                break
    return roots


def sysvipc_objects() -> frozenset[tuple[str, str, str]]:
    """(kind, key, id) of every System V IPC object of the host's IPC namespace."""
    objects = set()
    for kind in SYSVIPC_KINDS:
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 2:
                objects.add((kind, fields[0], fields[1]))
    return frozenset(objects)


def remove_sysvipc(objects) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    ctl = {"shm": libc.shmctl, "msg": libc.msgctl, "sem": libc.semctl}
    for kind, _key, ident in objects:
        if kind == "sem":
            ctl[kind](int(ident), 0, 0, None)  # IPC_RMID
        else:
            ctl[kind](int(ident), 0, None)


def posix_mq_exists(name: str) -> bool:
    rt = ctypes.CDLL("librt.so.1", use_errno=True)
    fd = rt.mq_open(("/" + name).encode(), os.O_RDONLY)
    if fd >= 0:
        os.close(fd)
        return True
    return False


def posix_mq_unlink(name: str) -> None:
    ctypes.CDLL("librt.so.1", use_errno=True).mq_unlink(("/" + name).encode())


@dataclass(frozen=True)
class Snapshot:
    """Top-level names of the quiet places (home, /dev/shm), the whole job root tree, and SysV IPC objects."""

    quiet: dict[str, frozenset[str]]
    job_root: frozenset[str]
    sysvipc: frozenset[tuple[str, str, str]]

    @classmethod
    def take(cls, host: Host) -> Snapshot:
        quiet = {p: _listdir(p) for p in (host.home, "/dev/shm")}
        return cls(quiet, _walk(host.job_root), sysvipc_objects())

    def diff(self, later: Snapshot) -> list[str]:
        problems = []
        for path, names in self.quiet.items():
            new = later.quiet[path] - names
            if new:
                problems.append(f"new entries in {path}: {sorted(new)}")
        new = sorted(new_roots(self.job_root, later.job_root))
        if new:
            problems.append(f"left in the job root: {new[:5]}")
        new = later.sysvipc - self.sysvipc
        if new:
            problems.append(f"new System V IPC objects on the host: {sorted(new)}")
        return problems


def marked_paths(host: Host, mark: str) -> list[str]:
    """Paths carrying `mark` anywhere a snippet must not write: the shared directories (top level) and the job
    root (whole tree)."""
    found = []
    for place in ("/tmp", "/var/tmp", "/dev/shm", "/", host.home, host.cwd, str(host.base)):
        found += [os.path.join(place, n) for n in _listdir(place) if mark in n]
    found += [os.path.join(host.job_root, p) for p in _walk(host.job_root) if mark in p]
    return found


def remove_paths(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            if os.path.isdir(path) and not os.path.islink(path):
                subprocess.run(["rm", "-rf", "--", path], check=False)
            else:
                os.unlink(path)


# ---------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------
def worker_infra_pids(sandbox: LocalSandbox) -> set[int]:
    """The workers and their `unshare` parents: the only processes a sandbox may keep between snippets."""
    pids = set()
    for pid in sandbox.worker_pids():
        pids.add(pid)
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(pid).parent()
            if parent is not None and parent.name() == "unshare":
                pids.add(parent.pid)
    return pids


def survivors(sandbox: LocalSandbox, mark: str) -> list[str]:
    """Processes of a finished snippet that are still there: children of a worker, members of a worker's pids
    cgroup, and any process on the host whose command line names the job root (forks of a worker inherit its
    command line) or the attack's marker (what attacks exec)."""
    infra = worker_infra_pids(sandbox)
    found = {}
    for pid in sandbox.worker_pids():
        with contextlib.suppress(psutil.Error):
            for kid in psutil.Process(pid).children(recursive=True):
                found[kid.pid] = "child of a worker"
    for cgroup in getattr(sandbox, "_cgroups", []):
        with contextlib.suppress(OSError):
            for line in Path(cgroup, "cgroup.procs").read_text().split():
                found[int(line)] = f"member of {cgroup}"
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid in infra or proc.pid == os.getpid():
            continue
        cmdline = " ".join(proc.info["cmdline"] or ())
        if sandbox.job_root in cmdline or mark in cmdline:
            found[proc.pid] = f"on the host: {cmdline[:80]!r}"
    return [f"pid {pid} ({why})" for pid, why in sorted(found.items())]


def kill_pids(descriptions: list[str]) -> None:
    for d in descriptions:
        pid = int(d.split()[1])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_for_full_pool(sandbox: LocalSandbox, timeout: float = 60.0) -> set[int]:
    """The worker pids once every slot has a worker (a replaced worker restarts in the background)."""
    deadline = time.monotonic() + timeout
    while len(pids := sandbox.worker_pids()) < sandbox.pool_size and time.monotonic() < deadline:
        time.sleep(0.05)
    return set(pids)


def worker_state(sandbox: LocalSandbox) -> dict[int, tuple]:
    """Scheduling state of each worker that a snippet could try to change for every later snippet."""
    state = {}
    for pid in sandbox.worker_pids():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            state[pid] = (p.nice(), tuple(p.cpu_affinity()), tuple(p.ionice()), p.rlimit(psutil.RLIMIT_NOFILE))
    return state


# ---------------------------------------------------------------------------------------------------------------
# The checker
# ---------------------------------------------------------------------------------------------------------------
def run_attack(sandbox: LocalSandbox, host: Host, attack: Attack) -> tuple[ExecResult, list[str]]:
    """Run one attack and return its result and every problem found (empty when the sandbox held).

    Checks: the status (and the attack's own checks), the time (timeout + SLACK_S), the host's listeners and canary,
    the victims, no new files outside the job directory, no new SysV IPC objects, no surviving process, the same
    healthy workers with the same scheduling state, and a normal `print(1)` afterwards. Cleans up whatever escaped.
    """
    mark = f"{host.prefix}-{attack.name}"
    code = host.render(attack.code, mark)
    workers = wait_for_full_pool(sandbox)
    state = worker_state(sandbox)
    before = Snapshot.take(host)
    meta = host.metadata()
    host.contacts()  # drain anything older than this attack
    start = time.monotonic()
    result = sandbox.run(code, timeout=attack.timeout, memory_mb=attack.memory_mb, stdin=attack.stdin)
    elapsed = time.monotonic() - start
    problems = []
    if result.status not in attack.expect:
        problems.append(f"status {result.status!r} ({result.reason}) not in {attack.expect}")
    for check in attack.checks:
        problem = check(result)
        if problem:
            problems.append(problem)
    if elapsed > attack.timeout + SLACK_S:
        problems.append(f"result after {elapsed:.2f} s > timeout {attack.timeout} + {SLACK_S} s")
    if attack.followup is not None:
        for i in range(2 * sandbox.pool_size):  # the idle queue is FIFO: this reaches every worker
            after = sandbox.run(host.render(attack.followup, mark), timeout=10)
            if after.status != "ok":
                problems.append(f"followup {i}: status {after.status} ({after.reason}) {after.stderr[-300:]!r}")
            problems += [f"followup {i}: {p}" for p in (c(after) for c in attack.followup_checks) if p]
    problems += _aftermath(sandbox, host, attack, mark, workers, state, before, meta)
    return result, problems


def _aftermath(sandbox, host, attack, mark, workers, state, before, meta) -> list[str]:
    problems = []
    if attack.late_s:
        time.sleep(attack.late_s)
    deadline = time.monotonic() + 1.0
    left = survivors(sandbox, mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = survivors(sandbox, mark)
    if left:
        problems.append(f"processes survived the snippet: {left[:5]}")
        kill_pids(left)
    if host.canary.poll() is not None:
        problems.append(f"the host canary process died (exit {host.canary.returncode})")
    problems += host.contacts()
    problems += host.victims_intact()
    changed = {path: (meta.get(path), now) for path, now in host.metadata().items() if meta.get(path) != now}
    if changed:
        problems.append(f"metadata of host files changed (mode, uid, gid, mtime, xattrs): {changed}")
        host.restore_metadata(meta)
    escaped = marked_paths(host, mark)
    if escaped:
        problems.append(f"files created outside the job directory: {escaped}")
        remove_paths(escaped)
    after = Snapshot.take(host)
    problems += before.diff(after)
    remove_paths([os.path.join(host.job_root, p) for p in new_roots(before.job_root, after.job_root)])
    remove_sysvipc(after.sysvipc - before.sysvipc)
    if posix_mq_exists(mark):
        problems.append(f"a POSIX message queue /{mark} was left on the host")
        posix_mq_unlink(mark)
    now = set(sandbox.worker_pids())
    if now != workers:
        problems.append(f"workers changed: {sorted(workers)} -> {sorted(now)} (stats {sandbox.stats})")
    changed = {pid: (state[pid], s) for pid, s in worker_state(sandbox).items() if pid in state and s != state[pid]}
    if changed:
        problems.append(f"worker scheduling state changed (nice, affinity, ionice, nofile): {changed}")
        restore_worker_state(state)
    probe = sandbox.run("print(1)", timeout=10)
    if probe.status != "ok" or probe.stdout != "1\n":
        problems.append(f"the sandbox is unhealthy afterwards: {probe.status} {probe.reason} {probe.stderr[-200:]!r}")
    return problems


def restore_worker_state(state: dict[int, tuple]) -> None:
    for pid, (nice, affinity, ionice, nofile) in state.items():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            p.rlimit(psutil.RLIMIT_NOFILE, nofile)
            p.nice(nice)
            p.cpu_affinity(list(affinity))
            p.ionice(ionice[0], ionice[1] if ionice[0] in (1, 2) else None)
