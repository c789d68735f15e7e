"""Fixtures of the Responses API tests: each backend that speaks it (the openai SDK backend
and the rest backend's OpenAI dialect), mocked with respx at the HTTP boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx

from llmkit.backends.openai import OpenAIBackend
from llmkit.backends.rest import RestBackend
from llmkit.types import ChatRequest, ChatResponse

KEY = "sk-test-LLMKITFAKEKEY-0123456789abcdef"
URLS = {"openai": "https://api.openai.com/v1/responses", "rest": "http://llm.test/v1/responses"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "LLMKIT_REST_BASE_URL",
        "LLMKIT_REST_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["openai", "rest"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_backend(kind: str, model: str = "gpt-5", **options: Any) -> Any:
    if kind == "openai":
        return OpenAIBackend(model, api_key=KEY, api="responses", **options)
    return RestBackend(
        model, base_url="http://llm.test/v1", api="responses", verify=False, api_key=KEY, **options
    )


@pytest.fixture
async def backend(kind: str) -> AsyncIterator[Any]:
    b = make_backend(kind)
    yield b
    await b.aclose()


@pytest.fixture
def url(kind: str) -> str:
    return URLS[kind]


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def chat(backend: Any, request: ChatRequest, mode: str) -> ChatResponse:
    if mode == "sync":
        return backend.chat(request)  # type: ignore[no-any-return]
    return await backend.achat(request)  # type: ignore[no-any-return]


async def stream(backend: Any, request: ChatRequest, mode: str) -> list[Any]:
    events: list[Any] = []
    if mode == "sync":
        iterator = backend.stream(request)
        try:
            for event in iterator:
                events.append(event)
        finally:
            iterator.close()
        return events
    aiterator = backend.astream(request)
    try:
        async for event in aiterator:
            events.append(event)
    finally:
        await aiterator.aclose()
    return events
