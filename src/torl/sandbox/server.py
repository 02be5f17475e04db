"""A Sandbox Fusion–compatible HTTP server on top of any `torl.sandbox.Sandbox` (in production: LocalSandbox).

Endpoints, as Sandbox Fusion's (bytedance/SandboxFusion, `sandbox/server/sandbox_api.py`):
- `POST /run_code`: one snippet → one response (HTTP 200 even when the code fails).
- `POST /run_code_batch` (ours): a JSON list of /run_code bodies → a JSON list of responses, same order.
- `GET /v1/ping` → "pong".

Optional bearer token (`create_app(token=...)`, `torl sandbox serve --token-file` or $TORL_SANDBOX_TOKEN, see
`torl.sandbox.auth`): then every endpoint but /v1/ping (a liveness probe that runs nothing) answers 401 unless the
request carries `Authorization: Bearer <token>`. A non-loopback address is served only with a token or
`trust_network=True`.

Requests are validated by a pydantic model with Sandbox Fusion's field types (lax mode: `"5"` and `true` are
numbers), bad ones get its 422 `{"detail": [{"type", "loc", "msg", "input"}]}`. Answers follow its runner:
`message` is set only for `SandboxError`; the code runs from a `.py` file in a fresh job directory; `files` and
`fetch_files` paths are joined onto that directory (absolute ones land in a private copy of their directory inside
the sandbox, never on the host); invalid base64 is a `SandboxError` with `run_result` null; `run_timeout` ≤ 0 is
`TimeLimitExceeded`; output up to `max_output_bytes` (1 MiB) per stream comes back whole. torl's own explanation
of an outcome ("exit code 1", "wall-clock timeout after 0.5 s") is in the `X-Torl-Reason` header of /run_code.
Differences that remain: `memory_limit_MB` ≤ 0 means the server's limit (`--memory-limit-mb`, default 2048), not
unlimited; languages other than Python answer `Failed` with a compile_result saying the toolchain is missing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import socket
import threading
import time
from typing import Literal

import httpx
import pydantic
import uvicorn
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torl.errors import UserInputError
from torl.sandbox.auth import BearerAuth, is_loopback
from torl.sandbox.base import ExecResult, Sandbox
from torl.sandbox.local import LocalSandbox
from torl.sandbox.session_http import session_routes

__all__ = [
    "RunCodeRequest",
    "RequestError",
    "parse_run_code_request",
    "fusion_response",
    "create_app",
    "serve",
    "serve_local",
    "check_exposure",
    "ServerThread",
    "SANDBOX_FUSION_LANGUAGES",
]

log = logging.getLogger(__name__)

MAX_BATCH = 4096
MAX_OUTPUT_BYTES = 1 << 20  # per stream, as Sandbox Fusion reads at most 1 MiB of each
MAX_RUN_TIMEOUT_S = 3600.0  # a ceiling on run_timeout (Sandbox Fusion has none); inf means this

# Sandbox Fusion's `Language` (sandbox/runners/types.py): any other value is a 422, as there.
SANDBOX_FUSION_LANGUAGES = (
    "python", "cpp", "nodejs", "go", "go_test", "java", "php", "csharp", "bash", "typescript", "sql", "rust", "cuda",
    "lua", "R", "perl", "D_ut", "ruby", "scala", "julia", "pytest", "junit", "kotlin_script", "jest", "verilog",
    "python_gpu", "lean", "swift", "racket",
)
Language = Literal[SANDBOX_FUSION_LANGUAGES]  # type: ignore[valid-type]


# ---------------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------------
class RunCodeRequest(BaseModel):
    """A `/run_code` body: Sandbox Fusion's `RunCodeRequest` field for field (types, defaults, required fields).
    Unknown fields (e.g. pytest's `args`) are ignored, as there."""

    compile_timeout: float = 10
    run_timeout: float = 10
    memory_limit_MB: int = -1
    code: str
    stdin: str | None = None
    language: Language
    files: dict[str, str | None] = Field(default_factory=dict)
    fetch_files: list[str] = Field(default_factory=list)


class RequestError(ValueError):
    """A malformed request; `detail` is the FastAPI-style list of errors returned with HTTP 422."""

    def __init__(self, detail: list[dict]):
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in detail))
        self.detail = detail


