"""Interpreter sessions of a LocalSandbox: one long-lived, isolated interpreter per session, forked from a zygote.

The zygote is one more fork-server worker (`_worker.py` with {"sessions": true}, in its own namespaces): pristine,
with the preloaded modules, it only forks. Each session's interpreter gets the isolation of a stateless snippet
(scrubbed environment, rlimits, its own directory, dropped capabilities or a dedicated uid, Landlock, seccomp) and,
where cgroups are writable, its own pids and memory cgroup. This process talks to every interpreter directly over
its own control socket and pipes, so a call needs no fork and no worker, and watches each call: wall-clock
timeout (the interpreter is killed: the session is lost), RLIMIT_AS / RLIMIT_CPU and the memory cgroup re-armed per
call, output caps, and everything the call started killed when it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import resource
import secrets
import select
import selectors
import signal
import socket
import subprocess
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torl.sandbox._worker import Capture
from torl.sandbox.base import ExecResult, Session, SessionError, check_call, lost_result

log = logging.getLogger(__name__)

CLK_TCK = os.sysconf("SC_CLK_TCK")
WORKER_SCRIPT = str(Path(__file__).with_name("_worker.py"))



def kill_until_gone(pids_of) -> bool:
    """SIGKILL the processes `pids_of()` lists until it lists none (new ones may appear meanwhile: double forks,
    daemons); False when some still survive after 1,000 rounds."""
    for _ in range(1000):
        pids = pids_of()
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.0005)
    return False

class _Zygote:
    """Parent-side handle of the session zygote (its stdin/stdout is a unix socket: replies carry fds)."""

    def __init__(self, cmd: list[str], log_path: str, env: dict, start_timeout: float) -> None:
        self.sock, child = socket.socketpair()
        self.log_path = log_path
        with open(log_path, "ab") as log_file, child:
            self.proc = subprocess.Popen(cmd, stdin=child, stdout=child, stderr=log_file, env=env,
                                         start_new_session=True, close_fds=True)
        self._buf = b""
        self.lock = threading.Lock()
        self.info, _ = self._reply(time.monotonic() + start_timeout)
        if not self.info.get("ready"):
            self.kill()
            raise SessionError(f"session zygote failed to start: {self.info}")

    def request(self, req: dict, timeout: float = 30.0) -> tuple[dict, list[int]]:
        with self.lock:
            return self.request_locked(req, timeout)

    def request_locked(self, req: dict, timeout: float = 30.0) -> tuple[dict, list[int]]:
        """`request` with `self.lock` held by the caller. Any failure after the request was sent (no answer in
        time, a broken reply) kills the zygote: its later replies would answer the wrong requests. The next
        `SessionManager._zygote()` starts a fresh one."""
        try:
            self.sock.sendall((json.dumps(req) + "\n").encode())
        except OSError as e:
            self.kill()
            raise SessionError(f"session zygote is gone: {e}") from None
        try:
            return self._reply(time.monotonic() + timeout)
        except BaseException as e:
            log.warning("session zygote killed: no valid answer to %s: %s", req.get("op"), e)
            self.kill()
            if isinstance(e, SessionError):
                raise
            raise SessionError(f"session zygote answered nonsense: {e}") from None

    def _reply(self, deadline: float) -> tuple[dict, list[int]]:
        fds: list[int] = []
        try:
            while b"\n" not in self._buf:
                self.sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data, got, _, _ = socket.recv_fds(self.sock, 1 << 16, 8)
                except (TimeoutError, OSError) as e:
                    raise SessionError(f"session zygote did not answer: {e}; log: {self.log_tail()}") from None
                fds += got
                if not data:
                    raise SessionError(f"session zygote exited (code {self.proc.poll()}); log: {self.log_tail()}")
                self._buf += data
            line, self._buf = self._buf.split(b"\n", 1)
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ValueError(f"not an object: {line[:100]!r}")
            return reply, fds
        except BaseException:
            for fd in fds:  # the fds of a reply that is dropped
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise

    def alive(self) -> bool:
        return self.proc.poll() is None

    def host_pid(self) -> int | None:
        """Host pid of the Python zygote (the child of `unshare` when namespaces are used)."""
        if not self.alive():
            return None
        if self.info.get("pid") == 1 or self.info.get("pid_namespace"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
            except OSError:
                return None
            return int(kids[0]) if kids else None
        return self.proc.pid

    def log_tail(self, n: int = 400) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-n:].strip() or "(empty)"
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()


class _Family:
    """The sessions that share one session directory (a session and its forks): removed when the last ends."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.members = 1


