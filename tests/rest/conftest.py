"""Fixtures of the REST backend tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from llmkit.backends.rest import RestBackend

from .helpers import Mode


@pytest.fixture(autouse=True)
def _no_rest_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend reads LLMKIT_REST_BASE_URL / LLMKIT_REST_API_KEY; tests start without."""
    monkeypatch.delenv("LLMKIT_REST_BASE_URL", raising=False)
    monkeypatch.delenv("LLMKIT_REST_API_KEY", raising=False)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> Mode:
    """Every behavioural test runs through the sync and the async path."""
    return Mode(request.param)


@pytest.fixture
async def make_backend() -> AsyncIterator[Callable[..., RestBackend]]:
    """Build backends (default base_url http://llm.test/v1) and close them afterwards."""
    made: list[RestBackend] = []

    def make(model: str = "my-model", **options: Any) -> RestBackend:
        options.setdefault("base_url", "http://llm.test/v1")
        # Loading the CA bundle costs ~70 ms a client; these URLs are plain http anyway.
        options.setdefault("verify", False)
        backend = RestBackend(model, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
