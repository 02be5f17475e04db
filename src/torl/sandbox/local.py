"""LocalSandbox: a pool of pre-warmed, isolated fork-server workers (the embedded default executor).

Each worker (`_worker.py`) starts once — inside fresh pid/net/mount namespaces when the machine allows — and
pre-imports numpy/sympy/scipy. Per snippet it forks a child with rlimits, a scrubbed environment, a fresh job
directory, Landlock and seccomp, so a snippet costs a fork (milliseconds) instead of an interpreter start (~250 ms
with sympy). `torl sandbox doctor` shows which layers are active on this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import secrets
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from torl.sandbox.base import ExecResult, Sandbox, SessionError, check_call
from torl.sandbox.isolation import IsolationPlan, detect, read_only_paths
from torl.sandbox.sessions import LocalSession, SessionManager

log = logging.getLogger(__name__)

DEFAULT_PRELOAD: tuple[str, ...] = ("math", "fractions", "itertools", "numpy", "sympy", "scipy")
WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))
FETCH_GRACE_S = 5.0  # as _worker.FETCH_GRACE_S: the job process reads `fetch_files` back after the timeout
# A pool owns its job root (`<tmp>/torl-sandbox-*`) and cgroups (`torl-sandbox-*`) by holding an exclusive flock on
# the job root's OWNER_LOCK file and on each cgroup directory; the kernel drops it when the owner dies, however it
# dies. Start-up cleanup removes only what it can lock itself, never by PID (PIDs differ across PID namespaces).
POOL_PREFIX = "torl-sandbox-"
OWNER_LOCK = "owner.lock"
# The whole environment a worker (and so a snippet) sees. Nothing is inherited from the caller.
SAFE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}


@dataclass
class SandboxStats:
    runs: int = 0
    ok: int = 0
    error: int = 0
    timeout: int = 0
    sandbox_error: int = 0
    workers_replaced: int = 0


class WorkerDied(Exception):
    pass


class _Worker:
    """Parent-side handle of one fork-server worker process."""

    def __init__(self, slot: int, cmd: list[str], log_path: str) -> None:
        self.slot = slot
        self.log_path = log_path
        with open(log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file, env=SAFE_ENV,
                start_new_session=True, close_fds=True,
            )
        self._buf = b""
        self.info: dict = {}

    def wait_ready(self, timeout: float) -> dict:
        self.info = self._read_reply(time.monotonic() + timeout)
        if not self.info.get("ready"):
            raise WorkerDied(f"unexpected first message {self.info!r}")
        return self.info

    def request(self, req: dict, wait_s: float) -> dict:
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerDied(f"cannot send to worker: {e}") from None
        return self._read_reply(time.monotonic() + wait_s)

    def _read_reply(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerDied("worker did not answer in time")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise WorkerDied(f"worker exited (code {self.proc.poll()}); log: {self.log_tail()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def log_tail(self, n: int = 400) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:].strip() or "(empty)"
        except OSError:
            return "(no log)"

    def host_pid(self) -> int | None:
        """Host pid of the Python worker (the child of `unshare` when namespaces are used)."""
        if self.proc.poll() is not None:
            return None
        pid = self.info.get("pid")
        if pid == 1 or self.info.get("pid_namespace"):
            try:
                kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            except OSError:
                return None
            return int(kids[0]) if kids else None
        return self.proc.pid

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("sandbox worker %d did not die after SIGKILL", self.proc.pid)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def stop(self, grace: float = 2.0) -> None:
        """Ask the worker to exit (EOF on its input), kill it if it does not."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


