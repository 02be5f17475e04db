"""Client of the Sandbox Fusion `POST /run_code` API: the original service or `torl sandbox serve`.

Sandbox Fusion fills `message` only for SandboxError; `torl sandbox serve` explains other outcomes ("exit code 1",
"wall-clock timeout after 0.5 s") in an `X-Torl-Reason` header, which becomes the result's `reason`.
Infrastructure failures (server down, 5xx after retries, a body that is not a Sandbox Fusion response) come back as
`ExecResult(status="sandbox_error")`, never as failing code. Connection errors, HTTP timeouts, 429 and 5xx are
retried with exponential backoff; other 4xx are not (the request itself is wrong).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import threading
import time
from dataclasses import dataclass

import httpx

from torl.sandbox.auth import TOKEN_ENV, TOKEN_FILE_ENV, resolve_token
from torl.sandbox.base import ExecResult, Sandbox, SessionError
from torl.sandbox.session_http import RemoteSession, server_has_sessions

__all__ = ["SandboxFusionClient", "fusion_request", "parse_fusion_response"]


def fusion_request(
    code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None,
    compile_timeout: float = 10.0,
) -> dict:
    """The `/run_code` body for one snippet: timeout → run_timeout, memory_mb → memory_limit_MB (None → −1)."""
    return {
        "code": code,
        "language": "python",
        "compile_timeout": compile_timeout,
        "run_timeout": timeout,
        "memory_limit_MB": -1 if memory_mb is None else int(memory_mb),
        "stdin": stdin,
        "files": {},
        "fetch_files": [],
    }


def parse_fusion_response(payload: object, *, wall_s: float = 0.0) -> ExecResult:
    """Map a `/run_code` response body to an ExecResult.

    Success + Finished → ok; Failed + Finished (non-zero exit) or Failed + Error → error with the return code;
    TimeLimitExceeded → timeout (return_code None); SandboxError or anything unusable → sandbox_error.
    """

    def unusable(why: str) -> ExecResult:
        return ExecResult("sandbox_error", duration_s=wall_s, reason=f"unusable Sandbox Fusion response: {why}")

    if not isinstance(payload, dict):
        return unusable(f"expected a JSON object, got {type(payload).__name__}")
    status, message = payload.get("status"), payload.get("message") or ""
    if not isinstance(message, str):
        message = str(message)
    extra = {"executor_pod_name": payload.get("executor_pod_name")}
    if status == "SandboxError":
        rr = payload.get("run_result") if isinstance(payload.get("run_result"), dict) else {}
        detail = message or _text(rr.get("stderr")) or "the sandbox service reported SandboxError"
        return ExecResult("sandbox_error", stdout=_text(rr.get("stdout")), stderr=_text(rr.get("stderr")),
                          duration_s=wall_s, reason=f"Sandbox Fusion: {detail}", extra=extra)
    if status not in ("Success", "Failed"):
        return unusable(f"status {status!r} is not Success, Failed or SandboxError")
    rr = payload.get("run_result")
    if not isinstance(rr, dict):
        compile_result = payload.get("compile_result")
        if status == "Failed" and isinstance(compile_result, dict):  # compiled languages: the compiler failed
            return ExecResult("error", stdout=_text(compile_result.get("stdout")),
                              stderr=_text(compile_result.get("stderr")),
                              return_code=_int_or_none(compile_result.get("return_code")), duration_s=wall_s,
                              reason="compilation failed", extra=extra)
        return unusable("run_result is missing")
    run_status, rc = rr.get("status"), rr.get("return_code")
    if rc is not None and _int_or_none(rc) is None:
        return unusable(f"return_code {rc!r} is not an integer")
    stdout, stderr = rr.get("stdout"), rr.get("stderr")
    if not (stdout is None or isinstance(stdout, str)) or not (stderr is None or isinstance(stderr, str)):
        return unusable("stdout/stderr are not strings")
    exec_time = rr.get("execution_time")
    duration = float(exec_time) if isinstance(exec_time, int | float) and not isinstance(exec_time, bool) else wall_s
    common = {"stdout": stdout or "", "stderr": stderr or "", "duration_s": duration, "extra": extra}
    if run_status == "TimeLimitExceeded":
        return ExecResult("timeout", return_code=None, reason=message or "time limit exceeded", **common)
    if run_status == "Finished":
        if rc is None:
            return unusable("run_result is Finished but return_code is null")
        if status == "Success" and rc == 0:
            return ExecResult("ok", return_code=0, **common)
        if rc == 0:
            return unusable("status Failed with return code 0")
        return ExecResult("error", return_code=int(rc), reason=message or f"exit code {rc}", **common)
    if run_status == "Error" and status == "Failed":
        return ExecResult("error", return_code=_int_or_none(rc), reason=message or "run failed", **common)
    return unusable(f"run_result.status {run_status!r} with status {status!r}")


def _text(x: object) -> str:
    return x if isinstance(x, str) else ""


def _int_or_none(x: object) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return None


class _Retry(Exception):
    """A failure worth another attempt (connection error, HTTP timeout, 429, 5xx)."""


class SandboxFusionClient(Sandbox):
    """Runs snippets on a Sandbox Fusion server.

    url: the server's base URL (`http://127.0.0.1:8080`) or its `/run_code` endpoint.
    max_concurrency: requests in flight at once (the connection pool's size; waiting requests queue for a
    connection): for `run`, and per event loop for `arun`.
    max_attempts: tries per snippet on retryable failures; backoff_s doubles after each (with jitter), capped at
    max_backoff_s. http_timeout_margin_s: added to the snippet's timeout to bound one HTTP request.
    token, token_file: the bearer token of a `torl sandbox serve --token-file` server, sent with every request;
    default: $TORL_SANDBOX_TOKEN, else the file named by $TORL_SANDBOX_TOKEN_FILE, else none.
    """

    def __init__(
        self,
        url: str,
        *,
        max_concurrency: int = 32,
        max_attempts: int = 3,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
        connect_timeout_s: float = 5.0,
        http_timeout_margin_s: float = 30.0,
        compile_timeout: float = 10.0,
        token: str | None = None,
        token_file: str | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"Sandbox Fusion URL must be http(s)://HOST[:PORT][/run_code], got {url!r}")
        base = url.rstrip("/")
        self.run_code_url = base if base.endswith("/run_code") else base + "/run_code"
        self._sessions_supported: bool | None = None  # is the server torl's, with sessions? (probed once)
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.http_timeout_margin_s = http_timeout_margin_s
        self.compile_timeout = compile_timeout
        token = resolve_token(token, token_file)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}  # never in a repr or a message
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._ssl: ssl.SSLContext | None = None  # shared, so opening a client costs microseconds, not ~20 ms
        # an AsyncClient is bound to its event loop: one per loop, open while calls are in flight
        self._loops: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"SandboxFusionClient({self.run_code_url!r}, max_concurrency={self.max_concurrency})"

    # ---- sync ---------------------------------------------------------------------------------------------------
    def run(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None
    ) -> ExecResult:
        body = fusion_request(code, timeout=timeout, memory_mb=memory_mb, stdin=stdin,
                              compile_timeout=self.compile_timeout)
        client, start, failure = self._sync_client(), time.perf_counter(), ""
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                time.sleep(self._backoff(attempt))
            try:
                response = client.post(self.run_code_url, json=body, timeout=self._http_timeout(timeout))
                return self._interpret(response, attempt, time.perf_counter() - start)
            except httpx.TransportError as e:
                failure = f"{type(e).__name__}: {e}"
            except _Retry as e:
                failure = str(e)
        return self._gave_up(failure, time.perf_counter() - start)

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxFusionClient is closed")
            if self._client is None:
                self._client = httpx.Client(limits=self._limits(), verify=self._ssl_context(), trust_env=False,
                                            headers=self._headers)
            return self._client

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    # ---- async --------------------------------------------------------------------------------------------------
    async def arun(
        self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None, stdin: str | None = None
    ) -> ExecResult:
        body = fusion_request(code, timeout=timeout, memory_mb=memory_mb, stdin=stdin,
                              compile_timeout=self.compile_timeout)
        loop = asyncio.get_running_loop()
        state = self._enter_loop(loop)
        try:
            start, failure = time.perf_counter(), ""
            for attempt in range(1, self.max_attempts + 1):
                if attempt > 1:
                    await asyncio.sleep(self._backoff(attempt))
                try:
                    response = await state.client.post(self.run_code_url, json=body,
                                                       timeout=self._http_timeout(timeout))
                    return self._interpret(response, attempt, time.perf_counter() - start)
                except httpx.TransportError as e:
                    failure = f"{type(e).__name__}: {e}"
                except _Retry as e:
                    failure = str(e)
            return self._gave_up(failure, time.perf_counter() - start)
        finally:
            await self._leave_loop(loop, state)

    def _enter_loop(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        """The AsyncClient of this event loop (opened on first use; closed when its last call returns)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxFusionClient is closed")
            state = self._loops.get(loop)
            if state is None:
                client = httpx.AsyncClient(limits=self._limits(), verify=self._ssl_context(), trust_env=False,
                                           headers=self._headers)
                state = self._loops[loop] = _LoopState(client)
            state.active += 1
            return state

    async def _leave_loop(self, loop: asyncio.AbstractEventLoop, state: _LoopState) -> None:
        with self._lock:
            state.active -= 1
            idle = state.active == 0 and self._loops.get(loop) is state
            if idle:
                del self._loops[loop]
        if idle:
            await state.client.aclose()

    # ---- shared -------------------------------------------------------------------------------------------------
    def _limits(self) -> httpx.Limits:
        # the pool bounds concurrency: a request waits (pool timeout None) until one of these connections is free
        return httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)

    def _http_timeout(self, run_timeout: float) -> httpx.Timeout:
        read = float(run_timeout) + float(self.compile_timeout) + self.http_timeout_margin_s
        return httpx.Timeout(read, connect=self.connect_timeout_s, pool=None)

    def _backoff(self, attempt: int) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2))
        return delay * (0.5 + random.random() / 2)

    def _interpret(self, response: httpx.Response, attempt: int, wall_s: float) -> ExecResult:
        code = response.status_code
        if code == 429 or code >= 500:
            raise _Retry(f"HTTP {code}: {_snippet(response.text)}")
        if code == 401:
            hint = ("the token sent was refused" if self._headers else
                    f"it needs a token: set ${TOKEN_ENV} or ${TOKEN_FILE_ENV}, or pass token_file=")
            return ExecResult("sandbox_error", duration_s=wall_s, extra={"attempts": attempt},
                              reason=f"Sandbox Fusion at {self.run_code_url} answered HTTP 401 unauthorized: {hint}")
        if code != 200:
            return ExecResult("sandbox_error", duration_s=wall_s, extra={"attempts": attempt},
                              reason=f"Sandbox Fusion at {self.run_code_url} rejected the request: HTTP {code}: "
                                     f"{_snippet(response.text)}")
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ExecResult("sandbox_error", duration_s=wall_s, extra={"attempts": attempt},
                              reason=f"Sandbox Fusion at {self.run_code_url} answered with a body that is not "
                                     f"JSON: {_snippet(response.text)}")
        result = parse_fusion_response(payload, wall_s=wall_s)
        result.extra["attempts"] = attempt
        why = response.headers.get("x-torl-reason")  # `torl sandbox serve` explains an outcome there, not in message
        if why and result.status in ("error", "timeout"):
            result.reason = why
            result.truncated = "output truncated" in why
        return result

    def _gave_up(self, failure: str, wall_s: float) -> ExecResult:
        return ExecResult("sandbox_error", duration_s=wall_s, extra={"attempts": self.max_attempts},
                          reason=f"Sandbox Fusion at {self.run_code_url} failed after {self.max_attempts} "
                                 f"attempt(s): {failure}")

    def session(self, *, memory_mb: int | None = None) -> RemoteSession:
        """An interpreter session on the server, when it is `torl sandbox serve` (found out once, by a probe of
        its /torl/v1/info); the original Sandbox Fusion holds none: SessionError."""
        client = self._sync_client()
        base = self.run_code_url.removesuffix("/run_code")
        if self._sessions_supported is None:
            self._sessions_supported = server_has_sessions(client, base)
        if not self._sessions_supported:
            raise SessionError(f"the server at {base} holds no interpreter sessions (only `torl sandbox serve` "
                               "does); use rollout.interpreter: stateless")
        return RemoteSession.open(client, base, memory_mb, self.http_timeout_margin_s)

    def close(self) -> None:
        """Close the connection pool of `run`. Idempotent; async calls close their own clients when they return."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


@dataclass
class _LoopState:
    client: httpx.AsyncClient
    active: int = 0


def _snippet(text: str, limit: int = 300) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"
