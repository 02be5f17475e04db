"""Interpreter sessions over HTTP: torl's extension of the Sandbox Fusion API (`torl sandbox serve`) and its client.

The Sandbox Fusion endpoints stay as they are; sessions live under /torl/v1:
- `GET /torl/v1/info` → {"server": "torl", "sessions": bool}: how a client tells torl's server from the original.
- `POST /torl/v1/sessions` {"memory_limit_MB"?} → {"session_id"} (409 when the server holds no more sessions).
- `POST /torl/v1/sessions/{id}/run` {"code", "run_timeout"?, "memory_limit_MB"?, "stdin"?} → an ExecResult as JSON
  (`torl.sandbox.ExecResult.to_dict`; a lost session answers status "error" with extra.session_lost).
- `POST /torl/v1/sessions/{id}/fork` → {"session_id"} of the copy.
- `DELETE /torl/v1/sessions/{id}` → {"closed": true}.
Session ids are random (128 bits): knowing the server's address does not let one client reach another's session.
An unknown id is 404.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
import pydantic
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from torl.sandbox.base import ExecResult, Sandbox, Session, SessionError, lost_result

PREFIX = "/torl/v1"
MAX_RUN_TIMEOUT_S = 3600.0


class SessionRunRequest(BaseModel):
    code: str
    run_timeout: float = 10
    memory_limit_MB: int = -1
    stdin: str | None = None


class SessionOpenRequest(BaseModel):
    memory_limit_MB: int = -1


def _json(content: object, status_code: int = 200) -> Response:
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace")
    return Response(body, status_code=status_code, media_type="application/json")


async def _body(request: Request, model: type[BaseModel]) -> BaseModel | Response:
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw) if raw else {})
    except json.JSONDecodeError as e:
        return _json({"detail": [{"type": "json_invalid", "loc": ["body", e.pos], "msg": "JSON decode error"}]}, 422)
    except pydantic.ValidationError as e:
        return _json({"detail": json.loads(json.dumps(e.errors(include_url=False), default=str))}, 422)


def session_routes(sandbox: Sandbox, *, max_run_timeout_s: float = MAX_RUN_TIMEOUT_S) -> list[Route]:
    """The /torl/v1 routes of `create_app` (see the module docstring). Sessions end with the sandbox."""
    sessions: dict[str, Session] = {}
    supported = type(sandbox).session is not Sandbox.session

    def remember(session: Session) -> str:
        for old in [k for k, v in sessions.items() if getattr(v, "closed", False)]:  # ended (TTL, lost): 404 now
            sessions.pop(old, None)
        sid = secrets.token_urlsafe(16)
        sessions[sid] = session
        return sid

    def limit_mb(value: int) -> int | None:
        return value if value > 0 else None

    async def info(request: Request) -> Response:
        return _json({"server": "torl", "sessions": supported})

    async def open_session(request: Request) -> Response:
        req = await _body(request, SessionOpenRequest)
        if isinstance(req, Response):
            return req
        try:
            session = await asyncio.to_thread(sandbox.session, memory_mb=limit_mb(req.memory_limit_MB))
        except SessionError as e:
            return _json({"detail": str(e)}, 409)
        return _json({"session_id": remember(session)})

    def lookup(request: Request) -> Session | Response:
        session = sessions.get(request.path_params["sid"])
        if session is None:
            return _json({"detail": "no such session (closed, expired, or never opened here)"}, 404)
        return session

    async def run(request: Request) -> Response:
        session = lookup(request)
        if isinstance(session, Response):
            return session
        req = await _body(request, SessionRunRequest)
        if isinstance(req, Response):
            return req
        timeout = min(req.run_timeout, max_run_timeout_s)
        if not timeout > 0:
            return _json(ExecResult("timeout", reason=f"run_timeout {req.run_timeout:g} leaves no time to run")
                         .to_dict())
        try:
            result = await session.arun(req.code, timeout=timeout, memory_mb=limit_mb(req.memory_limit_MB),
                                        stdin=req.stdin)
        except SessionError as e:  # closed meanwhile
            result = lost_result(str(e))
        return _json(result.to_dict())

    async def fork(request: Request) -> Response:
        session = lookup(request)
        if isinstance(session, Response):
            return session
        try:
            copy = await asyncio.to_thread(session.fork)
        except SessionError as e:
            return _json({"detail": str(e)}, 409)
        return _json({"session_id": remember(copy)})

    async def close(request: Request) -> Response:
        session = sessions.pop(request.path_params["sid"], None)
        if session is None:
            return _json({"detail": "no such session"}, 404)
        await asyncio.to_thread(session.close)
        return _json({"closed": True})

    return [
        Route(f"{PREFIX}/info", info, methods=["GET"]),
        Route(f"{PREFIX}/sessions", open_session, methods=["POST"]),
        Route(f"{PREFIX}/sessions/{{sid}}/run", run, methods=["POST"]),
        Route(f"{PREFIX}/sessions/{{sid}}/fork", fork, methods=["POST"]),
        Route(f"{PREFIX}/sessions/{{sid}}", close, methods=["DELETE"]),
    ]


# ---------------------------------------------------------------------------------------------------------------
# The client side (SandboxFusionClient.session)
# ---------------------------------------------------------------------------------------------------------------
def server_has_sessions(client: httpx.Client, base: str) -> bool:
    """Whether the server at `base` is `torl sandbox serve` with sessions (the original Sandbox Fusion has no
    /torl/v1/info: 404)."""
    try:
        response = client.get(f"{base}{PREFIX}/info", timeout=10.0)
    except httpx.TransportError as e:
        raise SessionError(f"cannot reach the sandbox server at {base}: {e}") from None
    if response.status_code != 200:
        return False
    try:
        return response.json().get("sessions") is True
    except (ValueError, AttributeError):
        return False


class RemoteSession(Session):
    """A session on a `torl sandbox serve` server. A call is never retried (it would run twice): a transport
    failure loses the session."""

    def __init__(self, client: httpx.Client, base: str, session_id: str, http_margin_s: float) -> None:
        self.client = client
        self.base = base
        self.id = session_id
        self.http_margin_s = http_margin_s
        self.closed = False
        self.lost: str | None = None

    def __repr__(self) -> str:
        return f"RemoteSession({self.base!r}, {self.id[:6]}…)"

    @classmethod
    def open(cls, client: httpx.Client, base: str, memory_mb: int | None, http_margin_s: float) -> RemoteSession:
        body = {"memory_limit_MB": -1 if memory_mb is None else int(memory_mb)}
        try:
            response = client.post(f"{base}{PREFIX}/sessions", json=body, timeout=60.0 + http_margin_s)
        except httpx.TransportError as e:
            raise SessionError(f"cannot open a session at {base}: {e}") from None
        if response.status_code != 200:
            raise SessionError(f"the server at {base} refused a session: HTTP {response.status_code}: "
                               f"{response.text[:300]}")
        return cls(client, base, response.json()["session_id"], http_margin_s)

    def run(self, code: str, *, timeout: float = 10.0, memory_mb: int | None = None,
            stdin: str | None = None) -> ExecResult:
        if self.closed:
            raise SessionError("the session is closed")
        if self.lost is not None:
            return lost_result(self.lost)
        body = {"code": code, "run_timeout": timeout, "memory_limit_MB": -1 if memory_mb is None else int(memory_mb),
                "stdin": stdin}
        try:
            response = self.client.post(f"{self.base}{PREFIX}/sessions/{self.id}/run", json=body,
                                        timeout=float(timeout) + self.http_margin_s)
        except httpx.TransportError as e:
            self.lost = f"the connection to the sandbox server failed during a call ({type(e).__name__})"
            return ExecResult("sandbox_error", reason=f"session lost: {self.lost}", extra={"session_lost": True})
        if response.status_code == 404:
            self.lost = "the server no longer knows this session"
            return lost_result(self.lost)
        if response.status_code != 200:
            return ExecResult("sandbox_error", reason=f"the sandbox server answered HTTP {response.status_code}: "
                                                      f"{response.text[:300]}")
        try:
            result = ExecResult.from_dict(response.json())
        except (ValueError, TypeError) as e:
            return ExecResult("sandbox_error", reason=f"unusable session response: {e}")
        return result  # a session lost on the server says so itself, on every later call

    def fork(self) -> RemoteSession:
        if self.closed or self.lost is not None:
            raise SessionError(f"session lost: {self.lost}" if self.lost else "the session is closed")
        try:
            response = self.client.post(f"{self.base}{PREFIX}/sessions/{self.id}/fork", timeout=60.0)
        except httpx.TransportError as e:
            raise SessionError(f"fork failed: {e}") from None
        if response.status_code != 200:
            raise SessionError(f"fork refused: HTTP {response.status_code}: {response.text[:300]}")
        return RemoteSession(self.client, self.base, response.json()["session_id"], self.http_margin_s)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.client.delete(f"{self.base}{PREFIX}/sessions/{self.id}", timeout=30.0)
        except httpx.TransportError:
            pass  # the server expires it (its session TTL)
