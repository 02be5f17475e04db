"""Shared fixtures. Each part's tests live in tests/<part>/; fixtures used by one part stay there."""

import pytest

from torl.sandbox.local import LocalSandbox


@pytest.fixture(scope="session")
def local_sandbox():
    """One real LocalSandbox for the whole session (2 workers)."""
    with LocalSandbox(pool_size=2) as sandbox:
        yield sandbox
