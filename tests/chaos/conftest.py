"""Fixtures of the chaos suite: one fault server for the session, sync/async modes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fault_server import FaultServer


@pytest.fixture(scope="session")
def server() -> Iterator[FaultServer]:
    """The fault server, shared by the whole suite (each test registers its own scenarios)."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every scenario runs through the sync and the async client."""
    return str(request.param)
