"""Fixtures of the chaos suite: one fault server for the session, sync/async modes."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest

from .fault_server import FaultServer


@pytest.fixture(scope="session", autouse=True)
def _backends_imported() -> None:
    """Import the backends (the openai SDK alone takes ~0.7 s) before any timed call, so
    the first test of a run does not pay a one-off import inside its time budget."""
    importlib.import_module("llmkit.backends.openai")
    importlib.import_module("llmkit.backends.rest")


@pytest.fixture(scope="session")
def server() -> Iterator[FaultServer]:
    """The fault server, shared by the whole suite (each test registers its own scenarios)."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Every scenario runs through the sync and the async client."""
    return str(request.param)
