"""Who may run code on `torl sandbox serve`: an optional bearer token.

Server and clients take the token from a file (`--token-file`, `token_file=`) or else from the environment:
`TORL_SANDBOX_TOKEN` (the token itself) or `TORL_SANDBOX_TOKEN_FILE` (a file holding it), so every client
(`SandboxFusionClient`, the veRL agent loop, `torl sandbox run`, rollout, eval, train) sends it with no code of its
own. With a token, every request but `GET /v1/ping` needs `Authorization: Bearer <token>`; anything else gets 401
before its body is read. The token is never logged, echoed or put in a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Mapping

from torl.errors import UserInputError

__all__ = ["TOKEN_ENV", "TOKEN_FILE_ENV", "OPEN_PATHS", "BearerAuth", "resolve_token", "read_token_file",
           "is_loopback"]

TOKEN_ENV = "TORL_SANDBOX_TOKEN"
TOKEN_FILE_ENV = "TORL_SANDBOX_TOKEN_FILE"
# Answered without a token: a liveness probe that runs nothing (load balancers, `ServerThread.start`).
OPEN_PATHS = frozenset({"/v1/ping"})


def _check(token: str, where: str) -> str:
    if not token:
        raise UserInputError(f"{where}: the sandbox token is empty")
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise UserInputError(f"{where}: the sandbox token must be one word of printable ASCII (an HTTP header)")
    return token


def read_token_file(path: str | os.PathLike) -> str:
    """The token in `path` (surrounding whitespace, e.g. a final newline, dropped)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UserInputError(f"token file {os.fspath(path)}: {getattr(e, 'strerror', None) or e}") from None
    return _check(text, f"token file {os.fspath(path)}")


def resolve_token(token: str | None = None, token_file: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> str | None:
    """The token to use: `token`, else `token_file`'s, else $TORL_SANDBOX_TOKEN, else $TORL_SANDBOX_TOKEN_FILE's;
    None when none is configured. Raises UserInputError for an empty or unusable one."""
    if token is not None and token_file is not None:
        raise UserInputError("give a sandbox token or a token file, not both")
    if token is not None:
        return _check(token, "token")
    if token_file is not None:
        return read_token_file(token_file)
    env = os.environ if env is None else env
    if env.get(TOKEN_ENV):
        return _check(env[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if env.get(TOKEN_FILE_ENV):
        return read_token_file(env[TOKEN_FILE_ENV])
    return None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class BearerAuth:
    """ASGI middleware: an HTTP request to any path but OPEN_PATHS needs `Authorization: Bearer <token>`, compared
    in constant time (hmac.compare_digest of SHA-256 digests, so not even the length leaks); others get 401."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self._digest = _digest(_check(token, "token").encode("ascii"))

    def __repr__(self) -> str:
        return f"BearerAuth({self.app!r})"

    def allows(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = next((value for name, value in headers if name.lower() == b"authorization"), b"")
        scheme, _, credential = given.strip().partition(b" ")
        ok = hmac.compare_digest(_digest(credential.strip()), self._digest)
        return ok and scheme.lower() == b"bearer"

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS and not self.allows(scope["headers"]):
            body = b'{"detail":"missing or wrong bearer token (Authorization: Bearer <token>)"}'
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="torl sandbox"')]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
