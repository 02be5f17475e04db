"""Adversarial suite for LocalSandbox: hostile snippets, each checked for the right status within timeout + 2 s, a
healthy host and pool, nothing outside the job directory, no surviving process, and a normal next snippet.

Run the safe attacks first, the destructive ones (fork bombs, kill(-1), memory bombs in many processes) only once
those pass; the destructive ones run only where the sandbox has its own PID namespace:
    pytest tests/sandbox/test_attacks.py -m "not destructive"
    pytest tests/sandbox/test_attacks.py -m destructive

Every attack goes through `attack_helpers.run_attack`. Files an attack tries to create carry a per-attack marker, so
/tmp and the working directory (shared with other programs) are searched for that marker; the home directory,
/dev/shm, the job root and the host's System V IPC objects must not change at all.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
from textwrap import dedent

import pytest

from tests.sandbox.attack_helpers import (
    Attack,
    Host,
    is_truncated,
    return_code,
    run_attack,
    stderr_has,
    stdout_has,
    stdout_int_at_most,
    stdout_lacks,
)
from torl.sandbox.local import LocalSandbox
from torl.sandbox.server import ServerThread, create_app

X86_64 = platform.machine() in ("x86_64", "AMD64")
SYS_KILL = {"x86_64": 62, "aarch64": 129}.get(platform.machine())
DENIED = ("PermissionError",)  # what a write, read or socket outside the sandbox's rights raises
METADATA_DENIED = ("PermissionError", "Read-only file system")  # chmod/utime/xattr: seccomp or a read-only mount


def A(name: str, code: str, expect: str | tuple[str, ...], **kw) -> Attack:  # noqa: N802 - a table row
    if kw.get("followup"):
        kw["followup"] = dedent(kw["followup"]).strip() + "\n"
    return Attack(name, dedent(code).strip() + "\n", (expect,) if isinstance(expect, str) else expect, **kw)


def denied(name: str, code: str, *errors: str, **kw) -> Attack:
    """An attack that must fail with one of `errors` (PermissionError by default) and never print ESCAPED."""
    return A(name, code, "error", checks=(stderr_has(*(errors or DENIED)), stdout_lacks("ESCAPED")), **kw)


def write_into(name: str, directory: str, before: str = "") -> Attack:
    code = f"import os\n{before}\nwith open(os.path.join({directory}, @MARK@), 'w') as f:\n    f.write('x')\n"
    return denied(name, code + "print('ESCAPED')")


# ---------------------------------------------------------------------------------------------------------------
# The attacks
# ---------------------------------------------------------------------------------------------------------------
ENDLESS = [
    A("infinite_loop", "while True:\n    pass", "timeout", timeout=1),
    A("sleep_forever", "import time\ntime.sleep(10**6)", "timeout", timeout=1),
    A("spinning_threads", """
        import threading
        def spin():
            while True:
                pass
        for _ in range(8):
            threading.Thread(target=spin).start()
        spin()
    """, "timeout", timeout=1),
    A("non_daemon_thread_blocks_exit", """
        import threading, time
        threading.Thread(target=time.sleep, args=(10**6,)).start()
        print('main done', flush=True)
    """, "timeout", timeout=1, checks=(stdout_has("main done"),)),
    A("sigterm_ignored_loop", """
        import signal
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGXCPU):
            signal.signal(s, signal.SIG_IGN)
        while True:
            pass
    """, "timeout", timeout=1),
    A("sigstop_self", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nprint('resumed')", "timeout", timeout=1),
    A("blocked_on_own_pipe", "import os\nr, w = os.pipe()\nos.read(r, 1)", "timeout", timeout=1),
    A("exec_into_sleep", "import os\nos.execv('/bin/sleep', ['sleep', '1000'])", "timeout", timeout=1),
    A("multiprocessing_child_joined_at_exit", """
        import multiprocessing, time
        multiprocessing.Process(target=time.sleep, args=(100,)).start()
        print('started', flush=True)
    """, "timeout", timeout=1, checks=(stdout_has("started"),)),
]

MEMORY = [
    A("memory_list_bomb", "x = []\nwhile True:\n    x.append(bytearray(10**7))", "error", timeout=3, memory_mb=256,
      checks=(stderr_has("MemoryError"), lambda r: None if "out of memory" in r.reason else f"reason {r.reason!r}")),
    A("memory_numpy_bomb", "import numpy as np\na = np.ones((10**5, 10**5))", "error", memory_mb=256,
      checks=(stderr_has("MemoryError"),)),
    A("memory_string_bomb", "s = 'x' * 10**11", "error", memory_mb=256, checks=(stderr_has("MemoryError"),)),
    A("memory_mmap_bomb", "import mmap\nm = mmap.mmap(-1, 1 << 40)", "error", memory_mb=256,
      checks=(stderr_has("Cannot allocate memory"),)),
    # memory_mb is the snippet's memory, not each of its processes': four children holding 300 MB each at the
    # same time must not fit in 512 MB (today RLIMIT_AS is per process, so a snippet may hold 64 x memory_mb).
    A("memory_split_across_processes", """
        import os, time
        r, w = os.pipe()  # a child reports once it holds its memory
        go_r, go_w = os.pipe()  # closed by the parent: the children may exit
        kids = {}
        for i in range(4):
            pid = os.fork()
            if pid == 0:
                os.close(r)
                os.close(go_w)
                block = b'\\x01' * (300 << 20)  # every page touched
                os.write(w, bytes([i]))
                os.read(go_r, 1)
                os._exit(0)
            kids[pid] = i
        os.close(w)
        os.close(go_r)
        time.sleep(1.5)
        os.set_blocking(r, False)
        try:
            holding = set(os.read(r, 64))
        except BlockingIOError:
            holding = set()
        holding -= {i for pid, i in kids.items() if os.waitpid(pid, os.WNOHANG)[0]}  # killed since
        print('held at once (MB):', 300 * len(holding))
    """, ("ok", "error"), timeout=10, memory_mb=512,
      checks=(lambda r: None if "held" not in r.stdout else stdout_int_at_most(512)(r),)),
]

PROCESSES = [
    A("process_cap_popen", """
        import subprocess
        procs = []
        try:
            for _ in range(200):
                procs.append(subprocess.Popen(['sh', '-c', 'sleep 100; : ' + @MARK@]))
        except OSError as e:
            print('stopped by', type(e).__name__)
        print('started', len(procs))
    """, "ok", timeout=5, checks=(stdout_has("stopped by"), stdout_int_at_most(64))),
    A("thread_cap", """
        import threading, time
        n = 0
        try:
            for _ in range(1000):
                threading.Thread(target=time.sleep, args=(100,), daemon=True).start()
                n += 1
        except RuntimeError as e:
            print('stopped by', e)
        print('threads', n)
    """, "ok", checks=(stdout_has("stopped by"), stdout_int_at_most(64))),
    A("background_shell_job", """
        import subprocess
        subprocess.run(['sh', '-c', '(sleep 100; : %s) &' % @MARK@])
        print('returned')
    """, "ok", checks=(stdout_has("returned"),)),
    A("double_fork_setsid_daemon_writes_later", """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(0.3)
                for d in ('/tmp', @HOME@, '/dev/shm', @CWD@):
                    try:
                        open(os.path.join(d, @MARK@), 'w').close()
                    except OSError:
                        pass
                time.sleep(100)
            os._exit(0)
        print('parent done')
    """, "ok", checks=(stdout_has("parent done"),), late_s=1.0),
    A("daemon_keeps_stdout_open", """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            while True:
                sys.stdout.write('daemon\\n')
                sys.stdout.flush()
                time.sleep(0.01)
        print('parent done', flush=True)
    """, "ok", checks=(stdout_has("parent done"),)),
    A("setsid_popen", """
        import subprocess
        subprocess.Popen(['sh', '-c', 'sleep 100; : ' + @MARK@], start_new_session=True)
        print('spawned')
    """, "ok"),
    A("nohup_system", """
        import os
        os.system('nohup sh -c "sleep 100; : %s" >/dev/null 2>&1 &' % @MARK@)
        print('spawned')
    """, "ok"),
    A("posix_spawn", "import os\nos.posix_spawn('/bin/sh', ['sh', '-c', 'sleep 100; : ' + @MARK@], {})", "ok"),
    A("zombie_army", "import os\nfor _ in range(20):\n    if os.fork() == 0:\n        os._exit(0)\nprint('forked')", "ok"),
]

SIGNALS = [
    A("signal_the_worker", """
        import os, signal
        blocked = 0
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGSTOP, signal.SIGKILL):
            try:
                os.kill(os.getppid(), sig)
            except PermissionError:
                blocked += 1
        print('blocked', blocked)
    """, "ok", checks=(stdout_has("blocked 6"),)),
    denied("pidfd_signal_the_worker", """
        import os, signal
        signal.pidfd_send_signal(os.pidfd_open(os.getppid()), signal.SIGKILL)
        print('ESCAPED')
    """),
    A("renice_and_pin_the_worker", """
        import os
        for attempt in (lambda: os.setpriority(os.PRIO_PROCESS, os.getppid(), 19),
                        lambda: os.setpriority(os.PRIO_USER, 0, 19),
                        lambda: os.sched_setaffinity(os.getppid(), {0})):
            try:
                attempt()
            except OSError:
                pass
        print('tried')
    """, "ok"),
    A("kill_own_process_group", "import os, signal\nos.killpg(0, signal.SIGKILL)", "error", checks=(return_code(-9),)),
    A("sigkill_self", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "error", checks=(return_code(-9),)),
]
if X86_64:
    SIGNALS.append(A("i386_syscall_abi_kill_probe", """
        import ctypes, mmap
        # kill(-1, 0) through the i386 syscall ABI (int 0x80), which a seccomp filter for x86_64 must not let by
        code = bytes([0xb8, 37, 0, 0, 0, 0xbb, 0xff, 0xff, 0xff, 0xff, 0xb9, 0, 0, 0, 0, 0xcd, 0x80, 0xc3])
        buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        buf.write(code)
        func = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
        print('ESCAPED' if func() == 0 else 'blocked')
    """, "error", checks=(return_code(-31), stdout_lacks("ESCAPED"))))  # SIGSYS

CRASHES = [
    A("os_exit_nonzero", "import os\nos._exit(3)", "error", checks=(return_code(3),)),
    A("os_exit_zero", "import os\nprint('bye', flush=True)\nos._exit(0)", "ok", checks=(stdout_has("bye"),)),
    A("sys_exit_message", "import sys\nsys.exit('bye')", "error", checks=(return_code(1), stderr_has("bye"))),
    A("segfault_ctypes", "import ctypes\nctypes.string_at(0)", "error", checks=(return_code(-11),)),
    A("abort", "import os\nos.abort()", "error", checks=(return_code(-6),)),
    A("c_stack_overflow", """
        import sys
        sys.setrecursionlimit(10**6)
        def f():
            return sorted([0], key=lambda _: f())
        f()
    """, "error", checks=(return_code(-11),)),
    A("recursion_error", "def f(n):\n    return f(n + 1)\nf(0)", "error", checks=(stderr_has("RecursionError"),)),
    # Model code often raises the recursion limit; the RecursionError must come back as an error, fast.
    A("raised_recursion_limit", """
        import sys
        sys.setrecursionlimit(3 * 10**5)
        def f(n):
            return f(n + 1) + 1
        f(0)
    """, "error", timeout=3, checks=(stderr_has("RecursionError"),)),
]

# The status must describe what happened, whatever the snippet prints or signals to itself.
STATUS_SPOOFING = [
    A("spoof_sandbox_error", """
        import sys
        sys.stderr.write('torl-sandbox-setup-error: the sandbox broke\\n')
        sys.exit(70)
    """, "error", checks=(return_code(70),)),
    A("self_sigxcpu_is_not_a_timeout", "import os, signal\nos.kill(os.getpid(), signal.SIGXCPU)", "error",
      checks=(return_code(-24),)),
]

OUTPUT = [
    A("print_100_mb", "import sys\nsys.stdout.write('x' * 100_000_000)", "ok", timeout=10, checks=(is_truncated,)),
    A("endless_stdout", "while True:\n    print('spam' * 20)", "timeout", timeout=1, checks=(is_truncated,)),
    A("endless_stderr", "import sys\nwhile True:\n    sys.stderr.write('e' * 100)", "timeout", timeout=1,
      checks=(is_truncated,)),
    A("stdout_closed", "import sys\nsys.stdout.close()\nprint('x')", "error", checks=(stderr_has("ValueError"),)),
    A("standard_fds_closed", "import os\nfor fd in (0, 1, 2):\n    os.close(fd)\nprint('lost')", "ok"),
    A("non_utf8_output", "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe\\x80 end\\n')", "ok",
      checks=(stdout_has("ok "), stdout_has("\ufffd"), stdout_has(" end"))),
    A("input_without_stdin", "input()", "error", checks=(stderr_has("EOFError"),)),
    A("read_big_stdin", "import sys\nprint(len(sys.stdin.read()))", "ok", stdin="y" * 10_000_000,
      checks=(stdout_has("10000000"),)),
    A("ignore_big_stdin", "print('ignored')", "ok", stdin="y" * 10_000_000, checks=(stdout_has("ignored"),)),
    A("read_controlling_tty", "open('/dev/tty')", "error", checks=(stderr_has("OSError", "PermissionError"),)),
    A("inherited_file_descriptors", "import os\nprint(sorted(os.listdir('/proc/self/fd')))", "ok",
      checks=(stdout_has("['0', '1', '2', '3']"),)),
]

LIMITS = [
    denied("raise_rlimit_as", """
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print('ESCAPED')
    """, "ValueError", "PermissionError"),
    denied("raise_rlimit_cpu_then_spin", """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))
        print('ESCAPED', flush=True)
        while True:
            pass
    """, "ValueError", "PermissionError"),
    denied("prlimit_raise_nofile", """
        import resource
        resource.prlimit(0, resource.RLIMIT_NOFILE, (4096, 4096))
        print('ESCAPED')
    """),
    denied("prlimit_the_worker", """
        import os, resource
        resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (3, 3))
        print('ESCAPED')
    """),
    A("ctypes_setrlimit", """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        class RLimit(ctypes.Structure):
            _fields_ = [('cur', ctypes.c_uint64), ('max', ctypes.c_uint64)]
        unlimited = RLimit(2**64 - 1, 2**64 - 1)
        print('ESCAPED' if libc.setrlimit(9, ctypes.byref(unlimited)) == 0 else 'blocked')  # RLIMIT_AS
    """, "ok", checks=(stdout_has("blocked"),)),
    A("open_many_files", """
        files = []
        try:
            for _ in range(1000):
                files.append(open('/dev/null'))
        except OSError as e:
            print('stopped by errno', e.errno)
        print('opened', len(files))
    """, "ok", checks=(stdout_has("stopped by errno 24"), stdout_int_at_most(64))),
    A("file_larger_than_limit", "with open('big', 'wb') as f:\n    f.write(b'x' * (20 << 20))", "error",
      checks=(stderr_has("File too large"),)),
    # A job directory needs a few MB; a snippet must not be able to fill the disk (64 files x 8 MB = 512 MB here).
    A("fill_the_disk", """
        blob = b'x' * (8 << 20)
        written = 0
        try:
            for i in range(64):
                with open(f'fill{i}', 'wb') as f:
                    f.write(blob)
                written += len(blob)
        except OSError as e:
            print('stopped by', e.strerror)
        print('written MB', written >> 20)
    """, "ok", timeout=5, checks=(stdout_int_at_most(500),)),
    # Cleaning the job directory must not delay the result past timeout + 2 s, whatever the snippet left there.
    # (On ext4 mounted with `discard` each rmdir costs ~4 ms: 0.3 s of mkdir is several seconds of cleanup.)
    A("many_directories_slow_cleanup", """
        import os, time
        start, n = time.monotonic(), 0
        try:
            while time.monotonic() - start < 0.3:
                os.mkdir(f'd{n}')
                n += 1
        except OSError:  # a quota on the job directory is fine
            pass
        time.sleep(100)
    """, "timeout", timeout=1),
    # Removing a job directory thousands of levels deep must neither fail nor leave it behind.
    A("deep_directory_tree", """
        import os
        for _ in range(1100):
            os.mkdir('d')
            os.chdir('d')
        print('deep')
    """, "ok", checks=(stdout_has("deep"),)),
]

FILESYSTEM = [
    write_into("write_tmp", "'/tmp'"),
    write_into("write_var_tmp", "'/var/tmp'"),
    write_into("write_dev_shm", "'/dev/shm'"),
    write_into("write_home", "@HOME@"),
    write_into("write_filesystem_root", "'/'"),
    write_into("write_cwd_after_chdir", "'.'", before="os.chdir(@CWD@)"),
    write_into("write_parent_of_job_dir", "'.'", before="os.chdir('..')"),
    write_into("write_job_root", "@JOB_ROOT@"),
    write_into("write_host_test_dir", "@VICTIM_DIR@"),
    write_into("write_site_packages", "os.path.dirname(os.path.dirname(__import__('numpy').__file__))"),
    A("write_other_workers_job_dirs", """
        import os
        denied = 0
        for w in ('w0', 'w1'):
            try:
                open(os.path.join(@JOB_ROOT@, w, @MARK@), 'w').close()
                print('ESCAPED', w)
            except PermissionError:
                denied += 1
        print('denied', denied)
    """, "ok", checks=(stdout_has("denied 2"),)),
    denied("append_to_worker_log", "import os\nopen(os.path.join(@JOB_ROOT@, 'w0.log'), 'a')\nprint('ESCAPED')"),
    denied("append_to_python_stdlib", "import os\nopen(os.__file__, 'a')\nprint('ESCAPED')"),
    denied("write_proc_sys", "open('/proc/sys/kernel/hostname', 'w').write('pwned')\nprint('ESCAPED')"),
    denied("write_own_oom_score", "open('/proc/self/oom_score_adj', 'w').write('-1000')\nprint('ESCAPED')"),
    denied("write_pids_cgroup_limit", """
        line = [x for x in open('/proc/self/cgroup').read().splitlines() if ':pids:' in x][0]
        open('/sys/fs/cgroup/pids' + line.split(':', 2)[2] + '/pids.max', 'w').write('max')
        print('ESCAPED')
    """),
    denied("symlink_out_then_write", """
        import os
        os.symlink('/tmp', 'link')
        open(os.path.join('link', @MARK@), 'w').write('x')
        print('ESCAPED')
    """),
    A("symlinks_to_host_files_at_cleanup", """
        import os
        os.symlink(@VICTIM_FILE@, 'file_link')
        os.symlink(@VICTIM_DIR@, 'dir_link')
        os.mkdir('sub')
        os.symlink(@VICTIM_DIR@, 'sub/dir_link')
        print('planted')
    """, "ok", checks=(stdout_has("planted"),)),
    denied("hardlink_host_file", """
        import os
        os.link(@VICTIM_FILE@, 'hard')
        open('hard', 'a').write('pwned')
        print('ESCAPED')
    """, "PermissionError", "Invalid cross-device link"),
    denied("rename_out_of_job_dir", """
        import os
        open('f', 'w').close()
        os.rename('f', os.path.join('/tmp', @MARK@))
        print('ESCAPED')
    """, "PermissionError", "Invalid cross-device link"),
    denied("mknod_device", "import os\nos.mknod('null2', 0o20666, os.makedev(1, 3))\nprint('ESCAPED')"),
    denied("posix_shared_memory", """
        from multiprocessing import shared_memory
        shared_memory.SharedMemory(name=@MARK@, create=True, size=4096)
        print('ESCAPED')
    """),
    # Landlock does not cover metadata: uid 0 without capabilities still owns every root-owned file it can name.
    denied("chmod_job_root", "import os\nos.chmod(@JOB_ROOT@, 0o777)\nprint('ESCAPED')", *METADATA_DENIED),
    denied("chmod_host_file", "import os\nos.chmod(@VICTIM_FILE@, 0o777)\nprint('ESCAPED')", *METADATA_DENIED),
    denied("utime_host_file", "import os\nos.utime(@VICTIM_DIR@, (0, 0))\nprint('ESCAPED')", *METADATA_DENIED),
    denied("setxattr_host_file", "import os\nos.setxattr(@VICTIM_FILE@, 'user.torl', b'x')\nprint('ESCAPED')",
           *METADATA_DENIED),
]

SECRETS_AND_PRIVILEGE = [
    denied("read_etc_shadow", "print(open('/etc/shadow').read())"),
    denied("read_host_secret_file", "print(open(@SECRET_FILE@).read())"),
    denied("list_job_root", "import os\nprint(os.listdir(@JOB_ROOT@))"),
    denied("read_worker_log", "import os\nprint(open(os.path.join(@JOB_ROOT@, 'w0.log')).read())"),
    A("environment_secret", """
        import os
        leak = @SECRET_NAME@ in os.environ or any(@SECRET_VALUE@ in v for v in os.environ.values())
        print('LEAK' if leak else 'clean', sorted(os.environ))
    """, "ok", checks=(stdout_has("clean"),)),
    A("proc_environ_scan", """
        import os
        leaks = []
        for pid in filter(str.isdigit, os.listdir('/proc')):
            for part in ('environ', 'cmdline'):
                try:
                    data = open(f'/proc/{pid}/{part}', 'rb').read()
                except OSError:
                    continue
                if @SECRET_VALUE@.encode() in data:
                    leaks.append((pid, part))
        print('LEAK' if leaks else 'hidden', leaks)
    """, "ok", checks=(stdout_has("hidden"),)),
    A("peek_into_the_worker", """
        import os
        ppid, opened = os.getppid(), []
        for what in ('environ', 'mem', 'maps', 'auxv', 'stack', 'syscall'):
            try:
                open(f'/proc/{ppid}/{what}', 'rb').read(64)
                opened.append(what)
            except OSError:
                pass
        for what in ('root', 'cwd', 'map_files'):
            try:
                os.listdir(f'/proc/{ppid}/{what}')
                opened.append(what)
            except OSError:
                pass
        for fd in os.listdir(f'/proc/{ppid}/fd'):  # the worker's protocol pipes are among these
            for attempt in (os.readlink, lambda p: os.close(os.open(p, os.O_WRONLY))):
                try:
                    attempt(f'/proc/{ppid}/fd/{fd}')
                    opened.append(f'fd/{fd}')
                except OSError:
                    pass
        print('opened', opened)
    """, "ok", checks=(stdout_has("opened []"),)),
    denied("read_test_process_environ", "print(open('/proc/@TEST_PID@/environ', 'rb').read())",
           "FileNotFoundError", "PermissionError"),
    A("ptrace_the_worker", """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        print('ESCAPED' if libc.ptrace(16, os.getppid(), None, None) == 0 else 'blocked')  # PTRACE_ATTACH
    """, "ok", checks=(stdout_has("blocked"),)),
    A("mount_tmpfs", """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        os.mkdir('m')
        print('ESCAPED' if libc.mount(b'none', b'm', b'tmpfs', 0, None) == 0 else 'blocked')
    """, "ok", checks=(stdout_has("blocked"),)),
    A("unshare_namespaces", """
        import ctypes, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        escaped = libc.unshare(0x10000000 | 0x00020000) == 0  # CLONE_NEWUSER | CLONE_NEWNS
        escaped |= subprocess.run(['unshare', '-r', 'true'], capture_output=True).returncode == 0
        print('ESCAPED' if escaped else 'blocked')
    """, "ok", checks=(stdout_has("blocked"),)),
    denied("realtime_scheduling", "import os\nos.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))\nprint('ESCAPED')"),
    denied("raise_own_priority", "import os\nos.nice(-5)\nprint('ESCAPED')"),
    denied("setuid_to_nobody", "import os\nos.setuid(65534)\nprint('ESCAPED')"),
    denied("chroot_escape", "import os\nos.chroot('.')\nprint('ESCAPED')"),
]

NETWORK = [
    denied("tcp_connect_to_host_port", """
        import socket
        socket.create_connection(('127.0.0.1', @TCP_PORT@), timeout=1).sendall(b'hi')
        print('ESCAPED')
    """),
    denied("http_to_the_sandbox_server", """
        import json, urllib.request
        body = json.dumps({'code': 'print(1)', 'language': 'python'}).encode()
        urllib.request.urlopen(f'http://127.0.0.1:@SERVER_PORT@/run_code', body, timeout=1)
        print('ESCAPED')
    """, "URLError"),
    denied("tcp_connect_ipv6_loopback", """
        import socket
        socket.create_connection(('::1', @TCP_PORT@), timeout=1)
        print('ESCAPED')
    """),
    denied("udp_send_to_host", """
        import socket
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'hi', ('127.0.0.1', @UDP_PORT@))
        print('ESCAPED')
    """),
    denied("dns_lookup", "import socket\nprint(socket.getaddrinfo('pypi.org', 443))\nprint('ESCAPED')", "gaierror"),
    denied("tcp_listen", "import socket\nsocket.create_server(('0.0.0.0', 0))\nprint('ESCAPED')"),
    denied("netlink_socket", "import socket\nsocket.socket(socket.AF_NETLINK, socket.SOCK_RAW)\nprint('ESCAPED')"),
    denied("packet_socket", "import socket\nsocket.socket(socket.AF_PACKET, socket.SOCK_RAW)\nprint('ESCAPED')"),
    denied("abstract_unix_socket_to_host", """
        import socket
        socket.socket(socket.AF_UNIX).connect('\\0' + @ABSTRACT@)
        print('ESCAPED')
    """, "PermissionError", "ConnectionRefusedError"),
    # Network namespaces do not separate path-named unix sockets (docker.sock, X11, databases, ...).
    denied("pathname_unix_socket_to_host", """
        import socket
        s = socket.socket(socket.AF_UNIX)
        s.connect(@UNIX_PATH@)
        s.sendall(b'hi')
        print('ESCAPED')
    """, "PermissionError", "ConnectionRefusedError", "FileNotFoundError"),
    A("bash_dev_tcp", """
        import subprocess
        rc = subprocess.run(['bash', '-c', 'echo hi > /dev/tcp/127.0.0.1/@TCP_PORT@'], capture_output=True).returncode
        print(f'rc={rc};')
    """, "ok", checks=(stdout_has("rc="), stdout_lacks("rc=0;"))),
]

# Kernel objects that outlive a process: they must neither stay on the host nor carry state to the next snippet.
IPC = [
    A("sysv_shared_memory", """
        import ctypes, zlib
        libc = ctypes.CDLL(None, use_errno=True)
        shmid = libc.shmget(zlib.crc32(@MARK@.encode()) & 0x7fffffff, 4096, 0o1000 | 0o600)  # IPC_CREAT
        print('created' if shmid >= 0 else 'blocked')
    """, "ok", followup="""
        import ctypes, zlib
        libc = ctypes.CDLL(None, use_errno=True)
        print('gone' if libc.shmget(zlib.crc32(@MARK@.encode()) & 0x7fffffff, 0, 0) < 0 else 'LEFTOVER')
    """, followup_checks=(stdout_has("gone"),)),
    A("sysv_message_queue_and_semaphores", """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.msgget(0, 0o1000 | 0o600), libc.semget(0, 4, 0o1000 | 0o600))  # IPC_PRIVATE, IPC_CREAT
    """, "ok"),
    A("posix_message_queue", """
        import ctypes, os
        rt = ctypes.CDLL('librt.so.1', use_errno=True)
        print(rt.mq_open(('/' + @MARK@).encode(), os.O_CREAT | os.O_RDWR, 0o600, None))
    """, "ok"),
]

STATE = [
    A("state_file_in_job_dir", "open('state.txt', 'w').write('x')\nprint('written')", "ok",
      followup="import os\nprint(sorted(set(os.listdir('.')) - {os.path.basename(__file__)}))",  # its own script
      followup_checks=(stdout_has("[]"),)),
    A("state_environment_variables", """
        import os
        os.environ['TORL_LEFTOVER'] = '1'
        os.putenv('TORL_LEFTOVER_PUTENV', '1')
    """, "ok", followup="import os\nprint(sorted(k for k in os.environ if 'LEFTOVER' in k))",
      followup_checks=(stdout_has("[]"),)),
    A("state_monkeypatched_modules", """
        import builtins, fractions, json, math, os, sys
        import numpy
        math.pi = 3
        numpy.pi = 3
        json.dumps = lambda *a, **k: 'hacked'
        builtins.len = lambda x: 0
        sys.modules['fractions'] = None
        sys.setrecursionlimit(50)
        os.umask(0o777)
    """, "ok", followup="""
        import fractions, json, math, os, sys
        import numpy
        umask = os.umask(0)
        pristine = (math.pi > 3.14 and numpy.pi > 3.14 and json.dumps(1) == '1' and len('ab') == 2
                    and fractions.Fraction(1, 2) == 0.5 and sys.getrecursionlimit() >= 1000 and umask != 0o777)
        print('pristine' if pristine else 'POLLUTED')
    """, followup_checks=(stdout_has("pristine"),)),
    # A fork server's freed heap still holds earlier requests and results: the next snippet must not read them.
    A("state_previous_output_in_memory", """
        import secrets
        token = 'LEAK-' + secrets.token_hex(16) + '-END'
        print(token)
        print((token + ' ') * 2000)  # large enough that its buffers live in the malloc heap
    """, "ok", followup="""
        import re
        pattern = re.compile(rb'LEAK-[0-9a-f]{32}-END')
        found = 0
        with open('/proc/self/mem', 'rb', 0) as mem:
            for line in open('/proc/self/maps'):
                fields = line.split()
                # every private writable mapping that is not a file: the heap and anonymous ones (obmalloc arenas)
                if not fields[1].startswith('rw') or (len(fields) > 5 and fields[5] != '[heap]'):
                    continue
                if int(fields[0].split('-')[1], 16) - int(fields[0].split('-')[0], 16) > 1 << 28:
                    continue  # huge reservations (e.g. allocator arenas) are untouched zero pages
                lo, hi = (int(x, 16) for x in fields[0].split('-'))
                try:
                    mem.seek(lo)
                    found += len(pattern.findall(mem.read(hi - lo)))
                except (OSError, ValueError, OverflowError):
                    pass
        print('found', found)
    """, followup_checks=(stdout_has("found 0"),)),
]

SAFE_ATTACKS = ENDLESS + MEMORY + PROCESSES + SIGNALS + CRASHES + STATUS_SPOOFING + OUTPUT + LIMITS + FILESYSTEM + \
    SECRETS_AND_PRIVILEGE + NETWORK + IPC + STATE

# Harmful to the host if the sandbox leaked: run only inside a PID namespace (see `require_pid_namespace`).
DESTRUCTIVE_ATTACKS = [
    A("fork_bomb", """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """, "timeout", timeout=2, destructive=True),
    A("shell_fork_bomb", """
        import subprocess, time
        subprocess.Popen(['bash', '-c', ':(){ :|:& };:'])
        time.sleep(1)
        print('survived')
    """, "ok", timeout=3, checks=(stdout_has("survived"),), destructive=True),
    A("memory_bomb_in_many_processes", """
        import os, time
        for _ in range(31):
            if os.fork() == 0:
                break
        hog = []
        try:
            while True:
                hog.append(b'\\x01' * (16 << 20))
        except MemoryError:
            pass
        time.sleep(100)
    """, "timeout", timeout=2, memory_mb=128, destructive=True),
    denied("kill_everyone", "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('ESCAPED')", destructive=True),
    denied("killpg_one_means_everyone", "import os, signal\nos.killpg(1, signal.SIGKILL)\nprint('ESCAPED')",
           destructive=True),
    A("kill_everyone_via_libc", """
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print('ESCAPED' if libc.kill(-1, 9) == 0 else 'blocked')
    """, "ok", checks=(stdout_has("blocked"),), destructive=True),
    A("kill_pid_1", """
        import os, signal
        blocked = 0
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(1, sig)
            except PermissionError:
                blocked += 1
        print('blocked', blocked)
    """, "ok", checks=(stdout_has("blocked 2"),), destructive=True),
    A("kill_host_processes_by_pid", """
        import os, signal
        for pid in (@TEST_PID@, @CANARY_PID@):
            try:
                os.kill(pid, signal.SIGKILL)
                print('ESCAPED', pid)
            except OSError as e:
                print('blocked', type(e).__name__)
    """, "ok", checks=(stdout_has("blocked"), stdout_lacks("ESCAPED")), destructive=True),
]
if SYS_KILL is not None:
    DESTRUCTIVE_ATTACKS.append(A("kill_everyone_via_raw_syscall", f"""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        print('ESCAPED' if libc.syscall({SYS_KILL}, ctypes.c_long(-1), 9) == 0 else 'blocked')
    """, "ok", checks=(stdout_has("blocked"),), destructive=True))


def test_attack_table_is_large_and_distinct():
    names = [a.name for a in SAFE_ATTACKS + DESTRUCTIVE_ATTACKS]
    assert len(names) == len(set(names)), "attack names must be unique"
    assert len(names) >= 40
    assert all(a.destructive for a in DESTRUCTIVE_ATTACKS) and not any(a.destructive for a in SAFE_ATTACKS)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def host(tmp_path_factory):
    bait = Host(tmp_path_factory.mktemp("attacks"))
    yield bait
    bait.close()


@pytest.fixture(scope="module", params=[False, True], ids=["default", "fork_per_request"])
def sandbox(host, request):
    """A 2-worker pool started while the test process holds a secret in its environment, with the Sandbox
    Fusion-compatible server in front of it on loopback (a port the snippets must not reach). Both modes: the
    default (training: one tenant) and fork_per_request (what `torl sandbox serve` uses: many tenants)."""
    previous = os.environ.get(host.secret_name)
    os.environ[host.secret_name] = host.secret_value
    pool = LocalSandbox(pool_size=2, fork_per_request=request.param)
    server = ServerThread(create_app(pool)).start()
    host.job_root, host.server_port = pool.job_root, server.port
    try:
        yield pool
    finally:
        server.stop()
        pool.close()
        if previous is None:
            os.environ.pop(host.secret_name, None)
        else:
            os.environ[host.secret_name] = previous


class SessionPerAttack:
    """The pool seen through interpreter sessions: each `run` (attack, followup, probe) opens a session, sets a
    variable in it, runs the snippet as the session's second call, and closes the session, so every check of
    `run_attack` (files, processes, the workers and now the session zygote too, the host) holds for sessions."""

    def __init__(self, pool: LocalSandbox) -> None:
        self.pool = pool

    def __getattr__(self, name: str):
        return getattr(self.pool, name)

    def run(self, code: str, **kwargs):
        with self.pool.session() as session:
            warm = session.run("state_before_the_attack = 1", timeout=10)
            assert warm.ok, warm
            return session.run(code, **kwargs)

    def worker_pids(self) -> list[int]:
        zygote = self.pool._sessions.zygote.host_pid() if self.pool._sessions and self.pool._sessions.zygote else None
        return self.pool.worker_pids() + ([zygote] if zygote else [])


# What an attack legitimately sees differently in a session: the end of a call joins no multiprocessing child (no
# atexit between calls: the child is killed with the call's leftovers instead), and fd 3 is the session's control
# socket (not inheritable: subprocesses do not get it).
SESSION_EXPECT = {"multiprocessing_child_joined_at_exit": {"expect": ("ok",)},
                  "inherited_file_descriptors": {"checks": (stdout_has("['0', '1', '2', '3', '4']"),)}}


@pytest.fixture(scope="module")
def sessions(sandbox):
    """The same pool (both modes), through sessions."""
    wrapper = SessionPerAttack(sandbox)
    wrapper.run("print(1)")  # start the zygote before the first attack looks at the pool
    return wrapper


def in_session(attack: Attack) -> Attack:
    return dataclasses.replace(attack, **SESSION_EXPECT.get(attack.name, {}))


def report(attack: Attack, result, problems: list[str]) -> str:
    return (f"attack {attack.name!r} broke the sandbox:\n  - " + "\n  - ".join(problems)
            + f"\nresult: status={result.status} rc={result.return_code} reason={result.reason!r} "
              f"duration={result.duration_s:.2f}\nstdout: {result.stdout[-400:]!r}\nstderr: {result.stderr[-600:]!r}")


# ---------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attack", SAFE_ATTACKS, ids=lambda a: a.name)
def test_attack(sandbox, host, attack):
    if attack.name in MULTI_TENANT_ONLY and not sandbox.fork_per_request:
        pytest.skip("by design only with fork_per_request: the default mode (one tenant, e.g. training) keeps "
                    "the worker's heap between snippets for speed")
    result, problems = run_attack(sandbox, host, attack)
    assert not problems, report(attack, result, problems)


# Attacks that only the multi-tenant mode must stop (see LocalSandbox's fork_per_request).
MULTI_TENANT_ONLY = ("state_previous_output_in_memory",)


@pytest.mark.parametrize("attack", SAFE_ATTACKS, ids=lambda a: a.name)
def test_attack_in_a_session(sessions, host, attack):
    result, problems = run_attack(sessions, host, in_session(attack))
    assert not problems, report(attack, result, problems)


def require_pid_namespace(sandbox: LocalSandbox) -> None:
    """Safety guard: destructive attacks run only where a leak cannot reach the host's processes."""
    if not sandbox.layers["pid_namespace"]:
        pytest.skip("the sandbox has no PID namespace here: destructive attacks could reach the host")
    probe = sandbox.run("import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]))", timeout=10)
    if probe.status != "ok" or not probe.stdout.strip().isdigit() or int(probe.stdout) > 5:
        pytest.skip(f"a snippet sees more than a handful of processes ({probe.stdout.strip()!r}): "
                    "no working PID namespace, destructive attacks could reach the host")


