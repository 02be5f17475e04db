"""The Sandbox Fusion–compatible server, over real HTTP on loopback, in front of a real LocalSandbox."""

from __future__ import annotations

import base64
import binascii
import logging

import httpx
import pytest

from torl.sandbox.base import ExecResult, Sandbox
from torl.sandbox.http_bench import bench_http
from torl.sandbox.server import (
    RunCodeRequest,
    ServerThread,
    create_app,
    fusion_response,
    parse_run_code_request,
)

RESPONSE_KEYS = {"status", "message", "compile_result", "run_result", "executor_pod_name", "files"}
RUN_RESULT_KEYS = {"status", "execution_time", "return_code", "stdout", "stderr"}


def run_code(http: httpx.Client, **body) -> dict:
    body.setdefault("language", "python")
    r = http.post("/run_code", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    data = r.json()
    assert_schema(data)
    return data


def assert_schema(data: dict) -> None:
    assert set(data) == RESPONSE_KEYS
    assert data["status"] in ("Success", "Failed", "SandboxError")
    assert isinstance(data["message"], str)
    assert data["compile_result"] is None
    assert data["executor_pod_name"] is None or isinstance(data["executor_pod_name"], str)
    assert isinstance(data["files"], dict)
    rr = data["run_result"]
    if rr is None:  # Sandbox Fusion: an exception before the run (e.g. files it cannot write)
        assert data["status"] == "SandboxError" and data["message"]
        return
    assert set(rr) == RUN_RESULT_KEYS
    assert rr["status"] in ("Finished", "Error", "TimeLimitExceeded")
    assert isinstance(rr["execution_time"], float)
    assert rr["return_code"] is None or type(rr["return_code"]) is int
    assert isinstance(rr["stdout"], str) and isinstance(rr["stderr"], str)


# ---- the API -----------------------------------------------------------------------------------------------------
def test_ping(http):
    r = http.get("/v1/ping")
    assert r.status_code == 200 and r.json() == "pong"


def test_success_has_sandbox_fusion_shape(http):
    data = run_code(http, code="print(2**100)", language="python")
    assert data["status"] == "Success" and data["message"] == ""
    assert data["run_result"]["status"] == "Finished"
    assert data["run_result"]["return_code"] == 0
    assert data["run_result"]["stdout"] == "1267650600228229401496703205376\n"
    assert data["run_result"]["stderr"] == ""
    assert 0 < data["run_result"]["execution_time"] < 10
    assert data["files"] == {}


def test_defaults_match_sandbox_fusion():
    assert parse_run_code_request({"code": "x", "language": "python"}) == RunCodeRequest(
        code="x", language="python", compile_timeout=10, run_timeout=10, memory_limit_MB=-1, stdin=None,
        files={}, fetch_files=[],
    )


def test_status_mapping_of_every_exec_result():
    cases = [
        (ExecResult("ok", stdout="1\n", return_code=0), ("Success", "Finished", 0)),
        (ExecResult("error", return_code=-9, reason="killed"), ("Failed", "Finished", -9)),
        (ExecResult("error", return_code=None, reason="out of memory"), ("Failed", "Error", None)),
        (ExecResult("timeout", return_code=-9, reason="timed out"), ("Failed", "TimeLimitExceeded", None)),
        (ExecResult("sandbox_error", return_code=3, reason="worker died"), ("SandboxError", "Error", None)),
    ]
    for result, (status, run_status, return_code) in cases:
        data = fusion_response(result)
        assert_schema(data)
        assert (data["status"], data["run_result"]["status"], data["run_result"]["return_code"]) == (
            status, run_status, return_code)
        assert data["message"] == (result.reason if status == "SandboxError" else "")  # as Sandbox Fusion


def test_code_and_language_are_required(http):
    data = run_code(http, code="print('hi')")
    assert data["status"] == "Success" and data["run_result"]["stdout"] == "hi\n"
    r = http.post("/run_code", json={"code": "print('hi')"})
    assert r.status_code == 422
    assert r.json()["detail"] == [{"type": "missing", "loc": ["body", "language"], "msg": "Field required",
                                   "input": {"code": "print('hi')"}}]


def test_nonzero_exit_is_failed_finished_with_return_code(http):
    data = run_code(http, code="import sys\nprint('partial')\nsys.exit(3)")
    assert data["status"] == "Failed"
    assert data["run_result"]["status"] == "Finished"
    assert data["run_result"]["return_code"] == 3
    assert data["run_result"]["stdout"] == "partial\n"


def test_exception_is_failed_with_traceback(http):
    data = run_code(http, code="x = 1\n1/0")
    assert data["status"] == "Failed"
    assert data["run_result"]["return_code"] == 1
    assert "ZeroDivisionError" in data["run_result"]["stderr"]
    assert 'line 2, in <module>\n    1/0\n' in data["run_result"]["stderr"]  # the source line is quoted


def test_timeout_is_time_limit_exceeded_with_null_return_code(http):
    data = run_code(http, code="print('started', flush=True)\nwhile True: pass", run_timeout=0.5)
    assert data["status"] == "Failed"
    assert data["run_result"]["status"] == "TimeLimitExceeded"
    assert data["run_result"]["return_code"] is None
    assert 0.4 < data["run_result"]["execution_time"] < 5


def test_stdin_reaches_the_snippet(http):
    data = run_code(http, code="a, b = map(int, input().split())\nprint(a * b)", stdin="6 7\n")
    assert data["status"] == "Success" and data["run_result"]["stdout"] == "42\n"


def test_memory_limit_is_applied(http):
    code = "x = bytearray(400 * 1024 * 1024)\nprint('allocated')"
    limited = run_code(http, code=code, memory_limit_MB=128)
    assert limited["status"] == "Failed"
    assert "MemoryError" in limited["run_result"]["stderr"]
    unlimited = run_code(http, code=code, memory_limit_MB=-1)  # the sandbox default (2 GiB) allows it
    assert unlimited["status"] == "Success" and unlimited["run_result"]["stdout"] == "allocated\n"


def test_files_are_written_and_fetched(http):
    data = run_code(
        http,
        code="print(open('data/in.txt').read().upper())\nopen('out.bin', 'wb').write(bytes(range(4)))\n"
        "print(__name__, [k for k in globals() if not k.startswith('__')])",
        files={"data/in.txt": base64.b64encode(b"hello").decode()},
        fetch_files=["out.bin", "never_written.txt"],
    )
    assert data["status"] == "Success", data
    assert data["run_result"]["stdout"] == "HELLO\n__main__ []\n"  # nothing of the sandbox in globals
    assert data["run_result"]["stderr"] == ""  # the wrapper's report is not shown
    assert data["files"] == {"out.bin": base64.b64encode(bytes(range(4))).decode()}


def test_fetch_files_after_a_crash_keeps_the_traceback_clean(http):
    data = run_code(http, code="open('log.txt', 'w').write('x')\nraise ValueError('boom')", fetch_files=["log.txt"])
    assert data["status"] == "Failed" and data["run_result"]["return_code"] == 1
    assert data["files"] == {"log.txt": base64.b64encode(b"x").decode()}
    stderr = data["run_result"]["stderr"]
    assert stderr.startswith("Traceback") and stderr.rstrip().endswith("ValueError: boom")
    assert "_worker" not in stderr and "line 2" in stderr


def test_files_that_cannot_be_written_are_sandbox_error(http):
    data = run_code(http, code="print('never runs')", files={"a": "", "a/b": ""})  # 'a' is a file, not a dir
    # as Sandbox Fusion: its restore_files raises, run_code answers the exception with no run_result
    assert data["status"] == "SandboxError" and data["run_result"] is None and data["files"] == {}
    assert data["message"].startswith("exception on running code print('never runs'): [Errno 17] File exists")


def test_files_do_not_leak_between_requests(http):
    run_code(http, code="pass", files={"secret.txt": base64.b64encode(b"s").decode()})
    data = run_code(http, code="import os\nprint(os.path.exists('secret.txt'))")
    assert data["run_result"]["stdout"] == "False\n"


def test_unknown_fields_are_ignored(http):
    data = run_code(http, code="print(1)", args=[], something_new={"a": 1}, compile_timeout=3)
    assert data["status"] == "Success"


def test_sandbox_failure_is_sandbox_error_not_failed_code():
    class BrokenSandbox(Sandbox):  # a sandbox whose infrastructure fails (cannot be provoked in LocalSandbox)
        def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
            raise RuntimeError("worker pool is gone")

    class ReportingSandbox(Sandbox):
        def run(self, code, *, timeout=10.0, memory_mb=None, stdin=None):
            return ExecResult("sandbox_error", reason="sandbox worker failed: worker exited")

    for sandbox, words in ((BrokenSandbox(), "worker pool is gone"), (ReportingSandbox(), "worker exited")):
        with ServerThread(create_app(sandbox)) as srv:
            r = httpx.post(f"{srv.url}/run_code", json={"code": "print(1)", "language": "python"}, trust_env=False)
        assert r.status_code == 200
        data = r.json()
        assert_schema(data)
        assert data["status"] == "SandboxError" and words in data["message"]
        assert data["run_result"]["status"] == "Error" and data["run_result"]["return_code"] is None


# ---- malformed requests: 422 exactly where Sandbox Fusion's pydantic model (lax mode) refuses -------------------------
PY = {"code": "print(1)", "language": "python"}


@pytest.mark.parametrize(
    "body, field, kind",
    [
        ({"language": "python"}, "code", "missing"),
        ({"code": "print(1)"}, "language", "missing"),
        ({**PY, "code": 5}, "code", "string_type"),
        ({**PY, "code": None}, "code", "string_type"),
        ({**PY, "language": "cobol"}, "language", "literal_error"),
        ({**PY, "language": None}, "language", "literal_error"),
        ({**PY, "run_timeout": "ten"}, "run_timeout", "float_parsing"),
        ({**PY, "run_timeout": None}, "run_timeout", "float_type"),
        ({**PY, "compile_timeout": [1]}, "compile_timeout", "float_type"),
        ({**PY, "memory_limit_MB": "big"}, "memory_limit_MB", "int_parsing"),
        ({**PY, "memory_limit_MB": 1.5}, "memory_limit_MB", "int_from_float"),
        ({**PY, "memory_limit_MB": None}, "memory_limit_MB", "int_type"),
        ({**PY, "stdin": 7}, "stdin", "string_type"),
        ({**PY, "files": ["a.txt"]}, "files", "dict_type"),
        ({**PY, "files": None}, "files", "dict_type"),
        ({**PY, "files": {"a.txt": 3}}, "files", "string_type"),
        ({**PY, "fetch_files": "out.txt"}, "fetch_files", "list_type"),
        ({**PY, "fetch_files": None}, "fetch_files", "list_type"),
        ({**PY, "fetch_files": [3]}, "fetch_files", "string_type"),
    ],
)
def test_invalid_fields_are_422_naming_the_field(http, body, field, kind):
    r = http.post("/run_code", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert [(d["loc"][:2], d["type"]) for d in detail] == [(["body", field], kind)], detail
    assert all(d["msg"] and "input" in d for d in detail)


@pytest.mark.parametrize(
    "extra, run_status",
    [
        ({"run_timeout": "5"}, "Finished"),  # lax mode: numeric strings and booleans are numbers
        ({"run_timeout": True}, "Finished"),
        ({"run_timeout": 3}, "Finished"),
        ({"memory_limit_MB": "1024"}, "Finished"),
        ({"memory_limit_MB": 512.0}, "Finished"),
        ({"memory_limit_MB": False}, "Finished"),  # 0: the server's limit, as -1
        ({"compile_timeout": -1}, "Finished"),  # unused for Python
        ({"compile_timeout": "0"}, "Finished"),
        ({"stdin": None, "files": {}, "fetch_files": []}, "Finished"),
        ({"files": {"skipped.txt": None}}, "Finished"),  # null content: not written, as Sandbox Fusion
        ({"run_timeout": 0}, "TimeLimitExceeded"),  # Sandbox Fusion's wait_for(timeout=0) gives up at once
        ({"run_timeout": -1}, "TimeLimitExceeded"),
        ({"run_timeout": False}, "TimeLimitExceeded"),
    ],
)
def test_what_sandbox_fusion_accepts_is_accepted(http, extra, run_status):
    data = run_code(http, **{**PY, **extra})
    assert data["run_result"]["status"] == run_status, data
    assert data["status"] == ("Success" if run_status == "Finished" else "Failed") and data["message"] == ""
    if run_status == "Finished":
        assert data["run_result"]["stdout"] == "1\n"


def test_invalid_base64_is_sandbox_error_with_no_run_result(http):
    data = run_code(http, code="print(1)", files={"a.txt": "not base64!!"})  # 'notbase64' after the lenient decode
    assert data["status"] == "SandboxError" and data["run_result"] is None and data["compile_result"] is None
    with pytest.raises(binascii.Error) as error:  # the very error Sandbox Fusion's restore_files meets
        base64.b64decode("not base64!!")
    assert data["message"] == f"exception on running code print(1): {error.value} None"
    lenient = run_code(http, code="print(open('a.txt').read())", files={"a.txt": "aGk=\n!"})  # junk dropped
    assert lenient["status"] == "Success" and lenient["run_result"]["stdout"] == "hi\n"


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'"print(1)"', b"null"])
def test_bodies_that_are_not_a_json_object_are_422(http, raw):
    r = http.post("/run_code", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (detail,) = r.json()["detail"]
    assert detail["loc"][0] == "body"
    expected = {b"": "missing", b"null": "missing", b"{not json": "json_invalid", b"\xff\xfe": "json_invalid"}.get(raw)
    assert detail["type"] == (expected or "model_attributes_type")


def test_unknown_route_and_method_are_json_errors(http):
    r = http.get("/run_code")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
    r = http.post("/nope", json={})
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


# ---- batch -------------------------------------------------------------------------------------------------------
def test_batch_runs_every_request_and_keeps_the_order(http):
    batch = [
        {"code": "print('a')"},
        {"code": "import sys; sys.exit(2)"},
        {"code": "while True: pass", "run_timeout": 0.3},
        {"code": "print(input()[::-1])", "stdin": "olleh"},
        {"code": "print('e')", "run_timeout": 5, "memory_limit_MB": 512},
        {"code": "print(open('f').read())", "files": {"f": base64.b64encode(b"file!").decode()}},
    ] + [{"code": f"print({i} * {i})"} for i in range(20)]
    batch = [{**b, "language": "python"} for b in batch]
    r = http.post("/run_code_batch", json=batch)
    assert r.status_code == 200, r.text
    out = r.json()
    assert isinstance(out, list) and len(out) == len(batch)
    for item in out:
        assert_schema(item)
    assert [o["status"] for o in out[:6]] == ["Success", "Failed", "Failed", "Success", "Success", "Success"]
    assert out[0]["run_result"]["stdout"] == "a\n"
    assert out[1]["run_result"]["return_code"] == 2
    assert out[2]["run_result"]["status"] == "TimeLimitExceeded"
    assert out[3]["run_result"]["stdout"] == "hello\n"
    assert out[4]["run_result"]["stdout"] == "e\n"
    assert out[5]["run_result"]["stdout"] == "file!\n"
    assert [o["run_result"]["stdout"] for o in out[6:]] == [f"{i * i}\n" for i in range(20)]


def test_batch_validation(http):
    assert http.post("/run_code_batch", json=[]).json() == []
    r = http.post("/run_code_batch", json={"code": "print(1)"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
    r = http.post("/run_code_batch", json=[PY, {**PY, "code": 1}, {"run_timeout": "x", "code": "x"}])
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert locs == [["body", 1, "code"], ["body", 2, "run_timeout"], ["body", 2, "language"]]


def test_batch_size_is_bounded(local_sandbox):
    with ServerThread(create_app(local_sandbox, max_batch=3)) as srv:
        r = httpx.post(f"{srv.url}/run_code_batch", json=[{"code": "pass", "language": "python"}] * 4,
                       trust_env=False)
    assert r.status_code == 422 and "at most 3" in r.json()["detail"][0]["msg"]


# ---- load and binding --------------------------------------------------------------------------------------------
def test_1000_requests_at_concurrency_64_without_a_failure(server):
    stats = bench_http(server.url, n=1000, concurrency=64, warmup=0)
    assert stats["failures"] == 0, stats["failure_examples"]
    assert stats["ok"] == 1000
    assert stats["requests_per_s"] > 0 and stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"]


def test_binding_beyond_loopback_warns(local_sandbox, caplog):
    app = create_app(local_sandbox)  # never started: constructing the server thread is what warns
    with caplog.at_level(logging.WARNING, logger="torl.sandbox.server"):
        ServerThread(app, host="127.0.0.1")
        assert not caplog.records
        ServerThread(app, host="0.0.0.0")
    assert any("NOT LOOPBACK" in r.getMessage() for r in caplog.records)
