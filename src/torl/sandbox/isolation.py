"""Which isolation layers this machine allows, detected (never assumed), and how to start a worker with them."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, field

from torl.sandbox import _worker

log = logging.getLogger(__name__)

# Namespaces for the worker: its own pids (it is init, so it can kill every leftover), no network, its own mounts
# (a private /proc, a tmpfs per job) and its own System V / POSIX IPC objects.
UNSHARE_FLAGS = ("--pid", "--net", "--mount", "--ipc", "--fork", "--mount-proc", "--kill-child")


@dataclass
class IsolationPlan:
    """The layers a LocalSandbox will use. `missing` explains each layer that is off."""

    namespaces: bool = False  # pid + net + mount (+ user when not root) via `unshare`
    user_namespace: bool = False
    landlock_abi: int = 0  # 0 = off; >= 4 also blocks TCP, >= 6 also scopes signals
    seccomp: bool = False
    unprivileged_uid: bool = False  # root only: snippets run as a dedicated unprivileged uid per worker
    drop_capabilities: bool = False  # root whose Python is not world-readable: uid 0 with every capability dropped
    cgroup_pids: str = ""  # a pids cgroup directory that worker cgroups are created under ("" = none)
    cgroup_memory: str = ""  # likewise for memory: one limit for all processes of a snippet
    missing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def worker_command(self, python: str, worker_script: str, config_json: str) -> list[str]:
        cmd = [python, "-I", worker_script, config_json]
        if not self.namespaces:
            return cmd
        user = ("--user", "--map-root-user") if self.user_namespace else ()
        return [shutil.which("unshare") or "unshare", *user, *UNSHARE_FLAGS, "--", *cmd]


def _unshare_works(user_ns: bool) -> tuple[bool, str]:
    exe = shutil.which("unshare")
    if exe is None:
        return False, "the `unshare` program (util-linux) is not installed"
    cmd = [exe, *(("--user", "--map-root-user") if user_ns else ()), *UNSHARE_FLAGS, "--", "true"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"`unshare` failed: {e}"
    if proc.returncode != 0:
        return False, f"`unshare` refused: {proc.stderr.decode(errors='replace').strip()[:200]}"
    return True, ""


def _seccomp_available() -> tuple[bool, str]:
    try:
        _worker.build_seccomp_bpf()
    except Exception as e:  # ImportError (no pyseccomp / libseccomp) or a kernel without seccomp
        return False, f"{type(e).__name__}: {e}"
    return True, ""


def detect(mode: str = "auto") -> IsolationPlan:
    """Probe the machine. mode "auto": use what works and warn about the rest; "strict": raise if a layer is
    missing; "none": rlimits, scrubbed environment and a fresh directory only (for debugging)."""
    if mode not in ("auto", "strict", "none"):
        raise ValueError(f"isolation must be 'auto', 'strict' or 'none', got {mode!r}")
    plan = IsolationPlan()
    if mode == "none":
        plan.missing = {"all": "isolation='none' was requested"}
        return plan
    root = os.geteuid() == 0
    plan.namespaces, why = _unshare_works(user_ns=not root)
    plan.user_namespace = plan.namespaces and not root
    if not plan.namespaces:
        plan.missing["namespaces"] = why
    if sys.platform == "linux":
        plan.landlock_abi = _worker.landlock_abi()
    if not plan.landlock_abi:
        plan.missing["landlock"] = "the kernel has no Landlock (or it is disabled)"
    plan.seccomp, why = _seccomp_available()
    if not plan.seccomp:
        plan.missing["seccomp"] = why
    if root:
        plan.unprivileged_uid = all(_world_readable(p) for p in read_only_paths())
        plan.drop_capabilities = not plan.unprivileged_uid
        plan.cgroup_pids = _cgroup_root("pids", "pids.max", "8")
        if not plan.cgroup_pids:
            plan.missing["cgroup_pids"] = "no writable pids cgroup: process counts are not capped"
        plan.cgroup_memory = _cgroup_root("memory", "memory.limit_in_bytes", str(1 << 30)) or _cgroup_root(
            "memory", "memory.max", str(1 << 30))
        if not plan.cgroup_memory:
            plan.missing["cgroup_memory"] = "no writable memory cgroup: memory is limited per process only"
    if mode == "strict" and set(plan.missing):
        raise RuntimeError(f"isolation='strict' but these layers are unavailable: {plan.missing}")
    for layer, why in plan.missing.items():
        log.warning("sandbox isolation layer %s is off: %s", layer, why)
    return plan


def _world_readable(path: str) -> bool:
    """Can an unprivileged uid reach and read `path` (o+x on every ancestor, o+r on the path)?"""
    path = os.path.abspath(path)
    parts = path.split(os.sep)
    for i in range(2, len(parts)):
        if not os.stat(os.sep.join(parts[:i])).st_mode & 0o001:
            return False
    mode = os.stat(path).st_mode
    return bool(mode & 0o004)


def _cgroup_root(controller: str, limit_file: str, value: str) -> str:
    """A cgroup directory of `controller` in which we may create children and set `limit_file` (v1 hierarchy of
    that controller, our own v1 cgroup in it, or our own v2 cgroup); "" when there is none."""
    own_v1, own_v2 = "/", ""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, controllers, path = line.rstrip("\n").split(":", 2)
                if controller in controllers.split(","):
                    own_v1 = path
                elif controllers == "":
                    own_v2 = path
    except OSError:
        pass
    candidates = [f"/sys/fs/cgroup/{controller}{own_v1}".rstrip("/"), f"/sys/fs/cgroup/{controller}"]
    if own_v2:
        candidates.append(f"/sys/fs/cgroup{own_v2}".rstrip("/"))
    for root in candidates:
        probe = os.path.join(root, f"torl-probe-{secrets.token_hex(8)}")  # not the PID: same in other PID namespaces
        try:
            os.mkdir(probe)
        except OSError:
            continue
        try:
            with open(os.path.join(probe, limit_file), "w") as f:
                f.write(value)
            return root
        except OSError:
            continue
        finally:
            os.rmdir(probe)
    return ""


# The /etc files Python and libc read for ordinary work (dynamic loading, time zones, user names); not /etc itself.
SAFE_ETC_FILES = ("ld.so.cache", "ld.so.conf", "localtime", "passwd", "group", "nsswitch.conf", "hosts",
                  "os-release", "mime.types", "timezone")


def read_only_paths() -> list[str]:
    """What snippets may read: the interpreter's libraries (stdlib and site-packages, not the caller's sys.path:
    that can hold a checkout or a home directory) and system libraries."""
    paths = {"/usr", "/lib", "/lib64", "/bin", "/dev/urandom", "/dev/zero", "/sys/devices/system/cpu"}
    paths.update(f"/etc/{name}" for name in SAFE_ETC_FILES)
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
            try:
                paths.add(sysconfig.get_paths(vars=scheme_vars or None)[key])
            except KeyError:
                pass
    return sorted(p for p in paths if os.path.exists(p))
