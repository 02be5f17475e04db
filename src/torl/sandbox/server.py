"""A Sandbox Fusion–compatible HTTP server on top of any `torl.sandbox.Sandbox` (in production: LocalSandbox).

Endpoints (request fields, defaults, response shape and status strings as Sandbox Fusion's):
- `POST /run_code`: one snippet → one response (HTTP 200 even when the code fails).
- `POST /run_code_batch` (ours): a JSON list of /run_code bodies → a JSON list of responses, same order, run
  concurrently through `Sandbox.arun_many`.
- `GET /v1/ping` → "pong".
Malformed bodies get 422 with FastAPI-style `{"detail": [{"type", "loc", "msg"}]}`, as Sandbox Fusion answers.
Only `language: "python"` runs; any other language is a 422 naming the field. `memory_limit_MB` ≤ 0 means "the
sandbox's default limit" (LocalSandbox never runs without one). `files` are written into the job directory and
`fetch_files` read back by a small wrapper around the snippet, so they work with any Sandbox; files are not fetched
when the snippet times out.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import logging
import math
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torl.sandbox.base import ExecResult, Sandbox
from torl.sandbox.http_bench import bench_http

__all__ = [
    "RunCodeRequest",
    "RequestError",
    "parse_run_code_request",
    "fusion_response",
    "create_app",
    "serve",
    "serve_local",
    "ServerThread",
    "bench_http",
]

log = logging.getLogger(__name__)

MAX_BATCH = 4096


# ---------------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunCodeRequest:
    """A validated `/run_code` body. Unknown fields (e.g. pytest's `args`) are ignored, as Sandbox Fusion does."""

    code: str
    language: str = "python"
    compile_timeout: float = 10.0
    run_timeout: float = 10.0
    memory_limit_MB: int = -1
    stdin: str | None = None
    files: dict[str, str | None] = field(default_factory=dict)
    fetch_files: list[str] = field(default_factory=list)

    @property
    def memory_mb(self) -> int | None:
        """The Sandbox's memory_mb: None (its default) when memory_limit_MB ≤ 0."""
        return self.memory_limit_MB if self.memory_limit_MB > 0 else None


class RequestError(ValueError):
    """A malformed request; `detail` is the FastAPI-style list of errors returned with HTTP 422."""

    def __init__(self, detail: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail))
        self.detail = detail


def parse_run_code_request(body: object, loc: tuple = ("body",)) -> RunCodeRequest:
    """Validate one /run_code body; raises RequestError listing every bad field."""
    errors: list[dict] = []

    def err(kind: str, where: tuple, msg: str) -> None:
        errors.append({"type": kind, "loc": [*loc, *where], "msg": msg})

    if not isinstance(body, dict):
        err("model_attributes_type", (), "Input should be a JSON object with at least a 'code' field")
        raise RequestError(errors)
    values: dict = {}
    if "code" not in body:
        err("missing", ("code",), "Field required")
    elif not isinstance(body["code"], str):
        err("string_type", ("code",), "Input should be a valid string")
    else:
        values["code"] = body["code"]
    language = body.get("language", "python")
    if language != "python":
        err("literal_error", ("language",), f"this server runs Python only: language must be 'python', got {language!r}")
    for name, minimum in (("compile_timeout", None), ("run_timeout", 0.0)):
        if name in body:
            x = body[name]
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                err("float_type", (name,), "Input should be a finite number of seconds")
            elif minimum is not None and x <= minimum:
                err("greater_than", (name,), f"Input should be greater than {minimum:g}, got {x}")
            elif x < 0:
                err("greater_than_equal", (name,), f"Input should be greater than or equal to 0, got {x}")
            else:
                values[name] = float(x)
    if "memory_limit_MB" in body:
        x = body["memory_limit_MB"]
        if isinstance(x, bool) or not (isinstance(x, int) or (isinstance(x, float) and x.is_integer())):
            err("int_type", ("memory_limit_MB",), "Input should be a valid integer (megabytes; -1 = default)")
        else:
            values["memory_limit_MB"] = int(x)
    if body.get("stdin") is not None:
        if isinstance(body["stdin"], str):
            values["stdin"] = body["stdin"]
        else:
            err("string_type", ("stdin",), "Input should be a valid string or null")
    files = body.get("files") or {}
    if not isinstance(files, dict):
        err("dict_type", ("files",), "Input should be an object {path: base64 content}")
    else:
        for path, content in files.items():
            if (why := _bad_path(path)) is not None:
                err("value_error", ("files", path), why)
            elif content is not None and not _is_base64(content):
                err("value_error", ("files", path), "file content should be a base64 string or null")
        values["files"] = {p: c for p, c in files.items() if c is not None}  # null content: skipped, as upstream
    fetch = body.get("fetch_files") or []
    if not isinstance(fetch, list):
        err("list_type", ("fetch_files",), "Input should be a list of paths")
    else:
        for i, path in enumerate(fetch):
            if (why := _bad_path(path)) is not None:
                err("value_error", ("fetch_files", i), why)
        values["fetch_files"] = list(fetch)
    if errors:
        raise RequestError(errors)
    return RunCodeRequest(**values)