class SessionManager:
    """The sessions of one LocalSandbox: the zygote (started on first use), the cap, the idle TTL, the cgroups."""

    def __init__(self, sandbox, *, max_sessions: int, ttl_s: float) -> None:
        self.sandbox = sandbox
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.lock = threading.Lock()
        self.sessions: dict[str, LocalSession] = {}
        self.host_pids: set[int] = set()
        self.zygote: _Zygote | None = None
        self.cgroup_parents: list[tuple[str, str]] = []  # (kind, parent directory)
        self.counter = itertools.count()
        self.closed = False
        self._warned_signals = False
        self.executor = ThreadPoolExecutor(max_workers=64, thread_name_prefix="torl-session")
        self._reaper = threading.Thread(target=_reap_idle, args=(weakref.ref(self),), name="torl-session-ttl",
                                        daemon=True)
        self._reaper.start()

    # -- zygote and cgroups ------------------------------------------------------------------------------------
    def _zygote(self) -> _Zygote:
        with self.lock:
            if self.closed:
                raise SessionError("LocalSandbox is closed")
            if self.zygote is not None and self.zygote.alive():
                return self.zygote
            if self.zygote is not None:
                log.warning("session zygote died (%s); starting a new one", self.zygote.log_tail())
                self.zygote.kill()
            sb = self.sandbox
            cfg = dict(sb._base_cfg, job_root=os.path.join(sb.job_root, "sessions"), sessions=True, cgroups=[],
                       disk_mb=max(256, sb._base_cfg["disk_mb"]), disk_inodes=max(65536, sb._base_cfg["disk_inodes"]))
            if sb._uid_base is not None:
                cfg["run_as_uid"] = sb._uid_base + sb.pool_size
            if not self.cgroup_parents:
                if sb.plan.cgroup_pids:
                    self.cgroup_parents.append(("pids", sb._make_cgroup(sb.plan.cgroup_pids, "sessions", None, None)))
                if sb.plan.cgroup_memory:
                    self.cgroup_parents.append(
                        ("memory", sb._make_cgroup(sb.plan.cgroup_memory, "sessions", None, None)))
                _enable_v2_controllers(self.cgroup_parents)
            if sb.plan.landlock_abi < 6 and not self._warned_signals:
                self._warned_signals = True
                log.warning("interpreter sessions without signal scoping (Landlock ABI %d < 6, Linux < 6.12): "
                            "sessions share a PID namespace and a uid, so code in one session can signal (kill) "
                            "the interpreters of the others", sb.plan.landlock_abi)
            cmd = sb.plan.worker_command(sb._python, WORKER_SCRIPT, json.dumps(cfg))
            self.zygote = _Zygote(cmd, os.path.join(sb.job_root, "sessions.log"), cfg["env"], sb.start_timeout)
            return self.zygote

    def _make_cgroups(self) -> dict[str, str]:
        made: dict[str, str] = {}
        n = next(self.counter)
        try:
            for kind, parent in self.cgroup_parents:  # on cgroup v2 both kinds are one cgroup: made once
                path = os.path.join(parent, f"s{n}")
                if path not in made.values():
                    os.mkdir(path)
                made[kind] = path
                if kind == "pids":
                    with open(os.path.join(path, "pids.max"), "w") as f:
                        f.write(str(self.sandbox._base_cfg["max_processes"]))
        except OSError:
            _remove_cgroups(made)
            raise
        return made

    # -- sessions ----------------------------------------------------------------------------------------------
    def open(self, memory_mb: int | None = None) -> LocalSession:
        with self.lock:
            if len(self.sessions) >= self.max_sessions:
                raise SessionError(f"this sandbox holds at most {self.max_sessions} sessions (max_sessions); "
                                   "close some first")
        zygote = self._zygote()
        cgroups = self._make_cgroups()
        req = {"op": "open", "memory_mb": memory_mb or self.sandbox.memory_mb,
               "cgroups": list(dict.fromkeys(cgroups.values()))}
        pid, fds = None, []
        try:
            with zygote.lock:
                reply, fds = zygote.request_locked(req, timeout=self.sandbox.start_timeout)
                if reply.get("ok") and len(fds) == 4:
                    # a session interpreter from now on: `_kill_orphans` (under this lock) must not take it for
                    # an orphan of a dead session
                    pid = _pidfd_pid(fds[3])
                    with self.lock:
                        self.host_pids.add(pid)
        except BaseException:
            for fd in fds:
                os.close(fd)
            _remove_cgroups(cgroups)
            raise
        if pid is None:
            for fd in fds:
                os.close(fd)
            _remove_cgroups(cgroups)
            raise SessionError(f"the zygote could not open a session: {reply.get('error', reply)}")
        try:
            session = self._adopt(fds, cgroups, _Family(reply["root"]), parent_pid=None,
                                  zygote_pid=reply.get("pid"))
        except BaseException:
            with self.lock:
                self.host_pids.discard(pid)
            raise
        return session

    def kill_orphans(self) -> None:
        """Without cgroups: kill the processes that sessions started and that outlived their interpreter (they
        become the zygote's children): every descendant of the zygote outside the trees of live interpreters."""
        zygote = self.zygote
        if zygote is None or not zygote.alive():
            return
        with zygote.lock:
            host = zygote.host_pid()
            if host is None:
                return
            def orphans() -> list[int]:
                with self.lock:
                    skip = set(self.host_pids)
                return _descendants(host, skip)

            kill_until_gone(orphans)

    def _adopt(self, fds: list[int], cgroups: dict[str, str], family: _Family, parent_pid: int | None,
               zygote_pid: int | None = None, soft_limits: bool | None = None) -> LocalSession:
        """Wrap a new interpreter's [control socket, stdout, stderr, pidfd] and wait until it is ready."""
        try:
            session = LocalSession(self, fds, cgroups, family)
        except BaseException:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            _remove_cgroups(cgroups)
            with self.lock:
                family.members -= 1
            raise
        session.zygote_pid = zygote_pid
        try:
            if parent_pid is not None:  # a fork: it must be the parent's own child, never another process
                if _ppid(session.pid) != parent_pid:
                    raise SessionError("the forked interpreter is not a child of the session")
                for path in cgroups.values():  # out of the parent's cgroups, into its own
                    with open(os.path.join(path, "cgroup.procs"), "w") as f:
                        f.write(str(session.pid))
            ready = session.read_message(time.monotonic() + self.sandbox.start_timeout)
            if not ready or ready.get("ready") is not True:
                raise SessionError(f"the session's interpreter did not start: {(ready or {}).get('error')}; "
                                   f"stderr: {session.stale_output()[-300:]!r}")
            # a fork has its parent's limits and seccomp filter; whatever a message says, the parent never
            # raises a hard limit (see `_set_rlimits`)
            session.soft_limits = ready.get("soft_limits") is True if soft_limits is None else soft_limits
        except BaseException:
            session.close()
            raise
        with self.lock:
            self.sessions[session.id] = session
            self.host_pids.add(session.pid)
        return session

    def forget(self, session: LocalSession) -> None:
        """A session ended (killed already): reap it if the zygote is its parent, remove its family's directory
        with the family's last member."""
        with self.lock:
            self.sessions.pop(session.id, None)
            self.host_pids.discard(session.pid)
            family = session.family
            family.members -= 1
            last = family.members == 0
        if self.zygote is None or not self.zygote.alive():
            return
        try:
            if session.zygote_pid is not None:
                self.zygote.request({"op": "reap", "pid": session.zygote_pid})
            if last:
                self.zygote.request({"op": "rmtree", "root": family.root})
        except SessionError as e:
            log.warning("could not clean up after session %s: %s", session.id, e)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            sessions = list(self.sessions.values())
        for s in sessions:
            s.close()
        if self.zygote is not None:
            self.zygote.kill()
        for _, parent in self.cgroup_parents:  # whatever a killed zygote left (its sessions die with it)
            with contextlib.suppress(OSError):
                for name in os.listdir(parent):
                    if name.startswith("s") and name[1:].isdigit():
                        _remove_cgroups({"x": os.path.join(parent, name)})
        self.executor.shutdown(wait=False, cancel_futures=True)


