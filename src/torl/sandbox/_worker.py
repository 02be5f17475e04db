"""Fork-server worker of LocalSandbox. Runs as its own process: `python -I _worker.py CONFIG_JSON`.

Standard library only (pyseccomp optional), and never imports torl: it is started in isolation (often as PID 1 of
fresh pid/net/mount namespaces) and must stay small. It pre-imports the configured modules once, then for each
request forks a child that runs the snippet with rlimits, a scrubbed environment, a fresh job directory,
Landlock (filesystem, TCP and signal scoping) and a seccomp filter, and reports the result.

Protocol: one JSON object per line. The parent sends {"code", "timeout", "memory_mb", "stdin"}; the worker first
sends {"ready": true, ...} once, then one result object per request.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import gc
import importlib
import json
import os
import resource
import select
import selectors
import shutil
import signal
import sys
import tempfile
import time

# ---------------------------------------------------------------------------------------------------------------
# Kernel interfaces (ctypes): prctl, Landlock, seccomp
# ---------------------------------------------------------------------------------------------------------------
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
CLONE_NEWNS = 0x00020000
_libc.unshare.argtypes = [ctypes.c_int]
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

SYS_landlock_create_ruleset = 444
SYS_landlock_add_rule = 445
SYS_landlock_restrict_self = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Landlock filesystem rights, by the ABI version that introduced them.
LL_EXECUTE, LL_WRITE_FILE, LL_READ_FILE, LL_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
LL_FS_V1 = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
LL_REFER, LL_TRUNCATE, LL_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
LL_SCOPE_ABSTRACT_UNIX, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1
LL_READ_ONLY = LL_EXECUTE | LL_READ_FILE | LL_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable."""
    abi = _libc.syscall(SYS_landlock_create_ruleset, None, ctypes.c_size_t(0), LANDLOCK_CREATE_RULESET_VERSION)
    return max(int(abi), 0)


def _landlock_fs_rights(abi: int) -> int:
    rights = LL_FS_V1
    if abi >= 2:
        rights |= LL_REFER
    if abi >= 3:
        rights |= LL_TRUNCATE
    if abi >= 5:
        rights |= LL_IOCTL_DEV
    return rights


def landlock_restrict(abi: int, read_paths: list[str], write_paths: list[str], rw_files: list[str]) -> None:
    """Confine this process (and its future children): read-only below `read_paths`, read-write below
    `write_paths` and on `rw_files`, no TCP bind/connect (ABI >= 4), no signals or abstract unix sockets to
    processes outside the domain (ABI >= 6). Raises OSError on failure."""
    fs = _landlock_fs_rights(abi)
    attr = _RulesetAttr(handled_access_fs=fs)
    size = 8
    if abi >= 4:
        attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL
        size = 24
    ruleset = _libc.syscall(SYS_landlock_create_ruleset, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    file_rights = LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | (LL_TRUNCATE if abi >= 3 else 0)
    try:
        rules = [(p, LL_READ_ONLY) for p in read_paths] + [(p, fs) for p in write_paths]
        rules += [(p, file_rights) for p in rw_files]
        for path, rights in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path that does not exist needs no rule
            try:
                if not os.path.isdir(path):
                    rights &= LL_EXECUTE | LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV
                rule = _PathBeneathAttr(allowed_access=rights & fs, parent_fd=fd)
                if _libc.syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(rule), 0):
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
        if _libc.syscall(SYS_landlock_restrict_self, ruleset, 0):
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)


# Syscalls no math snippet needs and an attacker would like.
SECCOMP_DENY = (
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module",
    "delete_module", "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "setrlimit", "userfaultfd", "open_by_handle_at", "name_to_handle_at", "quotactl", "syslog", "vhangup",
    "iopl", "ioperm", "sethostname", "setdomainname", "fanotify_init", "move_mount", "fsopen", "fsmount",
    "fsconfig", "fspick", "open_tree", "mount_setattr", "pidfd_getfd", "kcmp", "lookup_dcookie",
    # metadata of files the snippet can name but not write (Landlock does not cover these)
    "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "utime", "utimes",
    "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    # IPC objects outlive the snippet
    "shmget", "shmat", "shmctl", "shmdt", "msgget", "msgsnd", "msgrcv", "msgctl", "semget", "semop", "semtimedop",
    "semctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr",
)
# With the filter above a snippet cannot change its own rlimits at all (setrlimit denied, prlimit64 only to read):
# session interpreters may then get unlimited hard limits below which the parent sets the soft ones per call.
SOFT_LIMITS_SAFE = "setrlimit" in SECCOMP_DENY
_CLONE_NEW_NAMESPACES = 0x10000000 | 0x00020000 | 0x20000000 | 0x40000000 | 0x04000000 | 0x08000000 | 0x02000000


def build_seccomp_bpf() -> bytes:
    """Compile the snippet's seccomp filter once (needs pyseccomp); the child loads the bytes with one prctl."""
    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in SECCOMP_DENY:
        try:
            f.add_rule(deny, name)
        except (OSError, RuntimeError, ValueError):
            pass  # not a syscall on this architecture
    f.add_rule(deny, "socket")  # no sockets at all, not even unix ones at a path (socketpair() still works)
    f.add_rule(deny, "prlimit64", sc.Arg(2, sc.NE, 0))  # reading limits yes, changing them no
    for name in ("kill", "tgkill"):  # no signals to process groups or to every process (pid < 0)
        f.add_rule(deny, name, sc.Arg(0, sc.MASKED_EQ, 0x80000000, 0x80000000))
    bit = 1
    while bit <= _CLONE_NEW_NAMESPACES:  # one rule per namespace flag: libseccomp has no "any bit set"
        if _CLONE_NEW_NAMESPACES & bit:
            f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, bit, bit))
        bit <<= 1
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags live in memory: make libc fall back to clone()
    r, w = os.pipe()
    try:
        with os.fdopen(w, "wb", closefd=True) as out:
            f.export_bpf(out)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(r)


PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SYS_capset = 126
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def set_limits(cfg: dict, memory_mb, cgroups, soft_only: bool = False) -> None:
    """The rlimits every snippet process gets (address space, file size, open files, no core dumps), and its
    move into `cgroups` (their limits then hold for all its processes together). `soft_only` (session
    interpreters under the seccomp filter, which forbids setrlimit and changing limits with prlimit64): the address
    space limit is a soft one below an unlimited hard one, so that the parent can re-arm it per call in either
    direction without CAP_SYS_RESOURCE (likewise RLIMIT_CPU, set per call)."""
    mem = int(memory_mb or cfg["memory_mb"]) * 1024 * 1024
    if soft_only:
        for res in (resource.RLIMIT_AS, resource.RLIMIT_CPU):
            soft, hard = resource.getrlimit(res)
            try:  # raising the hard limit needs CAP_SYS_RESOURCE: else the one there is stays
                resource.setrlimit(res, (soft, resource.RLIM_INFINITY))
                hard = resource.RLIM_INFINITY
            except (ValueError, OSError):
                pass
            if res == resource.RLIMIT_AS:
                resource.setrlimit(res, (mem if hard == resource.RLIM_INFINITY else min(mem, hard), hard))
    else:
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["file_size_mb"] << 20, cfg["file_size_mb"] << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (cfg["open_files"], cfg["open_files"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for cgroup in cgroups:
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")


def drop_privileges(cfg: dict) -> None:
    """Become the dedicated unprivileged uid (with a process cap), or else drop every capability."""
    uid = cfg.get("run_as_uid")
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"], cfg["max_processes"]))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    elif cfg.get("drop_caps"):
        drop_capabilities()


def drop_capabilities() -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable capability sets (uid 0 stays uid 0
    but loses every privilege: no DAC override, no kill of others, no mount, no raising of rlimits)."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(version=_LINUX_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    if _libc.syscall(SYS_capset, ctypes.byref(header), ctypes.byref(data)):
        raise OSError(ctypes.get_errno(), "capset failed")


def seccomp_load(bpf: bytes) -> None:
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len=len(bpf) // 8, filter=ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS failed")
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0):
        raise OSError(ctypes.get_errno(), "seccomp filter load failed")


# ---------------------------------------------------------------------------------------------------------------
# Output capture: keep the head and the tail of a stream, never block
# ---------------------------------------------------------------------------------------------------------------
class Capture:
    """Bytes of one stream, capped at `cap`: the first cap/2 and the last cap/2 bytes are kept."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:  # trim rarely: amortised O(1) per byte
                del self.tail[: len(self.tail) - self.tail_cap]

    @property
    def truncated(self) -> bool:
        return self.total > self.head_cap + self.tail_cap

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_cap:]) if self.tail_cap else b""
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        omitted = self.total - len(self.head) - len(tail)
        return (bytes(self.head).decode("utf-8", errors="replace")
                + f"\n...[{omitted} bytes omitted]...\n"
                + tail.decode("utf-8", errors="replace"))


# ---------------------------------------------------------------------------------------------------------------
# The child: everything between fork and os._exit
# ---------------------------------------------------------------------------------------------------------------
def _detach() -> None:
    """A forked child's first steps: die with its parent, lead its own session, default signal handling."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setsid()
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _child(cfg: dict, req: dict, jobdir: str, fds: tuple[int, ...], bpf: bytes | None, layers: str | None) -> None:
    """Runs in the forked child. Never returns.

    Set-up (everything before the byte on fd 3) failing is a sandbox error; after it the snippet runs from a real
    file in the job directory (`__file__`, `sys.argv[0]` and tracebacks work as with `python file.py`). With
    `fetch_files` the child forks once more: the snippet runs in the grandchild and this process, after the
    snippet ended or timed out, reads the files back (with the same restrictions) and reports them on fd 4."""
    code = 70  # EX_SOFTWARE: the sandbox itself failed before the snippet ran
    try:
        _detach()
        stdin_fd, out_fd, err_fd, ready_fd, report_fd = fds
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.dup2(ready_fd, 3)  # written once set-up is complete: tells a set-up failure from a snippet's exit 70
        if report_fd >= 0:
            os.dup2(report_fd, 4)  # the fetched files
        os.closerange(5 if report_fd >= 0 else 4, 1 << 16)
        os.chdir(jobdir)
        env = dict(cfg["env"], HOME=jobdir, TMPDIR=jobdir, PWD=jobdir)
        os.environ.clear()
        os.environ.update(env)
        timeout = float(req["timeout"])
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        # pids.max stops fork bombs; memory covers all processes
        set_limits(cfg, req.get("memory_mb"), cfg.get("cgroups", ()))
        files, fetch = req.get("files") or {}, req.get("fetch_files") or []
        outside = outside_paths(jobdir, [*files, *fetch])
        writable = [jobdir]
        if outside and layers is not None:  # absolute paths: private, writable copies of their directories
            writable += private_view(outside, layers, cfg["job_root"], cfg["read_paths"])
        drop_privileges(cfg)
        if cfg.get("landlock_abi"):
            landlock_restrict(cfg["landlock_abi"], cfg["read_paths"], writable, ["/dev/null"])
        if bpf:
            seccomp_load(bpf)
        import atexit
        import builtins
        import io
        import types

        atexit._clear()
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                      errors="backslashreplace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        if files:
            restore_files(jobdir, files, set(outside) if layers is None else set())
        source = req["code"]
        fd, path = tempfile.mkstemp(prefix="tmp", suffix=".py", dir=jobdir)  # as `python tmpXXXX.py` runs it
        with open(fd, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(source)
        sys.argv = [path]
        sys.path.insert(0, jobdir)
        sys.set_int_max_str_digits(0)
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=builtins, __file__=path, __cached__=None, __spec__=None, __package__=None)
        sys.modules["__main__"] = main
        os.write(3, b"1")
        os.close(3)
        if fetch:
            _run_and_fetch(source, path, main, jobdir, fetch, set(outside) if layers is None else set(),
                           float(req["deadline"]), int(cfg["disk_mb"]) << 20)
        code = _run_snippet(source, path, main)
    except BaseException as e:  # the sandbox set-up failed: say so on fd 2 (best effort)
        try:
            os.write(2, f"torl-sandbox-setup-error: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _exec_source(source: str, path: str, main) -> int:
    """Execute `source` as the file `path` in `main`'s globals; its exit code, errors reported as the
    interpreter reports them."""
    try:
        exec(compile(source, path, "exec"), main.__dict__)  # noqa: S102 - this is the sandbox
    except SystemExit as e:
        return _exit_code(e)
    except BaseException as e:  # report like the interpreter does, without this frame
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        sys.__excepthook__(type(e), e.with_traceback(tb), tb)  # C-level: fast even for 10^6 frames
        return 1
    return 0


def _run_snippet(source: str, path: str, main) -> int:
    """Run the snippet as the interpreter runs a script; returns its exit code."""
    import atexit
    import threading

    code = _exec_source(source, path, main)
    try:
        threading._shutdown()  # join non-daemon threads, as the interpreter does at exit
        atexit._run_exitfuncs()
    except SystemExit as e:
        code = _exit_code(e)
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    return code


def _run_and_fetch(source: str, path: str, main, jobdir: str, fetch: list[str], refused: set[str],
                   deadline: float, fetch_limit: int) -> None:
    """Run the snippet in a grandchild; once it ended (or at the deadline, killed) report its wait status and the
    `fetch` files on fd 4, as Sandbox Fusion fetches them after the run whatever its outcome. Files beyond
    `fetch_limit` bytes in all are left out. Never returns."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            os.close(4)
            code = _run_snippet(source, path, main)
        finally:
            os._exit(code)
    for fd in (0, 1, 2):  # the snippet's streams end when the snippet does
        os.close(fd)
    start = time.monotonic()
    pidfd = os.pidfd_open(pid)
    ready, _, _ = select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))
    timed_out = not ready
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status, _ = os.wait4(pid, 0)
    duration = time.monotonic() - start
    files, room = {}, fetch_limit  # the same file under many names must not flood the worker
    for name in fetch:
        target = os.path.join(jobdir, name)
        if os.path.abspath(target) in refused:
            continue
        try:
            if os.path.isfile(target) and os.path.getsize(target) <= room:
                with open(target, "rb") as f:
                    data = f.read(room + 1)
                if len(data) <= room:
                    files[name] = base64.b64encode(data).decode()
                    room -= len(data)
        except (OSError, MemoryError):
            continue
    data = memoryview(json.dumps({"wait_status": status, "timed_out": timed_out, "duration": duration,
                                  "files": files}).encode())
    while data:
        data = data[os.write(4, data):]
    os._exit(0)


def outside_paths(jobdir: str, paths) -> list[str]:
    """The absolute targets of `paths` (joined onto the job directory, as Sandbox Fusion joins them onto its
    working directory) that lie outside the job directory."""
    out = []
    for p in paths:
        target = os.path.abspath(os.path.join(jobdir, p))
        if target != jobdir and not target.startswith(jobdir + "/") and target not in out:
            out.append(target)
    return out


def restore_files(jobdir: str, files: dict, refused: set[str]) -> None:
    """Write `files` ({path: base64}) as Sandbox Fusion does: joined onto the job directory, parents created."""
    for name, content in files.items():
        target = os.path.join(jobdir, name)
        if os.path.abspath(target) in refused:
            raise PermissionError(f"{name}: absolute paths outside the job directory need mount namespaces, "
                                  "which this machine does not allow")
        parent = os.path.dirname(target)
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(target, "wb") as f:
            f.write(base64.b64decode(content))


_NO_VIEW = ("/proc", "/sys", "/dev")


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def private_view(targets: list[str], layers: str, job_root: str, read_paths: list[str]) -> list[str]:
    """Give this process (in a fresh mount namespace of its own) a private, writable copy of the directories that
    hold `targets`, and return them. Each is an overlay whose upper layer lives under `layers` (on the job tmpfs:
    capped, gone with the job), so writes never reach the host. The copy shows no more than the sandbox could read
    before: a directory the sandbox may read keeps its content (lower layer: itself); any other starts empty, with
    only its readable descendants (and the job root) bound back in.

    A target whose nearest existing directory is "/", under /proc, /sys or /dev, or in the job root stays as the
    sandbox sees it already (read-only)."""
    dirs = set()
    for target in targets:
        d = os.path.dirname(target)
        while d != "/" and not os.path.isdir(d):
            d = os.path.dirname(d)
        if d == "/" or _under(d, _NO_VIEW) or _under(d, [job_root]) or any(c in d for c in ",:\\"):
            continue  # (overlay's option syntax cannot name a directory with , : or \\)
        dirs.add(d)
    chosen = sorted(d for d in dirs if not any(d.startswith(o + "/") for o in dirs))
    if not chosen:
        return []
    if _libc.unshare(CLONE_NEWNS) or _libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None):
        raise OSError(ctypes.get_errno(), "cannot make a private mount namespace for absolute paths")
    for i, d in enumerate(chosen):
        readable = _under(d, read_paths)
        keep = []  # what must stay visible below an emptied directory, opened in this namespace
        if not readable:
            for path in sorted({*read_paths, job_root}, key=len):
                if path.startswith(d + "/") and os.path.exists(path) and not _under(path, [k for k, _ in keep]):
                    keep.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
        base = os.path.join(layers, str(i))
        upper, work, empty = (os.path.join(base, x) for x in ("up", "work", "empty"))
        for x in (upper, work, empty):
            os.makedirs(x)
        opts = f"lowerdir={d if readable else empty},upperdir={upper},workdir={work}"
        if (_libc.mount(b"overlay", d.encode(), b"overlay", MS_NOSUID | MS_NODEV, opts.encode())
                and _libc.mount(b"overlay", d.encode(), b"overlay", MS_NOSUID | MS_NODEV,
                                (opts + ",userxattr").encode())):
            raise OSError(ctypes.get_errno(), f"cannot give the sandbox a private copy of {d}")
        for path, fd in keep:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
            if _libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None):
                raise OSError(ctypes.get_errno(), f"cannot keep {path} visible in the private copy of {d}")
            os.close(fd)
    return chosen


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code & 0xFF
    try:
        print(e.code, file=sys.stderr)
    except BaseException:
        pass
    return 1


# ---------------------------------------------------------------------------------------------------------------
# The worker: fork, watch, capture, clean up
# ---------------------------------------------------------------------------------------------------------------
class Worker:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.cap = int(cfg["output_cap"])
        # In our own pid namespace kill(-1) reaches exactly the snippet's leftovers (init itself is immune).
        self.own_pidns = os.getpid() == 1
        self.bpf: bytes | None = None
        self.tmpfs = False  # job directories live on a private tmpfs (needs our own mount namespace)
        self.warnings: list[str] = []

    def setup(self) -> dict:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of a snippet come back to us
        for name in self.cfg["preload"]:
            try:
                importlib.import_module(name)
            except Exception as e:  # a missing optional module must not stop the pool
                self.warnings.append(f"preload {name}: {type(e).__name__}: {e}")
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        if self.cfg.get("seccomp"):
            try:
                self.bpf = build_seccomp_bpf()
            except Exception as e:
                self.warnings.append(f"seccomp unavailable: {type(e).__name__}: {e}")
        os.makedirs(self.cfg["job_root"], exist_ok=True)
        self.tmpfs = self.own_pidns and self._mount_tmpfs()
        gc.collect()
        gc.freeze()  # keep the pre-imported heap out of the children's copy-on-write faults
        return {"ready": True, "pid": os.getpid(), "pid_namespace": self.own_pidns, "seccomp": self.bpf is not None,
                "landlock_abi": self.cfg.get("landlock_abi", 0), "run_as_uid": self.cfg.get("run_as_uid"),
                "drop_caps": bool(self.cfg.get("drop_caps")), "cgroups": self.cfg.get("cgroups", []),
                "tmpfs_job_dirs": self.tmpfs, "warnings": self.warnings}

    def _mount_tmpfs(self) -> bool:
        """Make the job root a private tmpfs (size- and inode-capped; visible only in our mount namespace)."""
        uid = self.cfg.get("run_as_uid")
        opts = f"size={self.cfg['disk_mb']}m,nr_inodes={self.cfg['disk_inodes']},mode=0711"
        if _libc.mount(b"tmpfs", self.cfg["job_root"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()):
            self.warnings.append(f"no tmpfs for job directories: mount failed (errno {ctypes.get_errno()})")
            return False
        if uid is not None:
            os.chmod(self.cfg["job_root"], 0o711)
        return True

    def _make_jobdir(self) -> str:
        jobdir = tempfile.mkdtemp(prefix="job-", dir=self.cfg["job_root"])
        uid = self.cfg.get("run_as_uid")
        if uid is not None:
            os.chown(jobdir, uid, uid)
        os.chmod(jobdir, 0o700)
        return jobdir

    @staticmethod
    def _remove_jobdir(jobdir: str) -> None:
        try:
            shutil.rmtree(jobdir)
        except FileNotFoundError:
            pass
        except (OSError, RecursionError):  # very deep trees: let rm do it; never fail a finished result
            import subprocess

            subprocess.run(["rm", "-rf", "--", jobdir], check=False)

    def _set_memory_limit(self, memory_mb: int) -> int:
        """Limit the memory cgroup (all processes of the snippet together); returns its OOM-kill count."""
        mem = self.cfg.get("memory_cgroup")
        if not mem:
            return 0
        limit = str(memory_mb * 1024 * 1024)
        # cgroup v1 keeps limit <= memsw.limit: lowering needs limit first, raising memsw first; twice does both
        for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.max") * 2:
            try:
                with open(os.path.join(mem, name), "w") as f:
                    f.write(limit)
            except OSError:
                pass
        return self._oom_kills()

    def _oom_kills(self) -> int:
        mem = self.cfg.get("memory_cgroup")
        if not mem:
            return 0
        for name in ("memory.oom_control", "memory.events"):
            try:
                with open(os.path.join(mem, name)) as f:
                    for line in f:
                        if line.startswith("oom_kill "):
                            return int(line.split()[1])
            except OSError:
                continue
        return 0

    def execute(self, req: dict) -> dict:
        timeout = float(req["timeout"])
        oom_before = self._set_memory_limit(int(req.get("memory_mb") or self.cfg["memory_mb"]))
        jobdir = self._make_jobdir()
        fetch = bool(req.get("fetch_files"))
        layers = None
        if self.tmpfs and outside_paths(jobdir, [*(req.get("files") or {}), *(req.get("fetch_files") or [])]):
            layers = jobdir + ".layers"  # beside the job directory: the snippet cannot reach it but through overlays
            os.mkdir(layers, 0o700)
        ready_r, ready_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        report_r, report_w = os.pipe() if fetch else (-1, -1)
        stdin_data = req.get("stdin")
        if stdin_data is None:
            in_r, in_w = os.open(os.devnull, os.O_RDONLY), None
        else:
            in_r, in_w = os.pipe()
        start = time.monotonic()
        req = dict(req, deadline=start + timeout)
        pid = os.fork()
        if pid == 0:
            _child(self.cfg, req, jobdir, (in_r, out_w, err_w, ready_w, report_w), self.bpf, layers)
        for fd in (in_r, out_w, err_w, ready_w, report_w):
            if fd >= 0:
                os.close(fd)
        cap = int(req.get("output_cap") or self.cap)
        report = _Sink() if fetch else None
        wait_s = timeout + (FETCH_GRACE_S if fetch else 0.0)
        try:  # _watch reaps the snippet, kills its leftovers and closes in_w
            status, cpu_s, timed_out, duration, out, err = self._watch(pid, start, wait_s, out_r, err_r, in_w,
                                                                       stdin_data, cap, report_r, report)
            setup_done = _read_nonblocking(ready_r) == b"1"
            oom = self._oom_kills() > oom_before
        except BaseException:
            self._kill_leftovers()
            raise
        finally:
            for fd in (out_r, err_r, ready_r, report_r):
                if fd >= 0:
                    os.close(fd)
            self._remove_jobdir(jobdir)
            if layers is not None:
                self._remove_jobdir(layers)
        files = None
        if fetch and setup_done and not timed_out:
            try:
                rep = json.loads(bytes(report.data))
                status, timed_out, duration, files = (rep["wait_status"], rep["timed_out"], rep["duration"],
                                                      rep["files"])
            except (ValueError, KeyError, TypeError):  # the job process died (the snippet may kill it)
                files = {}
        result = _result(status, cpu_s, timed_out, timeout, duration, out, err, setup_done, oom)
        if files is not None:
            result["files"] = files
        return result

    def _watch(self, pid, start, timeout, out_r, err_r, in_w, stdin_data, cap, report_r, report) -> tuple:
        out, err = Capture(cap), Capture(cap)
        sel = selectors.DefaultSelector()
        pidfd = os.pidfd_open(pid)
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        streams = [(out_r, out), (err_r, err)] + ([(report_r, report)] if report is not None else [])
        for fd, cap in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, cap)
        pending = memoryview((stdin_data or "").encode("utf-8"))
        if in_w is not None:
            os.set_blocking(in_w, False)
            if pending:
                sel.register(in_w, selectors.EVENT_WRITE, "stdin")
            else:
                os.close(in_w)
                in_w = None
        deadline = start + timeout
        status = None
        open_streams = len(streams)
        try:
            while status is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                for key, _ in sel.select(remaining):
                    if key.data == "exit":
                        _, status, usage = os.wait4(pid, 0)
                    elif key.data == "stdin":
                        try:
                            n = os.write(in_w, pending[:65536])
                            pending = pending[n:]
                        except BlockingIOError:
                            n = 0
                        except OSError:  # the snippet closed its stdin
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(in_w)
                            os.close(in_w)
                            in_w = None
                    else:
                        open_streams -= self._read(key, sel)
            duration = time.monotonic() - start
            timed_out = status is None
            if timed_out:  # wall-clock timeout: stop the snippet, then everything it started
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
            self._kill_leftovers()  # daemons and grandchildren die with the snippet
            drain_deadline = time.monotonic() + 1.0
            while open_streams > 0 and time.monotonic() < drain_deadline:
                events = sel.select(max(0.0, drain_deadline - time.monotonic()))
                for key, _ in events:
                    if key.data not in ("exit", "stdin"):
                        open_streams -= self._read(key, sel)
                if not events:
                    break
        finally:
            sel.close()
            os.close(pidfd)
            if in_w is not None:
                os.close(in_w)
        return status, usage.ru_utime + usage.ru_stime, timed_out, duration, out, err

    @staticmethod
    def _read(key, sel) -> int:
        """Read what is available; returns 1 when the stream reached EOF."""
        try:
            data = os.read(key.fd, 1 << 16)
        except BlockingIOError:
            return 0
        except OSError:
            data = b""
        if not data:
            sel.unregister(key.fd)
            return 1
        key.data.add(data)
        return 0

    def _kill_leftovers(self) -> None:
        """SIGKILL everything the snippet started (double forks and new sessions included) and reap it.

        Call only after the snippet process itself was reaped."""
        if self.own_pidns:
            try:
                os.kill(-1, signal.SIGKILL)  # as init of our own namespace: every process in it but us
            except ProcessLookupError:
                pass
            _reap_all(block=True)
            return
        # Subreaper: when a process dies its orphans become our children; kill and reap until none are left.
        for _ in range(10_000):
            kids = _children()
            if not kids:
                return
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _reap_all(block=False)
            time.sleep(0.0005)


def _result(status: int, cpu_s: float, timed_out: bool, timeout: float, duration: float, out: Capture,
            err: Capture, setup_done: bool, oom: bool) -> dict:
    """The ExecResult fields for a finished snippet."""
    stderr = err.text()
    return_code = None
    cpu_limit = int(timeout) + 1
    if timed_out:
        kind, reason = "timeout", f"wall-clock timeout after {timeout:g} s"
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return_code = -sig
        kind, reason = "error", f"killed by signal {signal.Signals(sig).name}"
        if sig == signal.SIGXCPU and cpu_s >= cpu_limit - 0.05:  # the limit fired, not a self-sent signal
            kind, reason, return_code = "timeout", f"CPU time limit exceeded ({cpu_limit} s)", None
        elif sig == signal.SIGKILL and oom:
            reason = "out of memory (memory limit of the snippet's processes)"
    else:
        return_code = os.WEXITSTATUS(status)
        kind = "ok" if return_code == 0 else "error"
        reason = "" if return_code == 0 else f"exit code {return_code}"
        if not setup_done:  # the sandbox failed before the snippet started
            lines = stderr.strip().splitlines()
            kind, reason, return_code = "sandbox_error", lines[-1] if lines else "sandbox set-up failed", None
    if kind == "error" and (_last_line(stderr).startswith("MemoryError") or oom) and "out of memory" not in reason:
        reason = f"out of memory ({reason})"
    return {"status": kind, "stdout": out.text(), "stderr": stderr, "return_code": return_code,
            "duration_s": round(duration, 6), "truncated": out.truncated or err.truncated, "reason": reason}


FETCH_GRACE_S = 5.0  # how long past the timeout the job process may take to read `fetch_files` back


class _Sink:
    """All bytes of a stream (the fetched-files report: bounded by the job's disk)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, data: bytes) -> None:
        self.data += data


def _read_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1)
    except BlockingIOError:
        return b""


def _reap_all(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _children() -> list[int]:
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:  # no CONFIG_PROC_CHILDREN: fall back to a scan of /proc
        kids = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
        return kids


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


EXIT_EOF = 3  # a request handler saw the parent close the protocol


def main() -> None:
    cfg = json.loads(sys.argv[1])
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # stray prints from preloaded modules must not corrupt the protocol
    os.close(devnull)
    worker = Worker(cfg)
    _send(proto_out, worker.setup())
    if cfg.get("sessions"):
        _serve_sessions(worker, proto_out)
    elif cfg.get("fork_per_request", True):
        _serve_forking(worker, proto_in, proto_out)
    else:
        reader = _LineReader(proto_in)
        while (line := reader.readline()) is not None:
            _send(proto_out, _handle(worker, line))


def _serve_forking(worker: Worker, proto_in: int, proto_out: int) -> None:
    """Serve each request from a fresh fork of this pristine process, which itself never reads a request or an
    output: nothing of one snippet (code, output) can be found in the memory of the next. The fork happens when a
    request arrives, so an idle worker has no child."""
    while True:
        select.select([proto_in], [], [])  # wait for a request (or EOF) without reading it
        pid = os.fork()
        if pid == 0:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            line = _LineReader(proto_in).readline()
            if line is None:
                os._exit(EXIT_EOF)
            _send(proto_out, _handle(worker, line))
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_EOF:
            return
        if status != 0:  # the handler died before answering: clean up after it and answer for it
            worker._kill_leftovers()
            _send(proto_out, {"status": "sandbox_error", "reason": f"sandbox request handler died ({status})"})


def _handle(worker: Worker, line: bytes) -> dict:
    try:
        return worker.execute(json.loads(line))
    except Exception as e:  # a bug here must not take the worker down silently
        return {"status": "sandbox_error", "reason": f"worker error: {type(e).__name__}: {e}"}


class _LineReader:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        # read into a buffer allocated now: a session reads its next request under the last call's address-space
        # limit, where a fresh 1 MiB read buffer (an mmap) would already fail
        self.chunk = bytearray(1 << 16)

    def readline(self) -> bytes | None:
        """The next line without its newline; None at EOF."""
        while b"\n" not in self.buf:
            n = os.readv(self.fd, [self.chunk])
            if not n:
                return None
            self.buf += self.chunk[:n]
        line, self.buf = self.buf.split(b"\n", 1)
        return line


def _send(fd: int, obj: dict) -> None:
    data = (json.dumps(obj) + "\n").encode()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue


# ---------------------------------------------------------------------------------------------------------------
# Sessions: a zygote that forks one long-lived, isolated interpreter per session
# ---------------------------------------------------------------------------------------------------------------
# The zygote is a worker started with {"sessions": true} whose stdin/stdout is a unix socket. It only forks: on
# {"op": "open"} it makes the session's directory, forks the interpreter and hands the parent process the
# interpreter's ends ([control socket, stdout, stderr, pidfd]) with SCM_RIGHTS. It never sees a snippet or an
# output, so what one session ran is never in the memory that the next session inherits. The parent talks to each
# interpreter directly: it sends {"op": "run"} / {"op": "fork"} on the control socket and watches the timeout.
SESSION_REAP_S = 2.0  # the zygote reaps orphans this often
SESSION_ZOMBIE_S = 30.0  # a dead session stays a zombie this long: its /proc/PID/stat tells the parent how it died


def _all_children() -> list[int]:
    """Children of every thread of this process (zombies included)."""
    kids: list[int] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                kids += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return kids


def _reap_children(keep: dict[int, float], keep_s: float) -> None:
    """Reap dead children at once, except those in `keep` (sessions): they are reaped `keep_s` after they died."""
    now = time.monotonic()
    for pid in _all_children():
        if pid in keep:
            try:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                    continue
            except ChildProcessError:
                keep.pop(pid, None)
                continue
            keep[pid] = keep[pid] or now
            if now - keep[pid] < keep_s:
                continue
            keep.pop(pid, None)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _serve_sessions(worker: Worker, proto: int) -> None:
    import socket

    sock = socket.socket(fileno=proto)
    reader = _LineReader(proto)
    last_reap = time.monotonic()
    roots: dict[int, float] = {}  # session interpreters forked here -> when first seen dead (0: alive)
    while True:
        ready, _, _ = select.select([proto], [], [], SESSION_REAP_S)
        if time.monotonic() - last_reap >= SESSION_REAP_S:
            _reap_children(roots, SESSION_ZOMBIE_S)
            last_reap = time.monotonic()
        if not ready:
            continue
        line = reader.readline()
        if line is None:
            return
        fds: list[int] = []
        try:
            req = json.loads(line)
            if req.get("op") == "open":
                reply, fds = _open_session(worker, req)
                roots[reply["pid"]] = 0.0
            elif req.get("op") == "reap":  # the parent killed this session: no need to keep its zombie
                pid = int(req["pid"])
                if pid in roots:
                    roots.pop(pid)
                    os.waitpid(pid, 0)
                _reap_children(roots, SESSION_ZOMBIE_S)  # its own dead children came to us when it died
                reply = {"ok": True}
            elif req.get("op") == "rmtree":
                root = os.path.realpath(str(req["root"]))
                if os.path.dirname(root) != os.path.realpath(worker.cfg["job_root"]) or \
                        not os.path.basename(root).startswith("sess-"):
                    raise ValueError(f"not a session directory: {root}")
                worker._remove_jobdir(root)
                reply = {"ok": True}
            else:
                raise ValueError(f"unknown op {req.get('op')!r}")
        except Exception as e:  # a bad request must not take the zygote down
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        try:
            socket.send_fds(sock, [(json.dumps(reply) + "\n").encode()], fds)
        finally:
            for fd in fds:
                os.close(fd)


def _open_session(worker: Worker, req: dict) -> tuple[dict, list[int]]:
    import socket

    root = tempfile.mkdtemp(prefix="sess-", dir=worker.cfg["job_root"])
    member = os.path.join(root, "m")  # this interpreter's own directory: w (cwd), c (cells), f (forks, nested)
    for d in (member, *_member_dirs(member)):
        os.mkdir(d, 0o700)
    uid = worker.cfg.get("run_as_uid")
    for d in (root, member, *_member_dirs(member)) if uid is not None else ():
        os.chown(d, uid, uid)
    ctl_parent, ctl_child = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ctl_parent.close()
        _session_child(worker.cfg, req, member, (ctl_child.detach(), out_w, err_w), worker.bpf)
    ctl_child.close()
    os.close(out_w)
    os.close(err_w)
    pidfd = os.pidfd_open(pid)
    return {"ok": True, "pid": pid, "root": root}, [ctl_parent.detach(), out_r, err_r, pidfd]


def _member_dirs(member: str) -> list[str]:
    """A session's writable directories: w (its working directory), c (the cells it ran: tracebacks quote them),
    f (the directories of its forks). The member directory itself is not writable, as a job root is not."""
    return [os.path.join(member, d) for d in ("w", "c", "f")]


def _session_child(cfg: dict, req: dict, member: str, fds: tuple[int, int, int], bpf: bytes | None) -> None:
    """The session's interpreter: the isolation of a snippet's child (`_child`), kept alive between calls.
    Never returns."""
    code = 70
    try:
        _detach()
        ctl, out_fd, err_fd = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.dup2(ctl, 3, inheritable=False)  # the control socket: not for the snippet's subprocesses
        os.closerange(4, 1 << 16)
        work = os.path.join(member, "w")
        os.chdir(work)
        os.environ.clear()
        os.environ.update(dict(cfg["env"], HOME=work, TMPDIR=work, PWD=work))
        # the parent re-arms AS and CPU before each call (their soft limits only, when the seccomp filter keeps
        # the snippet from raising them: see SOFT_LIMITS_SAFE); the session's own pids and memory cgroups
        soft_only = bool(bpf) and SOFT_LIMITS_SAFE
        set_limits(cfg, req.get("memory_mb"), req.get("cgroups") or (), soft_only=soft_only)
        cfg["soft_limits"] = soft_only
        drop_privileges(cfg)
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # what a snippet leaves behind stays in this tree
        if cfg.get("landlock_abi"):
            landlock_restrict(cfg["landlock_abi"], cfg["read_paths"], _member_dirs(member), ["/dev/null"])
        if bpf:
            seccomp_load(bpf)
        import builtins
        import faulthandler
        import io
        import types

        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8",
                                      errors="backslashreplace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                      errors="backslashreplace", line_buffering=True)
        sys.path.insert(0, work)
        sys.set_int_max_str_digits(0)
        faulthandler.enable(file=2)  # a crash (segfault) says where in its stderr
        main = types.ModuleType("__main__")
        main.__dict__.update(__builtins__=builtins, __cached__=None, __spec__=None, __package__=None)
        sys.modules["__main__"] = main
        _session_loop(cfg, member, main)
    except BaseException as e:
        try:
            os.write(2, f"torl-sandbox-setup-error: {type(e).__name__}: {e}\n".encode())
            _send(3, {"ready": False, "error": f"{type(e).__name__}: {e}"})
        except OSError:
            pass
    finally:
        os._exit(code)


def _session_loop(cfg: dict, member: str, main) -> None:
    """Serve {"op": "run"} and {"op": "fork"} on fd 3 until EOF (the parent closed the session). Never returns."""
    import socket
    import threading

    write, loads, read, fork_session = os.write, json.loads, _LineReader(3).readline, _fork_session
    _send(3, {"ready": True, "pid": os.getpid(), "soft_limits": bool(cfg.get("soft_limits"))})
    calls = 0
    # built now: with the address space at its limit, even formatting a message can fail
    no_memory = b"MemoryError: the call's memory limit is below what the session's interpreter already uses\n"
    done_error = b'{"done": true, "exit_code": 1}\n'
    forks: dict[int, float] = {}  # sessions forked from this one: reaped late (see SESSION_ZOMBIE_S)
    while True:
        line = read()
        if line is None:
            os._exit(0)
        req = loads(line)
        _reap_children(forks, SESSION_ZOMBIE_S)  # leftovers of the last call, killed by the parent
        if req.get("op") == "fork":
            member, read, pid = fork_session(cfg, member, read, socket)
            if pid:
                forks[pid] = 0.0
            else:
                forks.clear()
            continue
        calls += 1
        try:
            code = _session_call(req, os.path.join(member, "c"), calls, main, threading)
            done = memoryview(b'{"done": true, "exit_code": %d}\n' % int(code))  # no json: a snippet may patch it
        except MemoryError:  # before the snippet ran: the call's limit is below what this interpreter holds
            write(2, no_memory)
            done = memoryview(done_error)
        while done:
            done = done[write(3, done):]


def _session_call(req: dict, cells: str, n: int, main, threading) -> int:
    """One call: the snippet runs in the session's globals from its own file `cellN.py`; returns its exit code
    (`exit()` ends the call, not the session)."""
    import io

    stdin = req.get("stdin")
    if stdin is None:
        fd = os.open(os.devnull, os.O_RDONLY)
    else:
        fd, w = os.pipe()
        data = stdin.encode("utf-8")

        def feed() -> None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(w, view[:65536]):]
            except OSError:
                pass
            finally:
                os.close(w)

        threading.Thread(target=feed, daemon=True).start()
    os.dup2(fd, 0)
    os.close(fd)
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    source = req["code"]
    path = os.path.join(cells, f"cell{n}.py")
    try:
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(source)
    except OSError as e:  # the sessions' tmpfs is full (another session may have filled it): the call still runs
        try:  # (it may be the one that frees room), under the same name; its traceback cannot quote its lines
            os.unlink(path)
        except OSError:
            pass
        os.write(2, f"torl: cannot save this cell as {path} ({e}); it runs all the same\n".encode(
            "utf-8", "backslashreplace"))
    sys.argv = [path]
    main.__dict__["__file__"] = path
    before = set(threading.enumerate())
    code = _exec_source(source, path, main)
    for t in set(threading.enumerate()) - before:  # as at interpreter exit: non-daemon threads are joined
        if not t.daemon and t is not threading.current_thread():
            t.join()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    return code


def _copy_tree(src: str, dst: str, sh) -> None:
    """Copy files, directories and symlinks (contents only: seccomp forbids chmod/utime, so no copystat)."""
    os.mkdir(dst, 0o700)
    with os.scandir(src) as entries:
        for e in entries:
            target = os.path.join(dst, e.name)
            if e.is_symlink():
                os.symlink(os.readlink(e.path), target)
            elif e.is_dir():
                _copy_tree(e.path, target, sh)
            elif e.is_file():
                sh.copyfile(e.path, target)


def _fork_session(cfg: dict, member: str, read, socket) -> tuple[str, object, int]:
    """{"op": "fork"}: fork this interpreter. The copy gets its own directory (a copy of this one's working
    directory, nested below it: m/f/XXXX), confined to it by one more Landlock layer that still lets it read the
    cells of its ancestors (tracebacks of functions they defined quote them), and its own control socket and
    pipes, handed to the parent with a pidfd. Returns (member, readline, the copy's pid or 0 in the copy) of whichever process
    this is after the fork."""
    import shutil as sh

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    child_member = tempfile.mkdtemp(dir=os.path.join(member, "f"))
    ctl_parent, ctl_child = socket.socketpair()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ctl_parent.close()
            for fd in (out_r, err_r):
                os.close(fd)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.dup2(ctl_child.fileno(), 3, inheritable=False)
            for fd in (out_w, err_w):
                os.close(fd)
            ctl_child.close()
            _copy_tree(os.path.join(member, "w"), os.path.join(child_member, "w"), sh)
            for name in ("c", "f"):
                os.mkdir(os.path.join(child_member, name), 0o700)
            cfg["ancestor_cells"] = [*cfg.get("ancestor_cells", ()), os.path.join(member, "c")]
            work = os.path.join(child_member, "w")
            os.chdir(work)
            os.environ.update(HOME=work, TMPDIR=work, PWD=work)
            if sys.path and sys.path[0] == os.path.join(member, "w"):
                sys.path[0] = work
            if cfg.get("landlock_abi"):
                landlock_restrict(cfg["landlock_abi"], cfg["read_paths"] + cfg["ancestor_cells"],
                                  _member_dirs(child_member), ["/dev/null"])
            _send(3, {"ready": True, "pid": os.getpid(), "soft_limits": bool(cfg.get("soft_limits"))})
        except BaseException as e:
            try:
                _send(3, {"ready": False, "error": f"{type(e).__name__}: {e}"})
            finally:
                os._exit(70)
        return child_member, _LineReader(3).readline, 0
    ctl_child.close()
    os.close(out_w)
    os.close(err_w)
    fds = [ctl_parent.detach(), out_r, err_r, os.pidfd_open(pid)]
    try:
        with socket.socket(fileno=os.dup(3)) as ctl:
            socket.send_fds(ctl, [b'{"forked": true, "pid": %d}\n' % pid], fds)
    finally:
        for fd in fds:
            os.close(fd)
    return member, read, pid


if __name__ == "__main__":
    main()