def parse_run_code_request(body: object, loc: tuple = ("body",)) -> RunCodeRequest:
    """Validate one /run_code body as FastAPI validates it for Sandbox Fusion; raises RequestError (every error)."""
    if body is None:  # FastAPI: a null body is a missing one
        raise RequestError([{"type": "missing", "loc": [*loc], "msg": "Field required", "input": None}])
    try:  # from_attributes: as FastAPI validates a body (a list is then 'model_attributes_type')
        return RunCodeRequest.model_validate(body, from_attributes=True)
    except pydantic.ValidationError as e:
        detail = [{**err, "loc": [*loc, *err["loc"]]} for err in e.errors(include_url=False)]
        raise RequestError(json.loads(json.dumps(detail, default=str))) from None


# ---------------------------------------------------------------------------------------------------------------
# Running one request
# ---------------------------------------------------------------------------------------------------------------
def _files_to_write(req: RunCodeRequest) -> dict[str, str]:
    """`files` as Sandbox Fusion's restore_files writes them: null content and IGNORE_THIS_FILE names skipped."""
    return {p: c for p, c in req.files.items() if isinstance(c, str) and "IGNORE_THIS_FILE" not in p}


def _base64_error(files: dict[str, str]) -> str | None:
    """What Sandbox Fusion's `base64.b64decode` (lenient: non-alphabet characters dropped) raises, if anything."""
    for content in files.values():
        try:
            base64.b64decode(content)
        except (binascii.Error, ValueError) as e:
            return str(e)
    return None


def _exception_message(code: str, error: str) -> str:
    # Sandbox Fusion: f'exception on running code {request.code}: {e} {traceback.print_tb(...)}' (print_tb → None)
    return f"exception on running code {code}: {error} None"


def _unsupported_language(req: RunCodeRequest) -> dict:
    """A non-Python language: answered as Sandbox Fusion answers when that language's toolchain is missing (the
    build step exits 127, nothing runs): Failed, a compile_result, run_result null."""
    stderr = f"torl sandbox serve runs Python only: no {req.language} toolchain on this server\n"
    return {
        "status": "Failed", "message": "",
        "compile_result": {"status": "Finished", "execution_time": 0.0, "return_code": 127, "stdout": "",
                           "stderr": stderr},
        "run_result": None, "executor_pod_name": None, "files": {},
    }


def fusion_response(result: ExecResult, *, files: dict[str, str] | None = None) -> dict:
    """A Sandbox Fusion /run_code response for one ExecResult.

    ok → Success/Finished; error → Failed/Finished with the exit code (minus the signal when killed); timeout →
    Failed/TimeLimitExceeded, return_code null; sandbox_error → SandboxError/Error with the reason as `message`.
    `message` is "" otherwise, as in Sandbox Fusion (torl's reason goes to the X-Torl-Reason header).
    """
    run_status, return_code, message = "Finished", result.return_code, ""
    if result.status == "ok":
        status, return_code = "Success", 0 if return_code is None else return_code
    elif result.status == "error":
        status = "Failed"
        if return_code is None:
            run_status = "Error"
    elif result.status == "timeout":
        status, run_status, return_code = "Failed", "TimeLimitExceeded", None
    else:
        status, run_status, return_code, message = "SandboxError", "Error", None, result.reason
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


def _reason(result: ExecResult) -> str:
    reason = result.reason
    if result.truncated:
        reason = "; ".join(x for x in (reason, "output truncated (head and tail kept)") if x)
    return reason


# ---------------------------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------------------------
def _json(content: object, status_code: int = 200, headers: dict | None = None) -> Response:
    # errors="replace": a snippet's output may hold lone surrogates, which are not UTF-8
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