def _reap_idle(ref: weakref.ref) -> None:
    """Close sessions idle for longer than the TTL, until the manager is closed or gone (a weak reference: this
    thread keeps nothing alive)."""
    while (pause := _expire_idle(ref())) is not None:
        time.sleep(pause)


def _expire_idle(manager: SessionManager | None) -> float | None:
    """One round of `_reap_idle`: the pause until the next, None when there is no manager any more."""
    if manager is None or manager.closed:
        return None
    now = time.monotonic()
    with manager.lock:
        idle = [s for s in manager.sessions.values() if not s.busy and now - s.last_used > manager.ttl_s]
    for session in idle:
        session.expire(f"idle for more than {manager.ttl_s:g} s (session TTL)")
    return min(5.0, max(0.05, manager.ttl_s / 4))


class LocalSession(Session):
    """One interpreter of a LocalSandbox (see the module docstring). Thread-safe: calls run one at a time."""

    def __init__(self, manager: SessionManager, fds: list[int], cgroups: dict[str, str], family: _Family) -> None:
        self.manager = manager
        self.id = secrets.token_urlsafe(12)
        self.ctl = socket.socket(fileno=fds[0])
        self.out_r, self.err_r, self.pidfd = fds[1], fds[2], fds[3]
        self.pid = _pidfd_pid(self.pidfd)
        self.cgroups = cgroups
        self.family = family
        self.lock = threading.Lock()
        self._end_lock = threading.Lock()
        self.busy = False
        self.closed = False
        self.lost: str | None = None
        self.last_used = time.monotonic()
        self.zygote_pid: int | None = None  # its pid in the zygote's namespace when the zygote is its parent
        self._buf = b""
        self.soft_limits = False  # only the soft RLIMIT_AS / RLIMIT_CPU are set per call (see `_set_rlimits`)
        for fd in (self.out_r, self.err_r):
            os.set_blocking(fd, False)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"lost: {self.lost}" if self.lost else "alive"
        return f"LocalSession({self.id}, pid {self.pid}, {state})"

    # -- the protocol ------------------------------------------------------------------------------------------
    def read_message(self, deadline: float) -> dict | None:
        """The next message on the control socket; None when the interpreter died or the deadline passed."""
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.ctl.settimeout(remaining)
            try:
                data = self.ctl.recv(1 << 16)
            except (TimeoutError, OSError):
                return None
            if not data:
                return None
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None

    def exited(self) -> bool:
        """Whether the interpreter has exited (its pidfd is readable): then its pid must not be used any more (the
        zygote reaps it in time, and the pid may be another process's)."""
        try:
            return bool(select.select([self.pidfd], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def stale_output(self) -> str:
        """Drain whatever the interpreter wrote between calls (daemon threads): it belongs to no call."""
        out = b""
        for fd in (self.out_r, self.err_r):
            with contextlib.suppress(BlockingIOError, OSError):
                while chunk := os.read(fd, 1 << 16):
                    out += chunk
        return out.decode("utf-8", "replace")

    # -- calls -------------------------------------------------------------------------------------------------
    def run(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
            stdin: str | None = None) -> ExecResult:
        check_call(code, timeout, memory_mb)
        with self.lock:
            if self.closed and self.lost is None:
                raise SessionError("the session is closed")
            if self.lost is not None:
                return self.manager.sandbox._count(lost_result(self.lost))
            self.busy = True
            try:
                result = self._call(code, float(timeout), memory_mb or self.manager.sandbox.memory_mb, stdin)
            finally:
                self.busy = False
                self.last_used = time.monotonic()
        if self.lost is not None:
            self._end()
        return self.manager.sandbox._count(result)

    async def arun(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
                   stdin: str | None = None) -> ExecResult:
        call = functools.partial(self.run, code, timeout=timeout, memory_mb=memory_mb, stdin=stdin)
        return await asyncio.get_running_loop().run_in_executor(self.manager.executor, call)

    def _call(self, code: str, timeout: float, memory_mb: int, stdin: str | None) -> ExecResult:
        sb = self.manager.sandbox
        self.stale_output()
        self._drain_ctl()  # whatever was written on the control socket between calls answers nothing
        out, err = Capture(sb.output_cap), Capture(sb.output_cap)
        start = time.monotonic()
        if self.exited():  # died between calls: its pid is not touched any more (no rlimits, no process tree)
            return self._died(out, err, start, self._oom_kills(), 0.0, None)
        cpu_before = _cpu_seconds(self.pid)
        mem = memory_mb * 1024 * 1024
        cpu_limit = self._set_rlimits(mem, int(cpu_before + timeout) + 1)
        oom_before = self._set_memory_cgroup(mem)
        try:
            self.ctl.settimeout(max(0.001, start + timeout - time.monotonic()))
            self.ctl.sendall((json.dumps({"op": "run", "code": code, "stdin": stdin}) + "\n").encode())
        except TimeoutError:  # it does not read (stopped, or a thread holds it): it is killed, the session ends
            self._kill()
            self.lost = f"a call timed out after {timeout:g} s"
            self._drain(out, err)
            return ExecResult("timeout", out.text(), err.text(), None, round(time.monotonic() - start, 6),
                              out.truncated or err.truncated,
                              f"wall-clock timeout after {timeout:g} s (the interpreter did not read the call); "
                              "the session is lost (interpreter killed)", {"session_lost": True})
        except OSError:
            pass  # dead already: found below
        done, why = self._watch(start + timeout, out, err)
        duration = time.monotonic() - start
        if why == "timeout":  # wall-clock timeout: the interpreter is killed, the session ends
            self._kill()
            self.lost = f"a call timed out after {timeout:g} s"
            self._drain(out, err)
            return ExecResult("timeout", out.text(), err.text(), None, round(duration, 6),
                              out.truncated or err.truncated,
                              f"wall-clock timeout after {timeout:g} s; the session is lost (interpreter killed)",
                              {"session_lost": True})
        rc = done.get("exit_code") if done is not None else None
        if done is not None and (type(rc) is not int or not 0 <= rc <= 255):
            why = "protocol"
        if why == "protocol" and select.select([self.pidfd], [], [], 0.2)[0]:
            return self._died(out, err, start, oom_before, cpu_before, cpu_limit)  # its last words, then death
        if why == "protocol":  # the control socket is the snippet's to write too: a broken answer ends the session
            self._kill()
            self._drain(out, err)
            self.lost = "the interpreter broke the call protocol in an earlier call"
            return ExecResult("error", out.text(), err.text(), None, round(duration, 6),
                              out.truncated or err.truncated,
                              "the interpreter broke the call protocol; the session is lost", {"session_lost": True})
        if done is not None:
            self._kill_leftovers()
            self._drain(out, err)
            reason = "" if rc == 0 else f"exit code {rc}"
            stderr = err.text()
            oom = self._oom_kills() > oom_before
            if rc and (_last_line(stderr).startswith("MemoryError") or oom):
                reason = f"out of memory ({reason})"
            return ExecResult("ok" if rc == 0 else "error", out.text(), stderr, rc, round(duration, 6),
                              out.truncated or err.truncated, reason)
        return self._died(out, err, start, oom_before, cpu_before, cpu_limit)

    def _died(self, out: Capture, err: Capture, start: float, oom_before: int, cpu_before: float,
              cpu_limit: int | None) -> ExecResult:
        """The interpreter died during the call (or before it): how (a zombie tells), and the session is lost."""
        select.select([self.pidfd], [], [], 1.0)  # its control socket closes a moment before it is a zombie
        status = _dead_status(self.pid)  # the zygote keeps it a zombie for a while: the pid is still its own
        cpu = _cpu_seconds(self.pid)
        self._kill()
        self._drain(out, err)
        duration = time.monotonic() - start
        oom = self._oom_kills() > oom_before
        kind, rc = "error", None
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            rc, why = -sig, f"killed by signal {signal.Signals(sig).name}"
            if sig == signal.SIGXCPU and cpu_limit is not None and cpu >= cpu_limit - 0.05:
                kind, rc, why = "timeout", None, f"CPU time limit exceeded ({cpu_limit - cpu_before:.0f} s)"
            elif sig == signal.SIGKILL and oom:
                why = "out of memory (memory limit of the session's processes)"
        elif status is not None:
            rc = os.WEXITSTATUS(status)
            why = f"the interpreter exited with code {rc}"
            kind = "ok" if rc == 0 else "error"  # os._exit(0): the call succeeded, as a stateless one would
        else:
            why = "the interpreter died"
        if oom and "out of memory" not in why:
            why = f"out of memory ({why})"
        self.lost = f"{why} in an earlier call"
        return ExecResult(kind, out.text(), err.text(), rc, round(duration, 6), out.truncated or err.truncated,
                          f"{why}; the session is lost", {"session_lost": True})

    def _set_rlimits(self, mem: int, cpu_limit: int) -> int | None:
        """Arm RLIMIT_AS and RLIMIT_CPU for a call; returns the RLIMIT_CPU soft limit that applies (None when
        unknown or unlimited). Under the seccomp filter (`soft_limits`) the interpreter's hard limits are
        unlimited and only the soft ones are set, so they go up as well as down; without it a snippet could raise
        a soft limit to its hard one, so both are set, and without CAP_SYS_RESOURCE they can only go down."""
        for res, soft in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu_limit)):
            with contextlib.suppress(OSError, ValueError):
                if self.soft_limits:
                    hard = resource.prlimit(self.pid, res)[1]  # kept as it is: never raised from here
                    if hard != resource.RLIM_INFINITY:
                        soft = min(soft, hard)
                    resource.prlimit(self.pid, res, (soft, hard))
                else:
                    resource.prlimit(self.pid, res, (soft, soft + 1 if res == resource.RLIMIT_CPU else soft))
        try:
            applied = resource.prlimit(self.pid, resource.RLIMIT_CPU)[0]
        except OSError:
            return None
        return None if applied == resource.RLIM_INFINITY else applied

    def _drain_ctl(self) -> None:
        """Drop what is buffered or waiting on the control socket (fds sent with it are closed by the kernel)."""
        self._buf = b""
        self.ctl.setblocking(False)
        with contextlib.suppress(OSError):
            for _ in range(256):
                if not self.ctl.recv(1 << 16):
                    break

    def _watch(self, deadline: float, out: Capture, err: Capture) -> tuple[dict | None, str | None]:
        """Capture output until the interpreter says it is done (its message, None), dies (None, "died"), breaks
        the protocol (None, "protocol") or the deadline passes (None, "timeout")."""
        sel = selectors.DefaultSelector()
        sel.register(self.ctl, selectors.EVENT_READ, "ctl")
        sel.register(self.pidfd, selectors.EVENT_READ, "exit")
        sel.register(self.out_r, selectors.EVENT_READ, out)
        sel.register(self.err_r, selectors.EVENT_READ, err)
        self.ctl.setblocking(False)
        try:
            while True:
                if b"\n" in self._buf:
                    line, self._buf = self._buf.split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        msg = None
                    if isinstance(msg, dict) and msg.get("done") is True:
                        return msg, None
                    return None, "protocol"  # ({"ready": false} from a failed interpreter, or the snippet's)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None, "timeout"
                for key, _ in sel.select(remaining):
                    if key.data == "ctl":
                        try:
                            data = self.ctl.recv(1 << 16)
                        except (BlockingIOError, InterruptedError):
                            continue
                        except OSError:
                            data = b""
                        if not data:  # it exec'd or is exiting: wait for its end (or the deadline)
                            sel.unregister(self.ctl)
                            continue
                        self._buf += data
                    elif key.data == "exit":
                        if b"\n" not in self._buf:
                            return None, "died"
                    else:
                        with contextlib.suppress(BlockingIOError, OSError):
                            chunk = os.read(key.fd, 1 << 16)
                            if chunk:
                                key.data.add(chunk)
                            else:
                                sel.unregister(key.fd)
        finally:
            sel.close()

    def _drain(self, out: Capture, err: Capture) -> None:
        for fd, cap in ((self.out_r, out), (self.err_r, err)):
            with contextlib.suppress(BlockingIOError, OSError):
                while chunk := os.read(fd, 1 << 16):
                    cap.add(chunk)

    def _set_memory_cgroup(self, limit: int) -> int:
        path = self.cgroups.get("memory")
        if not path:
            return 0
        for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max") * 2:
            with contextlib.suppress(OSError), open(os.path.join(path, name), "w") as f:
                f.write(str(limit))
        return self._oom_kills()

    def _oom_kills(self) -> int:
        path = self.cgroups.get("memory")
        if not path:
            return 0
        for name in ("memory.oom_control", "memory.events"):
            with contextlib.suppress(OSError), open(os.path.join(path, name)) as f:
                for line in f:
                    if line.startswith("oom_kill "):
                        return int(line.split()[1])
        return 0

    # -- processes ---------------------------------------------------------------------------------------------
    def _members(self) -> list[int]:
        """Every process of this session but its interpreter: its cgroup, or its process tree (other sessions,
        forks included, excluded)."""
        if "pids" in self.cgroups or "memory" in self.cgroups:
            path = self.cgroups.get("pids") or self.cgroups["memory"]
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    return [p for p in map(int, f.read().split()) if p != self.pid]
            except OSError:
                return []
        if self.exited():  # its pid may be another process's soon; its children are the zygote's now
            return []
        with self.manager.lock:
            skip = set(self.manager.host_pids)
        return _descendants(self.pid, skip)

    def _kill_leftovers(self) -> None:
        """SIGKILL what the call started (double forks and daemons too): until none is left."""
        if kill_until_gone(self._members):
            return
        log.warning("session %s: processes survive SIGKILL: %s", self.id, self._members()[:5])

    def _kill(self) -> None:
        """Stop the interpreter, kill what it started, then kill it."""
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGSTOP)
        self._kill_leftovers()
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        self._kill_leftovers()
        if not self.cgroups:  # what it started and outlived it (os._exit) was re-parented to the zygote
            with contextlib.suppress(OSError, ValueError):
                select.select([self.pidfd], [], [], 1.0)
            self.manager.kill_orphans()

    # -- lifetime ----------------------------------------------------------------------------------------------
    def fork(self) -> LocalSession:
        with self.lock:
            if self.closed and self.lost is None:
                raise SessionError("the session is closed")
            if self.lost is not None:
                raise SessionError(f"session lost: {self.lost}")
            manager = self.manager
            with manager.lock:
                if len(manager.sessions) >= manager.max_sessions:
                    raise SessionError(f"this sandbox holds at most {manager.max_sessions} sessions (max_sessions)")
            cgroups = manager._make_cgroups()
            fds: list[int] = []
            handed = False  # to _adopt, which cleans up after itself
            try:
                self._drain_ctl()  # a reply a snippet wrote between calls is not the fork's
                try:
                    self.ctl.settimeout(manager.sandbox.start_timeout)
                    self.ctl.sendall(b'{"op": "fork"}\n')
                    data, fds, _, _ = socket.recv_fds(self.ctl, 1 << 16, 8)
                except OSError as e:
                    self.lost = f"the interpreter died ({e})"
                    raise SessionError(f"session lost: {self.lost}") from None
                self._buf += data
                reply = self.read_message(time.monotonic() + manager.sandbox.start_timeout)
                if not reply or reply.get("forked") is not True or len(fds) != 4:
                    self.lost = "the interpreter broke the fork protocol"
                    raise SessionError(f"session lost: {self.lost}")
                with manager.lock:
                    self.family.members += 1
                self.last_used = time.monotonic()
                handed = True
                return manager._adopt(fds, cgroups, self.family, parent_pid=self.pid, soft_limits=self.soft_limits)
            finally:
                if not handed:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                    _remove_cgroups(cgroups)

    def expire(self, why: str) -> None:
        """End the session for the sandbox's own reasons (TTL): later calls say it was lost, and why. Not when it
        was used (or is in use) within the TTL: the reaper's choice may be stale by the time it gets the lock."""
        with self.lock:
            if self.closed or self.busy or time.monotonic() - self.last_used <= self.manager.ttl_s:
                return
            self.lost = why
            self._kill()
        self._end()

    def close(self) -> None:
        if self.closed:
            return
        self._kill()  # first, without the lock: a running call returns at once
        with self.lock:
            self.lost = None
            self._end()

    def _end(self) -> None:
        with self._end_lock:  # a call that lost the session and close() may both end it
            if self.closed:
                return
            self.closed = True
        self._kill()
        for fd in (self.out_r, self.err_r, self.pidfd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.ctl.close()
        _remove_cgroups(self.cgroups)
        self.manager.forget(self)


# ---------------------------------------------------------------------------------------------------------------
# /proc and cgroup helpers
# ---------------------------------------------------------------------------------------------------------------
def _pidfd_pid(pidfd: int) -> int:
    """The pid (in our PID namespace) of the process a pidfd refers to."""
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise SessionError("cannot tell the session's pid from its pidfd")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].decode().split()


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def _dead_status(pid: int) -> int | None:
    """The wait status of a dead, not yet reaped process (field 52 of /proc/PID/stat), None if gone."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] not in ("Z", "X") or len(fields) < 50:
        return None
    return int(fields[49])


def _ppid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    return kids


def _descendants(pid: int, skip: set[int]) -> list[int]:
    """The live descendants of `pid`, leaving out the subtrees of `skip` (other sessions) and zombies."""
    out, todo = [], [k for k in _children(pid) if k not in skip]
    while todo:
        p = todo.pop()
        fields = _stat_fields(p)
        if fields is None or fields[0] in ("Z", "X"):
            continue
        out.append(p)
        todo += [k for k in _children(p) if k not in skip]
    return out


def _enable_v2_controllers(parents: list[tuple[str, str]]) -> None:
    """On cgroup v2 the controllers of the session cgroups must be enabled in their parent's subtree_control."""
    wanted: dict[str, list[str]] = {}
    for kind, parent in parents:
        wanted.setdefault(parent, []).append(kind)
    for parent, kinds in wanted.items():
        control = os.path.join(parent, "cgroup.subtree_control")
        if not os.path.exists(control):  # cgroup v1
            continue
        for kind in kinds:
            try:
                with open(control, "w") as f:
                    f.write(f"+{kind}")
            except OSError as e:
                log.warning("cannot enable the %s controller for session cgroups in %s: %s", kind, control, e)


def _remove_cgroups(cgroups: dict[str, str]) -> None:
    """Kill whatever is left in the cgroups and remove them (they may take a moment to empty)."""
    for path in cgroups.values():
        for _ in range(200):
            with contextlib.suppress(OSError), open(os.path.join(path, "cgroup.procs")) as f:
                for pid in f.read().split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.005)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""
