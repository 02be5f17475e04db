"""`torl sandbox serve` answers Python requests as Sandbox Fusion does (issue 14), over real HTTP on loopback, with
torl's HTTP client, httpx and the official `sandbox-fusion` SDK as clients. Expected shapes follow Sandbox Fusion's
own request/response models and python runner tests (bytedance/SandboxFusion, sandbox/)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import httpx
import pytest
import sandbox_fusion

from torl.sandbox.fusion import SandboxFusionClient
from torl.sandbox.local import LocalSandbox


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(http: httpx.Client, **body) -> httpx.Response:
    r = http.post("/run_code", json={"language": "python", **body})
    assert r.status_code == 200, r.text
    return r


def needs_mount_namespace(sandbox: LocalSandbox) -> None:
    if not sandbox.layers["tmpfs_job_dirs"]:
        pytest.skip("no mount namespace here: absolute paths outside the job directory are refused")


# ---- 1. output: up to 1 MiB per stream whole, beyond it cut without a stall --------------------------------------
def test_output_up_to_1_mib_per_stream_comes_back_whole(http):
    data = post(http, code="print('x' * 124_000)").json()  # graded wrong_answer when cut at 64 KiB
    assert data["status"] == "Success" and data["run_result"]["stdout"] == "x" * 124_000 + "\n"
    code = "import sys\nsys.stdout.write('o' * (1 << 20))\nsys.stderr.write('e' * (1 << 20))"
    data = post(http, code=code).json()
    assert data["run_result"]["stdout"] == "o" * (1 << 20) and data["run_result"]["stderr"] == "e" * (1 << 20)


def test_output_beyond_1_mib_is_cut_head_and_tail_without_a_stall(http):
    start = time.monotonic()
    r = post(http, code="for i in range(400_000): print(f'line{i}')")  # ~4.4 MB: Sandbox Fusion stalls into TLE
    data = r.json()
    assert data["status"] == "Success" and data["message"] == ""
    out = data["run_result"]["stdout"]
    assert out.startswith("line0\nline1\n") and out.endswith("line399999\n") and "bytes omitted" in out
    assert len(out.encode()) < (1 << 20) + 100
    assert "output truncated" in r.headers["x-torl-reason"]
    assert time.monotonic() - start < 8


def test_training_keeps_its_smaller_capture_cap(local_sandbox):
    r = local_sandbox.run("print('x' * 124_000)")  # the rollout path: LocalSandbox's default 64 KiB
    assert r.truncated and len(r.stdout.encode()) < 64 * 1024 + 100


# ---- 2. files / fetch_files, absolute paths included ------------------------------------------------------------
def test_python_fetch_files_as_sandbox_fusions_own_test(http, local_sandbox):
    needs_mount_namespace(local_sandbox)
    data = post(http, code='open("a.txt", "w").write("secret"); open("/mnt/b", "w").write("sauce");',
                fetch_files=["a.txt", "/mnt/b"]).json()
    assert data["status"] == "Success", data
    assert base64.b64decode(data["files"]["a.txt"]).decode() == "secret"
    assert base64.b64decode(data["files"]["/mnt/b"]).decode() == "sauce"
    assert not os.path.exists("/mnt/b") or open("/mnt/b").read() != "sauce"  # noqa: SIM115 - never the host's


def test_absolute_paths_live_in_the_sandbox_not_on_the_host(http, local_sandbox, tmp_path):
    needs_mount_namespace(local_sandbox)
    (tmp_path / "host_secret.txt").write_text("do not show")
    tag = uuid.uuid4().hex[:8]
    code = (f"import os\nprint(sorted(os.listdir({str(tmp_path)!r})))\nprint(open('/etc/torl-{tag}').read())\n"
            f"open('/tmp/torl-{tag}/made.txt', 'w').write('made')\n")
    data = post(http, code=code,
                files={f"{tmp_path}/given.txt": b64(b"given"), f"/etc/torl-{tag}": b64(b"etc file"),
                       f"/tmp/torl-{tag}/made.txt": b64(b"")},
                fetch_files=[f"{tmp_path}/host_secret.txt", f"{tmp_path}/given.txt", f"/tmp/torl-{tag}/made.txt",
                             "../escape.txt"]).json()
    assert data["status"] == "Success", data
    # the snippet sees its own files there, nothing of the host's unreadable directory
    assert data["run_result"]["stdout"] == "['given.txt']\netc file\n"
    assert data["files"] == {f"{tmp_path}/given.txt": b64(b"given"), f"/tmp/torl-{tag}/made.txt": b64(b"made")}
    assert sorted(os.listdir(tmp_path)) == ["host_secret.txt"]
    assert not os.path.exists(f"/etc/torl-{tag}") and not os.path.exists(f"/tmp/torl-{tag}")


def test_files_are_fetched_after_a_timeout_or_a_hard_exit(http):
    data = post(http, code="open('out.txt', 'w').write('partial')\nwhile True: pass", run_timeout=0.5,
                fetch_files=["out.txt"]).json()
    assert data["run_result"]["status"] == "TimeLimitExceeded" and data["message"] == ""
    assert data["files"] == {"out.txt": b64(b"partial")}
    data = post(http, code="import os\nopen('out.txt', 'w').write('x')\nos._exit(4)", fetch_files=["out.txt"]).json()
    assert data["run_result"]["return_code"] == 4 and data["files"] == {"out.txt": b64(b"x")}


def test_ignore_this_file_names_are_not_written(http):
    data = post(http, code="import os\nprint(sorted(f for f in os.listdir('.') if not f.endswith('.py')))",
                files={"IGNORE_THIS_FILE.txt": b64(b"x"), "kept.txt": b64(b"y")}).json()
    assert data["run_result"]["stdout"] == "['kept.txt']\n"


# ---- 3. the code runs from a real .py file --------------------------------------------------------------------------
def test_file_argv_and_tracebacks_as_python_file_py(http):
    data = post(http, code="import os, sys\nprint(__file__ == sys.argv[0], os.path.dirname(__file__) == os.getcwd())"
                           "\nprint(os.path.basename(__file__))\ndef f():\n    return 1 / 0\nf()\n").json()
    assert data["status"] == "Failed" and data["message"] == ""
    first, name = data["run_result"]["stdout"].splitlines()
    assert first == "True True" and re.fullmatch(r"tmp\w{8}\.py", name)
    stderr = data["run_result"]["stderr"]
    assert f'{name}", line 6, in <module>\n    f()\n' in stderr
    assert f'{name}", line 5, in f\n    return 1 / 0\n' in stderr and stderr.endswith("ZeroDivisionError: division by zero\n")


# ---- 4. message only for SandboxError; torl's reason in a header -----------------------------------------------------
def test_message_is_empty_unless_sandbox_error_and_the_reason_is_a_header(http, server):
    r = post(http, code="import sys; sys.exit(1)")
    assert r.json()["message"] == "" and r.headers["x-torl-reason"] == "exit code 1"
    r = post(http, code="while True: pass", run_timeout=0.5)
    assert r.json()["message"] == "" and r.headers["x-torl-reason"] == "wall-clock timeout after 0.5 s"
    r = post(http, code="print(1)")
    assert r.json()["message"] == "" and "x-torl-reason" not in r.headers
    with SandboxFusionClient(server.url) as client:  # torl's own client keeps torl's reasons
        assert client.run("import sys; sys.exit(1)").reason == "exit code 1"
        assert client.run("while True: pass", timeout=0.5).reason == "wall-clock timeout after 0.5 s"


# ---- 6. memory_limit_MB -1: the server's limit, configurable; the real `torl sandbox serve` -------------------------
def test_torl_sandbox_serve_memory_limit_flag_and_startup_notice():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torl.cli", "sandbox", "serve", "--port", str(port), "--pool-size", "1",
           "--memory-limit-mb", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/ping", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "torl sandbox serve did not start"
            time.sleep(0.2)
        code = "x = bytearray(300 * 1024 * 1024)\nprint('allocated')"
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as http:
            capped = post(http, code=code, memory_limit_MB=-1).json()
            assert capped["status"] == "Failed" and "MemoryError" in capped["run_result"]["stderr"]
            asked = post(http, code=code, memory_limit_MB=1024).json()  # a positive limit is the request's own
            assert asked["status"] == "Success" and asked["run_result"]["stdout"] == "allocated\n"
    finally:
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=30)
    assert "language 'python' only" in log and "200 MB (--memory-limit-mb)" in log, log


# ---- 7. other languages: answered as Sandbox Fusion without that toolchain ------------------------------------------
@pytest.mark.parametrize("language", ["cpp", "go", "nodejs", "java", "bash"])
def test_other_languages_fail_like_a_missing_toolchain(http, language):
    r = post(http, code="int main() { return 0; }", language=language)
    data = r.json()
    assert data["status"] == "Failed" and data["message"] == "" and data["run_result"] is None
    compile_result = data["compile_result"]
    assert compile_result["status"] == "Finished" and compile_result["return_code"] == 127
    assert "Python only" in compile_result["stderr"] and language in r.headers["x-torl-reason"]


# ---- the official SDK as a client ----------------------------------------------------------------------------------
def test_official_sdk_run_code_run_code_async_and_run_concurrent(server):
    request = sandbox_fusion.RunCodeRequest
    ok = sandbox_fusion.run_code(request(code="print(6 * 7)", language="python"), endpoint=server.url,
                                 max_attempts=1)
    assert ok.status == sandbox_fusion.RunStatus.Success and ok.run_result.stdout == "42\n"
    failed = sandbox_fusion.run_code(request(code="raise SystemExit(3)", language="python"), endpoint=server.url,
                                     max_attempts=1)
    assert failed.status == sandbox_fusion.RunStatus.Failed and failed.run_result.return_code == 3
    assert failed.message == ""
    files = sandbox_fusion.run_code(request(code="open('o.txt', 'w').write(open('i.txt').read()[::-1])",
                                            language="python", files={"i.txt": b64(b"abc")},
                                            fetch_files=["o.txt"]), endpoint=server.url, max_attempts=1)
    assert files.files == {"o.txt": b64(b"cba")}

    async def both():
        return await asyncio.gather(*(sandbox_fusion.run_code_async(request(code=f"print({i} ** 2)", language="python"),
                                                                    endpoint=server.url, max_attempts=1)
                                      for i in range(4)))

    assert [r.run_result.stdout for r in asyncio.run(both())] == [f"{i * i}\n" for i in range(4)]
    many = sandbox_fusion.run_concurrent(
        sandbox_fusion.run_code,
        kwargs=[{"request": request(code=f"print('n{i}')", language="python"), "endpoint": server.url,
                 "max_attempts": 1} for i in range(16)],
        concurrency=8)
    assert [r.run_result.stdout for r in many] == [f"n{i}\n" for i in range(16)]
