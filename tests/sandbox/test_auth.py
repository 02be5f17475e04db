"""Who may run code on `torl sandbox serve` (issue 20, part 3): with a bearer token only its holders, checked before
anything is read or run; without one, loopback works as before and other addresses are refused unless trusted.
Real LocalSandbox, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from torl.cli import main
from torl.errors import UserInputError
from torl.sandbox import make_sandbox
from torl.sandbox.auth import OPEN_PATHS, TOKEN_ENV, TOKEN_FILE_ENV, BearerAuth, resolve_token
from torl.sandbox.base import SessionError
from torl.sandbox.fusion import SandboxFusionClient
from torl.sandbox.server import ServerThread, check_exposure, create_app

TOKEN = "s3cret-token-Zq81"
BODY = {"code": "print(6 * 7)", "language": "python"}


@pytest.fixture(scope="module")
def guarded(local_sandbox):
    with ServerThread(create_app(local_sandbox, token=TOKEN)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_token_in_env(monkeypatch):
    """A token exported in the shell running the tests must not decide what they see."""
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)


def _runs(sandbox) -> int:
    return sandbox.stats.runs


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
                                           f"Basic {TOKEN}", TOKEN, "Bearer"])
@pytest.mark.parametrize("path", ["/run_code", "/run_code_batch"])
def test_no_or_wrong_token_is_401_and_runs_nothing(guarded, local_sandbox, authorization, path):
    headers = {"Authorization": authorization} if authorization is not None else {}
    body = BODY if path == "/run_code" else [BODY, BODY]
    before = _runs(local_sandbox)
    r = httpx.post(guarded.url + path, json=body, headers=headers, timeout=30, trust_env=False)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token" in r.json()["detail"] and TOKEN not in r.text
    assert _runs(local_sandbox) == before


def test_every_endpoint_but_ping_needs_the_token(guarded, local_sandbox):
    """The guard sits in front of the whole app, so routes added later (the session extension) are covered too."""
    before = _runs(local_sandbox)
    checked = []
    for route in guarded.app.routes:
        path = route.path.replace("{sid}", "some-session")
        for method in sorted(route.methods - {"HEAD"}):
            r = httpx.request(method, guarded.url + path, json={}, timeout=30, trust_env=False)
            assert r.status_code == (200 if path in OPEN_PATHS else 401), (method, path, r.text)
            checked.append(path)
    assert {"/run_code", "/run_code_batch", "/v1/ping"} <= set(checked)
    assert _runs(local_sandbox) == before


def test_the_token_is_checked_before_the_body_is_read(guarded, local_sandbox):
    """A body that is not even JSON gets 401, not 422: an outsider learns nothing about the API."""
    r = httpx.post(guarded.url + "/run_code", content=b"{not json", timeout=30, trust_env=False)
    assert r.status_code == 401


def test_the_right_token_runs_code_on_both_endpoints(guarded, local_sandbox):
    before = _runs(local_sandbox)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    one = httpx.post(guarded.url + "/run_code", json=BODY, headers=headers, timeout=60, trust_env=False)
    assert one.status_code == 200 and one.json()["run_result"]["stdout"] == "42\n"
    lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive (RFC 7235)
    batch = httpx.post(guarded.url + "/run_code_batch", json=[BODY, BODY], headers=lower, timeout=60, trust_env=False)
    assert batch.status_code == 200 and [x["run_result"]["stdout"] for x in batch.json()] == ["42\n", "42\n"]
    assert _runs(local_sandbox) == before + 3


def test_ping_needs_no_token(guarded):
    """GET /v1/ping is a liveness probe that runs nothing: open, as documented."""
    r = httpx.get(guarded.url + "/v1/ping", timeout=10, trust_env=False)
    assert (r.status_code, r.json()) == (200, "pong")


def test_loopback_without_a_token_works_as_before(local_sandbox):
    with ServerThread(create_app(local_sandbox)) as srv:
        r = httpx.post(srv.url + "/run_code", json=BODY, timeout=60, trust_env=False)
        assert r.status_code == 200 and r.json()["run_result"]["stdout"] == "42\n"
        assert SandboxFusionClient(srv.url).run("print(1)").stdout == "1\n"


def test_client_sends_the_token_from_argument_file_or_environment(guarded, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    for client in (SandboxFusionClient(guarded.url, token=TOKEN), SandboxFusionClient(guarded.url,
                                                                                      token_file=str(token_file))):
        with client:
            assert client.run("print(1)").stdout == "1\n" and TOKEN not in repr(client)
    monkeypatch.setenv(TOKEN_FILE_ENV, str(token_file))
    with make_sandbox(guarded.url) as client:  # what the veRL agent loop, rollout, eval and train build
        assert client.run("print(2)").stdout == "2\n"
    monkeypatch.delenv(TOKEN_FILE_ENV)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with make_sandbox(guarded.url) as client:
        assert asyncio.run(client.arun("print(3)")).stdout == "3\n"


def test_client_without_or_with_a_wrong_token_gets_a_clear_sandbox_error(guarded, local_sandbox):
    before = _runs(local_sandbox)
    with SandboxFusionClient(guarded.url, backoff_s=0) as client:
        r = client.run("print(1)")
        assert r.status == "sandbox_error" and "401" in r.reason and TOKEN_ENV in r.reason
        assert r.extra["attempts"] == 1  # not retried: asking again cannot help
    with SandboxFusionClient(guarded.url, token="wrong") as client:
        r = client.run("print(1)")
        assert r.status == "sandbox_error" and "refused" in r.reason and "wrong" not in r.reason
    assert _runs(local_sandbox) == before


def test_non_loopback_needs_a_token_or_trusted_network():
    with pytest.raises(UserInputError, match="--trust-network"):
        check_exposure("0.0.0.0", None, False)
    with pytest.raises(UserInputError):
        check_exposure("10.1.2.3", "", False)
    check_exposure("0.0.0.0", TOKEN, False)
    check_exposure("0.0.0.0", None, True)
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"):
        check_exposure(host, None, False)


def test_cli_refuses_a_public_bind_without_a_token_before_starting_anything(capsys):
    assert main(["sandbox", "serve", "--host", "0.0.0.0", "--port", "1"]) == 2
    assert "--trust-network" in capsys.readouterr().err


def test_tokens_that_cannot_be_used_are_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(UserInputError, match="empty"):
        resolve_token(token_file=empty)
    with pytest.raises(UserInputError, match="one word"):
        resolve_token("two words")
    with pytest.raises(UserInputError, match="no-such"):
        resolve_token(token_file=tmp_path / "no-such")
    with pytest.raises(UserInputError, match="not both"):
        resolve_token("a", tmp_path / "x")
    assert resolve_token(env={}) is None and resolve_token(env={TOKEN_ENV: f" {TOKEN}\n"}) == TOKEN
    assert TOKEN not in repr(BearerAuth(object(), TOKEN))


def test_torl_sandbox_serve_with_a_token_file_end_to_end(tmp_path):
    """The real CLI: a token from --token-file guards /run_code and the sessions, ping stays open, and the token is
    not in its log."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torl.cli", "-v", "sandbox", "serve", "--port", str(port), "--pool-size", "1",
           "--token-file", str(token_file), "--max-sessions", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/ping", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "torl sandbox serve did not start"
            time.sleep(0.2)
        assert httpx.post(f"{url}/run_code", json=BODY, timeout=60, trust_env=False).status_code == 401
        with SandboxFusionClient(url, token_file=str(token_file)) as client:
            assert client.run("print(6 * 7)").stdout == "42\n"
            with client.session() as session:  # sessions: behind the same token, capped by --max-sessions
                assert session.run("x = 6").ok and session.run("print(x * 7)").stdout == "42\n"
                with pytest.raises(SessionError, match="refused a session: HTTP 409"):
                    client.session()
        assert httpx.post(f"{url}/torl/v1/sessions", json={}, timeout=60, trust_env=False).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        log, _ = proc.communicate(timeout=30)
    assert "bearer token" in log and TOKEN not in log, log
