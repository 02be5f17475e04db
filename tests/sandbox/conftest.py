"""Fixtures of the sandbox tests: the Sandbox Fusion–compatible server on loopback, in front of the session's
real LocalSandbox (one per test module), and an httpx client of it."""

from __future__ import annotations

import httpx
import pytest

from torl.sandbox.server import ServerThread, create_app


@pytest.fixture(scope="module")
def server(local_sandbox):
    with ServerThread(create_app(local_sandbox)) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as client:
        yield client
