"""Fixtures for the openai backend tests: respx at the HTTP boundary, the real SDK above it.

Every behavioural test runs in both modes (the ``mode`` fixture); helpers live in
``openai_testkit.py`` (a uniquely named module, so it cannot clash with other test folders).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import respx
from openai_testkit import BASE, KEY

from llmkit.backends.openai import OpenAIBackend


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own credentials or endpoints must never leak into a test.
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_AD_TOKEN",
        "OPENAI_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def backend() -> AsyncIterator[OpenAIBackend]:
    b = OpenAIBackend("gpt-4o-mini", api_key=KEY)
    yield b
    await b.aclose()
