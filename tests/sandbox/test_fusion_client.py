"""SandboxFusionClient: against our server (real LocalSandbox behind real HTTP) and against misbehaving servers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from torl.sandbox import SandboxFusionClient, make_sandbox
from torl.sandbox.fusion import fusion_request, parse_fusion_response
from torl.sandbox.server import ServerThread

FAST_RETRY = {"max_attempts": 3, "backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture
def client(server):
    with SandboxFusionClient(server.url, **FAST_RETRY) as c:
        yield c


# ---- against our server ------------------------------------------------------------------------------------------
def test_ok(client):
    r = client.run("print(2**100)")
    assert r.status == "ok" and r.return_code == 0
    assert r.stdout == "1267650600228229401496703205376\n" and r.stderr == ""
    assert r.extra["attempts"] == 1


def test_error_keeps_return_code_and_output(client):
    r = client.run("import sys\nprint('before')\nsys.exit(5)")
    assert r.status == "error" and r.return_code == 5 and r.stdout == "before\n"
    r = client.run("undefined_name")
    assert r.status == "error" and r.return_code == 1 and "NameError" in r.stderr


def test_timeout_has_no_return_code(client):
    t0 = time.perf_counter()
    r = client.run("import time\ntime.sleep(30)", timeout=0.5)
    assert r.status == "timeout" and r.return_code is None
    assert time.perf_counter() - t0 < 5


def test_stdin(client):
    assert client.run("print(sum(map(int, input().split())))", stdin="1 2 3\n").stdout == "6\n"


def test_memory_mb_maps_to_memory_limit(client):
    code = "x = bytearray(300 * 1024 * 1024)\nprint('ok')"
    limited = client.run(code, memory_mb=100)
    assert limited.status == "error" and "MemoryError" in limited.stderr
    assert client.run(code, memory_mb=1024).status == "ok"


def test_run_many_and_arun_many_keep_order(client):
    codes = [f"print({i} ** 2)" for i in range(24)]
    assert [r.stdout for r in client.run_many(codes)] == [f"{i * i}\n" for i in range(24)]
    results = asyncio.run(client.arun_many(codes, stdins=[None] * 24))
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(24)]


def test_arun_maps_statuses(client):
    async def main():
        return await asyncio.gather(
            client.arun("print('x')"), client.arun("raise SystemExit(7)"),
            client.arun("while True: pass", timeout=0.3), client.arun("print(input())", stdin="in"),
        )

    ok, err, slow, echo = asyncio.run(main())
    assert (ok.status, ok.stdout) == ("ok", "x\n")
    assert (err.status, err.return_code) == ("error", 7)
    assert (slow.status, slow.return_code) == ("timeout", None)
    assert echo.stdout == "in\n"


def test_url_may_name_the_endpoint(server):
    with SandboxFusionClient(server.url + "/run_code") as c:
        assert c.run_code_url == server.url + "/run_code"
        assert c.run("print(1)").stdout == "1\n"
    sandbox = make_sandbox(server.url + "/")
    assert isinstance(sandbox, SandboxFusionClient) and sandbox.run("print(2)").stdout == "2\n"
    sandbox.close()


def test_bad_url_is_rejected():
    with pytest.raises(ValueError, match="URL"):
        SandboxFusionClient("localhost:8080")


# ---- misbehaving servers -----------------------------------------------------------------------------------------
SUCCESS = {
    "status": "Success", "message": "", "compile_result": None,
    "run_result": {"status": "Finished", "execution_time": 0.01, "return_code": 0, "stdout": "fine\n", "stderr": ""},
    "executor_pod_name": None, "files": {},
}


class Scripted:
    """A tiny upstream that answers from a script of responses (the last one repeats) and counts calls."""

    def __init__(self, *responses):
        self.responses = list(responses)
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    async def handle(self, request: Request) -> Response:
        await request.body()
        with self.lock:
            i, self.calls = self.calls, self.calls + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = self.responses[min(i, len(self.responses) - 1)]
            if not isinstance(answer, Response):  # a coroutine function
                answer = await answer()
            return answer
        finally:
            with self.lock:
                self.in_flight -= 1

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/run_code", self.handle, methods=["POST"])])


def test_server_down_is_sandbox_error_after_the_retries_quickly():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SandboxFusionClient(f"http://127.0.0.1:{port}", **FAST_RETRY) as c:
        t0 = time.perf_counter()
        r = c.run("print(1)")
        assert time.perf_counter() - t0 < 2
        assert r.status == "sandbox_error" and r.return_code is None
        assert "after 3 attempt" in r.reason and "ConnectError" in r.reason
        assert r.extra["attempts"] == 3
        ar = asyncio.run(c.arun("print(1)"))
        assert ar.status == "sandbox_error" and "ConnectError" in ar.reason


def test_5xx_is_retried_then_succeeds():
    upstream = Scripted(Response("busy", 503), Response("oops", 500), JSONResponse(SUCCESS))
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, **FAST_RETRY) as c:
        r = c.run("print('fine')")
        assert r.status == "ok" and r.stdout == "fine\n" and r.extra["attempts"] == 3
        assert upstream.calls == 3
        upstream.calls = 0
        ar = asyncio.run(c.arun("print('fine')"))
        assert ar.status == "ok" and ar.extra["attempts"] == 3 and upstream.calls == 3


def test_always_5xx_is_sandbox_error():
    upstream = Scripted(Response("internal error", 500))
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, **FAST_RETRY) as c:
        r = c.run("print(1)")
    assert r.status == "sandbox_error" and "HTTP 500" in r.reason and "internal error" in r.reason
    assert upstream.calls == 3


def test_4xx_is_not_retried():
    upstream = Scripted(JSONResponse({"detail": [{"loc": ["body", "code"], "msg": "Field required"}]}, 422))
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, **FAST_RETRY) as c:
        r = c.run("print(1)")
    assert r.status == "sandbox_error" and "HTTP 422" in r.reason and "Field required" in r.reason
    assert upstream.calls == 1


@pytest.mark.parametrize(
    "answer, words",
    [
        (Response("<html>gateway</html>", 200), "not JSON"),
        (JSONResponse(["a", "list"]), "JSON object"),
        (JSONResponse({"hello": "world"}), "status None"),
        (JSONResponse({**SUCCESS, "run_result": None}), "run_result is missing"),
        (JSONResponse({**SUCCESS, "run_result": {**SUCCESS["run_result"], "return_code": "zero"}}), "return_code"),
        (JSONResponse({**SUCCESS, "run_result": {**SUCCESS["run_result"], "status": "Exploded"}}), "Exploded"),
    ],
)
def test_garbage_answers_are_sandbox_error(answer, words):
    upstream = Scripted(answer)
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, **FAST_RETRY) as c:
        r = c.run("print(1)")
    assert r.status == "sandbox_error" and words in r.reason, r.reason


def test_http_timeout_is_retried_then_sandbox_error():
    async def hang():
        await asyncio.sleep(1.0)  # longer than the client's HTTP timeout (0.1 + 0.2 s)
        return JSONResponse(SUCCESS)

    upstream = Scripted(hang)
    opts = dict(FAST_RETRY, max_attempts=2, compile_timeout=0.0, http_timeout_margin_s=0.2)
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, **opts) as c:
        r = c.run("print(1)", timeout=0.1)
    assert r.status == "sandbox_error" and "ReadTimeout" in r.reason
    assert upstream.calls == 2


def test_concurrency_is_bounded():
    async def slow():
        await asyncio.sleep(0.05)
        return JSONResponse(SUCCESS)

    upstream = Scripted(slow)
    with ServerThread(upstream.app()) as srv, SandboxFusionClient(srv.url, max_concurrency=4) as c:

        async def main():
            return await asyncio.gather(*(c.arun("print(1)") for _ in range(16)))  # not arun_many: no outer gate

        assert all(r.ok for r in asyncio.run(main()))
        assert upstream.max_in_flight == 4
        upstream.max_in_flight = 0
        threads = [threading.Thread(target=c.run, args=("print(1)",)) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert upstream.max_in_flight == 4


# ---- the mapping itself ------------------------------------------------------------------------------------------
def test_request_body_maps_the_arguments():
    body = fusion_request("print(1)", timeout=3.5, memory_mb=256, stdin="x")
    assert body == {"code": "print(1)", "language": "python", "compile_timeout": 10.0, "run_timeout": 3.5,
                    "memory_limit_MB": 256, "stdin": "x", "files": {}, "fetch_files": []}
    assert fusion_request("pass")["memory_limit_MB"] == -1


def test_response_mapping():
    rr = SUCCESS["run_result"]
    assert parse_fusion_response(SUCCESS).status == "ok"
    failed = {**SUCCESS, "status": "Failed", "run_result": {**rr, "return_code": 1, "stderr": "Traceback"}}
    r = parse_fusion_response(failed)
    assert (r.status, r.return_code, r.stderr) == ("error", 1, "Traceback")
    errored = {**SUCCESS, "status": "Failed", "run_result": {**rr, "status": "Error", "return_code": 137}}
    assert (parse_fusion_response(errored).status, parse_fusion_response(errored).return_code) == ("error", 137)
    tle = {**SUCCESS, "status": "Failed", "run_result": {**rr, "status": "TimeLimitExceeded", "return_code": None}}
    assert (parse_fusion_response(tle).status, parse_fusion_response(tle).return_code) == ("timeout", None)
    boom = {"status": "SandboxError", "message": "exception on running code", "run_result": None}
    r = parse_fusion_response(boom)
    assert r.status == "sandbox_error" and "exception on running code" in r.reason
    stdout_null = {**SUCCESS, "run_result": {**rr, "stdout": None, "stderr": None}}
    assert parse_fusion_response(stdout_null).stdout == ""