@pytest.mark.destructive
@pytest.mark.parametrize("attack", DESTRUCTIVE_ATTACKS, ids=lambda a: a.name)
def test_destructive_attack(sandbox, host, attack):
    require_pid_namespace(sandbox)
    result, problems = run_attack(sandbox, host, attack)
    assert not problems, report(attack, result, problems)


@pytest.mark.destructive
@pytest.mark.parametrize("attack", DESTRUCTIVE_ATTACKS, ids=lambda a: a.name)
def test_destructive_attack_in_a_session(sessions, host, attack):
    require_pid_namespace(sessions)
    result, problems = run_attack(sessions, host, in_session(attack))
    assert not problems, report(attack, result, problems)


def test_callers_sys_path_directories_are_not_readable(tmp_path):
    """`python script.py` puts the script's directory on sys.path[0], `python -m` the working directory (often a
    home or project directory with credentials); the sandbox must not grant snippets read access to them."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "credentials.txt").write_text("s3cret")
    sys.path.insert(0, str(project))
    try:
        pool = LocalSandbox(pool_size=1, preload=())
    finally:
        sys.path.remove(str(project))
    with pool:
        result = pool.run(f"print(open({str(project / 'credentials.txt')!r}).read())", timeout=10)
    assert result.status == "error" and "PermissionError" in result.stderr, (result.status, result.stdout)


ESCAPES_WITHOUT_ISOLATION = ("write_tmp", "write_cwd_after_chdir", "read_host_secret_file",
                             "tcp_connect_to_host_port", "chmod_job_root")


def test_checker_catches_escapes_when_isolation_is_off(host, sandbox):
    """The checker is not vacuous: with isolation='none' these attacks succeed, and `run_attack` reports each.
    (Only harmless ones: no destructive attack ever runs without isolation.)"""
    by_name = {a.name: a for a in SAFE_ATTACKS}
    job_root = host.job_root
    with LocalSandbox(pool_size=1, preload=(), isolation="none") as weak:
        host.job_root = weak.job_root
        try:
            for name in ESCAPES_WITHOUT_ISOLATION:
                _, problems = run_attack(weak, host, by_name[name])
                assert problems, f"{name}: the checker saw nothing although isolation was off"
        finally:
            host.job_root = job_root


def test_files_and_fetch_files_cannot_reach_the_host(host, sandbox):
    """Absolute and `..` paths in `files`/`fetch_files` (Sandbox Fusion joins them onto its working directory) stay
    in the sandbox's own view: nothing of the host is read back (directly or through a symlink the snippet made),
    nothing on the host is written, and an emptied private copy hides what the sandbox could not read before."""
    import base64

    import httpx

    secret, victim = str(host.secret_file), str(host.victim_file)
    body = {
        "language": "python",
        "code": f"import os\nos.symlink({secret!r}, 'link')\nprint(sorted(os.listdir({str(host.base)!r})))\n"
                f"open({victim!r}, 'w').write('pwned')",
        "files": {victim + ".new": base64.b64encode(b"x").decode(), f"{host.victim_dir}/keep.txt": "cHduZWQ="},
        "fetch_files": [secret, "link", "/etc/shadow", "/proc/1/environ", "../w0.log"],
    }
    url = f"http://127.0.0.1:{host.server_port}/run_code"
    data = httpx.post(url, json=body, timeout=60, trust_env=False).json()
    assert host.secret_value not in str(data), f"host secret leaked: {str(data)[:300]}"
    assert host.victim_file.read_text() == "intact" and (host.victim_dir / "keep.txt").read_text() == "intact"
    assert not os.path.exists(victim + ".new")
    if sandbox.layers["tmpfs_job_dirs"]:  # a mount namespace: private copies, the bait directory emptied
        assert data["status"] == "Success", data  # the victim written is the copy's; nothing of the host shows
        assert data["run_result"]["stdout"] == "['victim.txt.new', 'victim_dir']\n", data
    else:  # no private view possible: absolute paths outside the job directory are refused
        assert data["status"] == "SandboxError" and data["run_result"] is None
    assert set(data["files"]) <= {"/proc/1/environ"}
    assert host.secret_value not in base64.b64decode(data["files"].get("/proc/1/environ", "")).decode("latin-1")
    sibling = {"language": "python", "code": "print(1)", "files": {"../sibling.txt": "eA=="}}  # into the job root
    data = httpx.post(url, json=sibling, timeout=60, trust_env=False).json()
    assert data["status"] == "SandboxError" and "sibling.txt" in data["message"]
    assert not any(name.startswith("sibling") for _, _, names in os.walk(host.job_root) for name in names)