def _header(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii").replace("\r", " ").replace("\n", " ")[:1000]


def create_app(sandbox: Sandbox, *, max_batch: int = MAX_BATCH, max_output_bytes: int = MAX_OUTPUT_BYTES,
               max_run_timeout_s: float = MAX_RUN_TIMEOUT_S, token: str | None = None) -> Starlette:
    """A Starlette app serving `sandbox` with Sandbox Fusion's API (see the module docstring).

    token: when given, every endpoint but GET /v1/ping needs `Authorization: Bearer <token>` (401 otherwise,
    before anything is read or run; `torl.sandbox.auth`).

    max_output_bytes: bytes kept per stream (head and tail beyond it) when the sandbox takes a per-call cap
    (LocalSandbox); training keeps LocalSandbox's own, smaller default. max_run_timeout_s: ceiling on run_timeout.
    """

    async def run_one(req: RunCodeRequest) -> tuple[dict, str]:
        """(the response, torl's reason for it)."""
        if req.language != "python":
            return _unsupported_language(req), f"language {req.language!r} is not available (Python only)"
        files = _files_to_write(req)
        if (error := _base64_error(files)) is not None:  # Sandbox Fusion fails while writing the files
            return ({"status": "SandboxError", "message": _exception_message(req.code, error),
                     "compile_result": None, "run_result": None, "executor_pod_name": None, "files": {}},
                    f"files: invalid base64: {error}")
        timeout = min(req.run_timeout, max_run_timeout_s)
        if not timeout > 0:  # ≤ 0 or NaN: Sandbox Fusion's wait_for gives up at once
            fetched = {p: files[p] for p in req.fetch_files if p in files}
            result = ExecResult("timeout", reason=f"run_timeout {req.run_timeout:g} leaves no time to run")
            return fusion_response(result, files=fetched), result.reason
        memory_mb = req.memory_limit_MB if req.memory_limit_MB > 0 else None
        try:
            if sandbox.runs_jobs:
                result = await sandbox.arun(req.code, timeout=timeout, memory_mb=memory_mb, stdin=req.stdin,
                                            files=files, fetch_files=req.fetch_files, output_cap=max_output_bytes)
            elif files or req.fetch_files:
                result = ExecResult("sandbox_error", reason=f"{type(sandbox).__name__} cannot take files/fetch_files")
            else:
                result = await sandbox.arun(req.code, timeout=timeout, memory_mb=memory_mb, stdin=req.stdin)
        except Exception as e:  # the sandbox itself broke: say so, in Sandbox Fusion's shape
            log.exception("sandbox failed")
            result = ExecResult("sandbox_error", reason=f"sandbox failed: {type(e).__name__}: {e}")
        if result.status == "sandbox_error" and result.stderr.startswith("torl-sandbox-setup-error: "):
            error = result.stderr.strip().splitlines()[-1].split(": ", 2)[-1]  # e.g. a file that cannot be written
            return ({"status": "SandboxError", "message": _exception_message(req.code, error),
                     "compile_result": None, "run_result": None, "executor_pod_name": None, "files": {}},
                    result.reason)
        return fusion_response(result, files=result.extra.get("files")), _reason(result)

    async def run_code(request: Request) -> Response:
        try:
            req = parse_run_code_request(await _read_json(request))
        except RequestError as e:
            return _json({"detail": e.detail}, 422)
        response, reason = await run_one(req)
        return _json(response, headers={"X-Torl-Reason": _header(reason)} if reason else None)

    async def run_code_batch(request: Request) -> Response:
        try:
            body = await _read_json(request)
            if not isinstance(body, list):
                raise RequestError([{"type": "list_type", "loc": ["body"], "msg": "Input should be a valid list",
                                     "input": body}])
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
        answers = await asyncio.gather(*(run_one(r) for r in reqs))
        return _json([a for a, _ in answers])

    async def ping(request: Request) -> Response:
        return _json("pong")

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _json({"detail": exc.detail}, exc.status_code, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        return _json({"detail": f"{type(exc).__name__}: {exc}"}, 500)

    app = Starlette(
        routes=[
            Route("/run_code", run_code, methods=["POST"]),
            Route("/run_code_batch", run_code_batch, methods=["POST"]),
            Route("/v1/ping", ping, methods=["GET"]),
            *session_routes(sandbox, max_run_timeout_s=max_run_timeout_s),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    if token:
        app.add_middleware(BearerAuth, token=token)
    return app


async def _read_json(request: Request) -> object:
    """The body as FastAPI parses it: empty → 'missing', invalid JSON → 'json_invalid' at the error's position."""
    raw = await request.body()
    if not raw:
        raise RequestError([{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise RequestError([{"type": "json_invalid", "loc": ["body", e.pos], "msg": "JSON decode error",
                             "input": {}, "ctx": {"error": e.msg}}]) from None
    except UnicodeDecodeError as e:
        raise RequestError([{"type": "json_invalid", "loc": ["body", e.start], "msg": "JSON decode error",
                             "input": {}, "ctx": {"error": str(e)}}]) from None


# ---------------------------------------------------------------------------------------------------------------
# Running it
# ---------------------------------------------------------------------------------------------------------------
def check_exposure(host: str, token: str | None, trust_network: bool) -> None:
    """Refuse to serve a non-loopback address without a token, unless the network is declared trusted."""
    if not is_loopback(host) and not token and not trust_network:
        raise UserInputError(
            f"refusing to serve on {host} (not loopback) without a token: anyone who reaches the port could run "
            "code on this machine. Give --token-file (or set TORL_SANDBOX_TOKEN / TORL_SANDBOX_TOKEN_FILE), or "
            "--trust-network if only trusted clients can reach this address.")


def _warn_if_exposed(host: str) -> None:
    if not is_loopback(host):
        log.warning(
            "SANDBOX SERVER BOUND TO %s, NOT LOOPBACK: anyone who can reach this port can run code on this machine "
            "(inside the sandbox). Put it behind a firewall or bind 127.0.0.1.", host
        )


def serve(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "info",
          token: str | None = None, trust_network: bool = False, **app_kwargs) -> None:
    """Serve `sandbox` over HTTP until interrupted (Ctrl+C / SIGTERM). Binds loopback unless told otherwise; a
    non-loopback `host` needs a `token` (bearer, see `create_app`) or `trust_network=True`."""
    check_exposure(host, token, trust_network)
    if token:
        log.info("requests need the bearer token (Authorization: Bearer ...); GET /v1/ping does not")
    else:
        _warn_if_exposed(host)
    log.info("Sandbox Fusion-compatible server on http://%s:%d (POST /run_code, POST /run_code_batch, GET /v1/ping)",
             host, port)
    log.info("runs language 'python' only: other Sandbox Fusion languages answer Failed with a compile_result "
             "saying the toolchain is missing (exit 127); memory_limit_MB <= 0 means %s",
             f"{sandbox.memory_mb} MB (--memory-limit-mb)" if hasattr(sandbox, "memory_mb") else "the default")
    uvicorn.run(create_app(sandbox, token=token, **app_kwargs), host=host, port=port, log_level=log_level,
                access_log=False)


def serve_local(host: str = "127.0.0.1", port: int = 8080, pool_size: int | None = None, *,
                memory_limit_mb: int = 2048, max_output_bytes: int = MAX_OUTPUT_BYTES, token: str | None = None,
                trust_network: bool = False, **sandbox_kwargs) -> None:
    """Start a LocalSandbox and serve it until interrupted; the pool is closed on exit. Requests may come from
    different clients, so each snippet runs from a fresh fork of the worker (`fork_per_request`) by default.
    memory_limit_mb: the limit of requests whose memory_limit_MB is <= 0 (Sandbox Fusion: none).
    token, trust_network: as `serve` (checked before the pool starts)."""
    check_exposure(host, token, trust_network)
    sandbox_kwargs.setdefault("fork_per_request", True)

    with LocalSandbox(pool_size=pool_size, memory_mb=memory_limit_mb, **sandbox_kwargs) as sandbox:
        serve(sandbox, host, port, max_output_bytes=max_output_bytes, token=token, trust_network=trust_network)


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