class LocalSandbox(Sandbox):
    """A pool of isolated fork-server workers. Snippets run as `python tmpXXXX.py` would, from a file in a fresh
    job directory (`__file__`, `sys.argv[0]` and tracebacks quote it).

    Args:
        pool_size: number of workers (snippets run at once); default 2 × CPU cores, at most 32.
        preload: modules every worker imports once, so snippets get them for free.
        memory_mb: address-space limit per snippet (RLIMIT_AS) when a call does not give one.
        output_cap: bytes kept per stream (head and tail); beyond it `truncated` is set.
        isolation: "auto" (use every layer that works, warn about the rest), "strict" (fail if one is
            missing) or "none" (rlimits, scrubbed environment and a fresh directory only).
        file_size_mb, open_files, max_processes: RLIMIT_FSIZE, RLIMIT_NOFILE, and the per-snippet process cap
            (pids cgroup, or RLIMIT_NPROC under a dedicated uid).
        disk_mb, disk_inodes: size of the private tmpfs that holds a worker's job directories (when mount
            namespaces work): what one snippet can write.
        fork_per_request: serve each snippet from a fresh fork of the pristine worker, so no code or output of
            one snippet is left in the memory the next one inherits. Costs one extra fork per snippet (about a
            third of the throughput); worth it when snippets come from different tenants (`torl sandbox serve`
            turns it on), not when they all come from one policy being trained (the default: off).
        uid_base: first uid of the dedicated unprivileged uids (root only, one per worker).
        grace_s: how long past a snippet's timeout the parent waits before declaring its worker dead.
        max_sessions, session_ttl_s: at most this many interpreter sessions (`session()`) at once; a session idle
            for longer than the TTL is closed (its next call says it was lost).
    """

    runs_jobs = True

    def __init__(
        self,
        pool_size: int | None = None,
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        memory_mb: int = 2048,
        output_cap: int = 64 * 1024,
        isolation: str = "auto",
        file_size_mb: int = 16,
        open_files: int = 64,
        max_processes: int = 64,
        disk_mb: int = 64,
        disk_inodes: int = 8192,
        fork_per_request: bool = False,
        uid_base: int = 61000,
        grace_s: float = 5.0,
        start_timeout: float = 120.0,
        python: str = sys.executable,
        max_sessions: int = 1024,
        session_ttl_s: float = 900.0,
    ) -> None:
        if pool_size is None:
            pool_size = min(32, 2 * (os.cpu_count() or 1))
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        if memory_mb <= 0:
            raise ValueError(f"memory_mb must be > 0, got {memory_mb}")
        self.pool_size = pool_size
        self.output_cap = output_cap
        self.max_concurrency = pool_size
        self.fork_per_request = fork_per_request
        self.memory_mb = memory_mb
        self.grace_s = grace_s
        self.start_timeout = start_timeout
        self.plan: IsolationPlan = detect(isolation)
        _remove_stale(self.plan)
        self.job_root, job_root_lock = _own_job_root()
        self._locks: dict[str, int] = {self.job_root: job_root_lock}  # what this pool owns → its flocked fd
        self._python = python
        self.max_sessions, self.session_ttl_s = max_sessions, session_ttl_s
        self._sessions: SessionManager | None = None
        self._base_cfg = {
            "preload": list(preload),
            "memory_mb": memory_mb,
            "output_cap": output_cap,
            "file_size_mb": file_size_mb,
            "open_files": open_files,
            "max_processes": max_processes,
            "landlock_abi": self.plan.landlock_abi,
            "seccomp": self.plan.seccomp,
            "drop_caps": self.plan.drop_capabilities,
            "disk_mb": disk_mb,
            "disk_inodes": disk_inodes,
            "fork_per_request": fork_per_request,
            "read_paths": read_only_paths() + (["/proc"] if self.plan.namespaces else []),
            "env": SAFE_ENV,
        }
        self._uid_base = uid_base if self.plan.unprivileged_uid else None
        self._cgroups: list[str] = []
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.stats = SandboxStats()
        self._executor = ThreadPoolExecutor(max_workers=pool_size + 4, thread_name_prefix="torl-sandbox")
        self._finalizer = weakref.finalize(self, _shutdown, self._workers, self.job_root, self._cgroups, self._locks)
        started = [self._spawn(slot) for slot in range(pool_size)]
        errors = []
        for worker in started:
            try:
                self._check_ready(worker)
            except WorkerDied as e:
                errors.append(str(e))
        if errors:
            self.close()
            raise RuntimeError(f"LocalSandbox: {len(errors)} worker(s) failed to start: {errors[0]}")

    # -- workers -------------------------------------------------------------------------------------------
    def _spawn(self, slot: int) -> _Worker:
        cfg = dict(self._base_cfg, job_root=os.path.join(self.job_root, f"w{slot}"))
        if self._uid_base is not None:
            cfg["run_as_uid"] = self._uid_base + slot
        cfg["cgroups"] = []
        if self.plan.cgroup_pids:
            cfg["cgroups"].append(self._make_cgroup(self.plan.cgroup_pids, slot, "pids.max", self._base_cfg["max_processes"]))
        if self.plan.cgroup_memory:
            cfg["memory_cgroup"] = self._make_cgroup(self.plan.cgroup_memory, slot, None, None)
            cfg["cgroups"].append(cfg["memory_cgroup"])
        cmd = self.plan.worker_command(self._python, WORKER_SCRIPT, json.dumps(cfg))
        worker = _Worker(slot, cmd, os.path.join(self.job_root, f"w{slot}.log"))
        with self._lock:
            self._workers[slot] = worker
        return worker

    def _check_ready(self, worker: _Worker) -> None:
        try:
            info = worker.wait_ready(self.start_timeout)
        except (WorkerDied, json.JSONDecodeError) as e:
            worker.kill()
            raise WorkerDied(f"worker {worker.slot}: {e}; log: {worker.log_tail()}") from None
        for warning in info.get("warnings", []):
            log.warning("sandbox worker %d: %s", worker.slot, warning)
        self._idle.put(worker)

    def _make_cgroup(self, root: str, slot: int, limit_file: str | None, value) -> str:
        """The cgroup of `slot` under `root`: made and flocked on first use, reused by the slot's successors."""
        suffix = f"-w{slot}"
        path = next((p for p in self._cgroups if os.path.dirname(p) == root and p.endswith(suffix)), None)
        if path is None:
            while True:
                path = os.path.join(root, f"{POOL_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{suffix}")
                os.mkdir(path)
                fd = _lock_new(path, os.O_RDONLY | os.O_DIRECTORY)
                if fd is not None:
                    break
            self._locks[path] = fd
            self._cgroups.append(path)
        if limit_file:
            with open(os.path.join(path, limit_file), "w") as f:
                f.write(str(value))
        return path

    def _replace(self, worker: _Worker, why: str) -> None:
        """Kill a broken worker and start its successor in the background."""
        log.warning("sandbox worker %d replaced: %s", worker.slot, why)
        worker.kill()
        self.stats.workers_replaced += 1
        if self._closed:
            return

        def respawn() -> None:
            try:
                self._check_ready(self._spawn(worker.slot))
            except Exception as e:  # keep the pool usable with one worker fewer; later calls report it
                log.error("sandbox worker %d could not be restarted: %s", worker.slot, e)
                with self._lock:
                    self._workers.pop(worker.slot, None)

        threading.Thread(target=respawn, name=f"torl-sandbox-respawn-{worker.slot}", daemon=True).start()

    def worker_pids(self) -> list[int]:
        """Host pids of the Python worker processes (for monitoring and tests)."""
        with self._lock:
            workers = list(self._workers.values())
        return [pid for pid in (w.host_pid() for w in workers) if pid is not None]

    @property
    def layers(self) -> dict:
        """The isolation layers in use (what `torl sandbox doctor` reports)."""
        return {
            "pid_namespace": self.plan.namespaces,
            "net_namespace": self.plan.namespaces,
            "mount_namespace_private_proc": self.plan.namespaces,
            "user_namespace": self.plan.user_namespace,
            "landlock_abi": self.plan.landlock_abi,
            "landlock_tcp": self.plan.landlock_abi >= 4,
            "landlock_signal_scope": self.plan.landlock_abi >= 6,
            "seccomp": self.plan.seccomp,
            "unprivileged_uid": self.plan.unprivileged_uid,
            "capabilities_dropped": self.plan.drop_capabilities,
            "cgroup_pids": bool(self.plan.cgroup_pids),
            "cgroup_memory": bool(self.plan.cgroup_memory),
            "ipc_namespace": self.plan.namespaces,
            "tmpfs_job_dirs": all(w.info.get("tmpfs_job_dirs") for w in list(self._workers.values())),
            "fresh_fork_per_request": bool(self._base_cfg["fork_per_request"]),
            "rlimits": True,
            "scrubbed_environment": True,
            "non_dumpable_workers": True,
        }

    # -- running -------------------------------------------------------------------------------------------
    def run(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None,
        files: dict[str, str] | None = None, fetch_files: Sequence[str] | None = None, output_cap: int | None = None,
    ) -> ExecResult:
        """Run one snippet (see `Sandbox.run`); beyond it, for `torl sandbox serve`:

        files: {path: base64 content} written before the snippet starts (paths joined onto the job directory;
            absolute ones land in a private copy of their directory, never on the host). A file that cannot be
            written makes the result a sandbox_error.
        fetch_files: paths read back after the snippet ended, timed out or crashed; `extra["files"]` maps each
            one that exists to its base64 content.
        output_cap: bytes kept per stream for this call (default: the pool's `output_cap`).
        """
        check_call(code, timeout, memory_mb)
        if output_cap is not None and output_cap <= 0:
            raise ValueError(f"output_cap must be > 0 bytes, got {output_cap}")
        if self._closed:
            raise RuntimeError("LocalSandbox is closed")
        start = time.monotonic()
        worker = self._acquire(deadline=start + timeout + self.start_timeout)
        if worker is None:
            return self._count(ExecResult("sandbox_error", reason="no sandbox worker is available",
                                          duration_s=time.monotonic() - start))
        req = {"code": code, "timeout": float(timeout), "memory_mb": memory_mb or self.memory_mb, "stdin": stdin}
        if files:
            req["files"] = dict(files)
        if fetch_files:
            req["fetch_files"] = list(fetch_files)
        if output_cap:
            req["output_cap"] = int(output_cap)
        wait_s = timeout + self.grace_s + (FETCH_GRACE_S if fetch_files else 0.0)
        try:
            reply = worker.request(req, wait_s=wait_s)
        except (WorkerDied, json.JSONDecodeError) as e:
            self._replace(worker, str(e))
            return self._count(ExecResult("sandbox_error", reason=f"sandbox worker failed: {e}",
                                          duration_s=time.monotonic() - start))
        self._idle.put(worker)
        result = ExecResult.from_dict(reply)
        if "files" in reply:
            result.extra["files"] = reply["files"]
        return self._count(result)

    async def arun(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None,
        files: dict[str, str] | None = None, fetch_files: Sequence[str] | None = None, output_cap: int | None = None,
    ) -> ExecResult:
        import asyncio
        import functools

        call = functools.partial(self.run, code, timeout=timeout, memory_mb=memory_mb, stdin=stdin, files=files,
                                 fetch_files=fetch_files, output_cap=output_cap)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def session(self, *, memory_mb: int | None = None) -> LocalSession:
        """A stateful interpreter session (see `torl.sandbox.sessions`): a fork of the session zygote (started on
        first use) that keeps its globals between calls. memory_mb: its limit until a call gives another."""
        if self._closed:
            raise SessionError("LocalSandbox is closed")
        with self._lock:
            if self._sessions is None:
                self._sessions = SessionManager(self, max_sessions=self.max_sessions, ttl_s=self.session_ttl_s)
        return self._sessions.open(memory_mb)

    def _acquire(self, deadline: float) -> _Worker | None:
        while True:
            with self._lock:
                if not self._workers:
                    return None
            try:
                return self._idle.get(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline or self._closed:
                    return None

    def _count(self, result: ExecResult) -> ExecResult:
        with self._lock:
            self.stats.runs += 1
            setattr(self.stats, result.status, getattr(self.stats, result.status) + 1)
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._sessions is not None:
            self._sessions.close()
        self._finalizer()


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # BlockingIOError: a live process holds it
        return False
    return True


def _lock_new(lock_path: str, flags: int) -> int | None:
    """Flock `lock_path` (just created by us); None when a start-up cleanup elsewhere took it first (that one then
    removes what it locks: make another)."""
    try:
        fd = os.open(lock_path, flags | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # a cgroup that cleanup locked and removed between our mkdir and this open
        return None
    try:
        if _try_lock(fd) and os.path.samestat(os.fstat(fd), os.stat(lock_path)):
            return fd
    except FileNotFoundError:  # locked, but removed by that cleanup before our lock
        pass
    os.close(fd)
    return None


def _own_job_root() -> tuple[str, int]:
    """A fresh job root under the temp directory and the fd that holds its owner lock."""
    while True:
        root = tempfile.mkdtemp(prefix=f"{POOL_PREFIX}{os.getpid()}-")
        os.chmod(root, 0o711)
        fd = _lock_new(os.path.join(root, OWNER_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW)
        if fd is not None:
            return root, fd


def _remove_stale(plan: IsolationPlan) -> None:
    """Remove job roots and cgroups left by pools whose process died without `close()` (SIGKILL, OOM kill).

    Stale means: we can take the exclusive flock its owner held for its whole life. A live owner, in any PID
    namespace, still holds it: its job root and cgroups are never touched. A job root without an owner lock (being
    created, or left by a torl before this rule) or of another user is not ours to judge and stays.
    """
    tmp = tempfile.gettempdir()
    for name in _listdir(tmp):
        path = os.path.join(tmp, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not name.startswith(POOL_PREFIX) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            continue
        fd = _lock_stale(os.path.join(path, OWNER_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        if fd is not None:
            try:
                shutil.rmtree(path, ignore_errors=True)
            finally:
                os.close(fd)
    for root in (plan.cgroup_pids, plan.cgroup_memory):
        for name in _listdir(root) if root else ():
            path = os.path.join(root, name)
            if name.startswith(POOL_PREFIX) and (fd := _lock_stale(path, os.O_RDONLY | os.O_DIRECTORY)) is not None:
                try:
                    _remove_cgroup(path)
                finally:
                    os.close(fd)


def _lock_stale(lock_path: str, flags: int) -> int | None:
    """The fd of `lock_path`, flocked by us: its owner is dead. None when a live owner holds it or it cannot be
    opened."""
    try:
        fd = os.open(lock_path, flags | os.O_CLOEXEC)
    except OSError:
        return None
    if _try_lock(fd):
        return fd
    os.close(fd)
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _kill_cgroup(path: str) -> None:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
    except OSError:
        pass


def _remove_cgroup(path: str) -> None:
    """Kill what is left in a cgroup (only possible without a pid namespace) and remove it, child cgroups first
    (the directories in it, e.g. per-session cgroups)."""
    for child in _listdir(path):
        if os.path.isdir(os.path.join(path, child)):
            _remove_cgroup(os.path.join(path, child))
    _kill_cgroup(path)
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:  # still has (dying) members
            time.sleep(0.02)


def _shutdown(workers: dict[int, _Worker], job_root: str, cgroups: list[str], locks: dict[str, int]) -> None:
    """Stop every worker, remove the job directories and the cgroups, then drop their owner locks. Leaves no
    process behind."""
    for worker in list(workers.values()):
        worker.stop()
    workers.clear()
    shutil.rmtree(job_root, ignore_errors=True)
    for path in cgroups:
        _remove_cgroup(path)
    for fd in locks.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    locks.clear()