def _bad_path(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "a path should be a non-empty string"
    if path.startswith(("/", "\\")) or ".." in path.replace("\\", "/").split("/") or "\0" in path:
        return f"path {path!r} should be relative to the job directory, without '..'"
    return None


def _is_base64(content: object) -> bool:
    if not isinstance(content, str):
        return False
    try:
        base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# files / fetch_files: a wrapper that runs inside the sandbox, in the job directory
# ---------------------------------------------------------------------------------------------------------------
_FILES_WRAPPER = '''\
def _torl_job(code, files, fetch, marker):
    import base64, json, os, sys, traceback
    try:
        for path, data in files.items():
            if os.path.dirname(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(base64.b64decode(data))
    except OSError as e:
        sys.stderr.write("\\n" + marker + json.dumps({"setup_error": f"{type(e).__name__}: {e}"}) + "\\n")
        raise SystemExit(1)
    import linecache
    linecache.cache["<string>"] = (len(code), None, code.splitlines(True), "<string>")  # source in tracebacks
    scope = sys.modules["__main__"].__dict__
    scope.pop("_torl_job", None)  # the snippet runs as __main__, in a namespace of its own
    try:
        exec(compile(code, "<string>", "exec"), scope)
    except SystemExit:
        raise
    except BaseException as e:  # print it as the interpreter would, without this wrapper's frame
        traceback.print_exception(type(e), e, e.__traceback__.tb_next)
        raise SystemExit(1) from None
    finally:
        sys.stdout.flush()
        fetched = {}
        for path in fetch:
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    fetched[path] = base64.b64encode(f.read()).decode()
        sys.stderr.write("\\n" + marker + json.dumps({"files": fetched}) + "\\n")
        sys.stderr.flush()
'''


def _wrap_files(req: RunCodeRequest, marker: str) -> str:
    """The snippet wrapped so that it writes `files` first and reports `fetch_files` on stderr after `marker`."""
    return _FILES_WRAPPER + f"\n\n_torl_job({req.code!r}, {req.files!r}, {req.fetch_files!r}, {marker!r})\n"


def _split_marker(stderr: str, marker: str) -> tuple[str, dict | None]:
    """Remove the wrapper's report from stderr; returns (stderr, report or None when missing/cut)."""
    at = stderr.rfind("\n" + marker)
    if at < 0:
        return stderr, None
    line_end = stderr.find("\n", at + 1 + len(marker))
    raw = stderr[at + 1 + len(marker) : line_end if line_end >= 0 else len(stderr)]
    rest = stderr[line_end + 1 :] if line_end >= 0 else ""
    try:
        report = json.loads(raw)
    except json.JSONDecodeError:
        report = None
    return stderr[:at] + rest, report if isinstance(report, dict) else None


# ---------------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------------
def fusion_response(result: ExecResult, *, files: dict[str, str] | None = None, message: str | None = None) -> dict:
    """A Sandbox Fusion /run_code response for one ExecResult.

    ok → Success/Finished; error → Failed/Finished with the exit code (Failed/Error when there is none); timeout →
    Failed/TimeLimitExceeded with return_code null; sandbox_error → SandboxError/Error with the reason as message.
    """
    run_status, return_code = "Finished", result.return_code
    if result.status == "ok":
        status, return_code = "Success", 0 if return_code is None else return_code
    elif result.status == "error":
        status = "Failed"
        if return_code is None:
            run_status = "Error"
    elif result.status == "timeout":
        status, run_status, return_code = "Failed", "TimeLimitExceeded", None
    else:
        status, run_status, return_code = "SandboxError", "Error", None
    if message is None:
        message = result.reason
        if result.truncated:
            message = "; ".join(x for x in (message, "output truncated (head and tail kept)") if x)
    return {
        "status": status,
        "message": message,
        "compile_result": None,
        "run_result": {
            "status": run_status,
            "execution_time": result.duration_s,
            "return_code": return_code,
            "stdout": result.stdout,
            "stderr": result.stderr,
        },
        "executor_pod_name": None,
        "files": files or {},
    }


def _json(content: object, status_code: int = 200, headers: dict | None = None) -> Response:
    # errors="replace": a snippet's output may hold lone surrogates, which are not UTF-8
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------
def create_app(sandbox: Sandbox, *, max_batch: int = MAX_BATCH) -> Starlette:
    """A Starlette app serving `sandbox` with Sandbox Fusion's API (see the module docstring)."""

    async def run_requests(reqs: list[RunCodeRequest]) -> list[dict]:
        markers = [secrets.token_hex(8) if r.files or r.fetch_files else "" for r in reqs]
        codes = [_wrap_files(r, f"__torl_job_{m}__") if m else r.code for r, m in zip(reqs, markers, strict=True)]
        groups: dict[tuple[float, int | None], list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault((r.run_timeout, r.memory_mb), []).append(i)

        async def run_group(key: tuple[float, int | None], idx: list[int]) -> list[ExecResult]:
            timeout, memory_mb = key
            try:
                if len(idx) == 1:
                    r = reqs[idx[0]]
                    return [await sandbox.arun(codes[idx[0]], timeout=timeout, memory_mb=memory_mb, stdin=r.stdin)]
                return await sandbox.arun_many([codes[i] for i in idx], timeout=timeout, memory_mb=memory_mb,
                                               stdins=[reqs[i].stdin for i in idx])
            except Exception as e:  # the sandbox itself broke: say so, per request, in Sandbox Fusion's shape
                log.exception("sandbox failed")
                return [ExecResult("sandbox_error", reason=f"sandbox failed: {type(e).__name__}: {e}")] * len(idx)

        results: list[ExecResult | None] = [None] * len(reqs)
        outs = await asyncio.gather(*(run_group(k, idx) for k, idx in groups.items()))
        for idx, out in zip(groups.values(), outs, strict=True):
            for i, res in zip(idx, out, strict=True):
                results[i] = res
        return [_respond(res, m) for res, m in zip(results, markers, strict=True)]

    async def run_code(request: Request) -> Response:
        try:
            req = parse_run_code_request(await _read_json(request))
        except RequestError as e:
            return _json({"detail": e.detail}, 422)
        return _json((await run_requests([req]))[0])

    async def run_code_batch(request: Request) -> Response:
        try:
            body = await _read_json(request)
            if not isinstance(body, list):
                raise RequestError([{"type": "list_type", "loc": ["body"],
                                     "msg": "Input should be a JSON list of /run_code request objects"}])
            if len(body) > max_batch:
                raise RequestError([{"type": "too_long", "loc": ["body"],
                                     "msg": f"a batch holds at most {max_batch} requests, got {len(body)}"}])
            reqs, detail = [], []
            for i, item in enumerate(body):
                try:
                    reqs.append(parse_run_code_request(item, loc=("body", i)))
                except RequestError as e:
                    detail.extend(e.detail)
            if detail:
                raise RequestError(detail)
        except RequestError as e:
            return _json({"detail": e.detail}, 422)
        return _json(await run_requests(reqs))

    async def ping(request: Request) -> Response:
        return _json("pong")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _json({"detail": exc.detail}, exc.status_code, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return _json({"detail": f"{type(exc).__name__}: {exc}"}, 500)

    return Starlette(
        routes=[
            Route("/run_code", run_code, methods=["POST"]),
            Route("/run_code_batch", run_code_batch, methods=["POST"]),
            Route("/v1/ping", ping, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


async def _read_json(request: Request) -> object:
    raw = await request.body()
    if not raw.strip():
        raise RequestError([{"type": "missing", "loc": ["body"], "msg": "Field required: the body is empty"}])
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        pos = getattr(e, "pos", getattr(e, "start", 0))
        raise RequestError([{"type": "json_invalid", "loc": ["body", pos], "msg": f"JSON decode error: {e}"}]) from None


def _respond(result: ExecResult, marker: str) -> dict:
    if not marker:
        return fusion_response(result)
    stderr, report = _split_marker(result.stderr, f"__torl_job_{marker}__")
    result = ExecResult(**{**result.to_dict(), "stderr": stderr})
    if report is not None and "setup_error" in report:
        sandbox_error = ExecResult("sandbox_error", stdout=result.stdout, stderr=stderr,
                                   duration_s=result.duration_s,
                                   reason=f"could not write `files` into the job directory: {report['setup_error']}")
        return fusion_response(sandbox_error)
    if report is None and result.status in ("ok", "error"):
        note = "fetch_files: the files could not be read back (output cut to the sandbox's capture cap)"
        return fusion_response(result, message="; ".join(x for x in (result.reason, note) if x))
    files = report.get("files", {}) if report else {}
    return fusion_response(result, files=files if isinstance(files, dict) else {})


# ---------------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------------
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _warn_if_exposed(host: str) -> None:
    if not _is_loopback(host):
        log.warning(
            "SANDBOX SERVER BOUND TO %s, NOT LOOPBACK: anyone who can reach this port can run code on this machine "
            "(inside the sandbox). Put it behind a firewall or bind 127.0.0.1.", host
        )


def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info") -> None:
    """Serve `sandbox` over HTTP until interrupted (Ctrl+C / SIGTERM). Binds loopback unless told otherwise."""
    _warn_if_exposed(host)
    log.info("Sandbox Fusion-compatible server on http://%s:%d (POST /run_code, POST /run_code_batch, GET /v1/ping)",
             host, port)
    uvicorn.run(create_app(sandbox), host=host, port=port, log_level=log_level, access_log=False)


def serve_local(host: str = "127.0.0.1", port: int = 8080, pool_size: int | None = None, **sandbox_kwargs) -> None:
    """Start a LocalSandbox and serve it until interrupted; the pool is closed on exit. Requests may come from
    different clients, so each snippet runs from a fresh fork of the worker (`fork_per_request`) by default."""
    from torl.sandbox.local import LocalSandbox

    sandbox_kwargs.setdefault("fork_per_request", True)

    with LocalSandbox(pool_size=pool_size, **sandbox_kwargs) as sandbox:
        serve(sandbox, host, port)


class ServerThread:
    """Runs an ASGI app with uvicorn in a background thread (tests, benchmarks).

    port=0 picks a free port. `start()` returns once the server answers HTTP (GET /v1/ping); `url` is the base URL.
        with ServerThread(create_app(sandbox)) as server:
            SandboxFusionClient(server.url).run("print(1)")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, startup_timeout_s: float = 30.0) -> None:
        _warn_if_exposed(host)
        self.app, self.host, self.port = app, host, port
        self.startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ServerThread:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"torl-http-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            try:
                httpx.get(f"{self.url}/v1/ping", timeout=1.0, trust_env=False)  # any HTTP answer: it is up
                return self
            except httpx.TransportError:
                pass
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the HTTP server on {self.url} did not start within {self.startup_timeout_s} s")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
