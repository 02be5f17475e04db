"""Fixtures of the reward tests."""

from __future__ import annotations

import pytest

from torl.reward import Grader


@pytest.fixture(scope="session")
def grader():
    """One grader with 2 worker processes for the session."""
    with Grader(2, timeout=10.0) as g:
        yield g
