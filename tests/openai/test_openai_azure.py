"""``azure:DEPLOYMENT``: URLs, api-version, credentials, through the real AzureOpenAI client."""

from __future__ import annotations

import pytest
import respx
from openai_testkit import (
    KEY,
    call,
    chat_request,
    collect,
    completion_body,
    completion_request,
    sent_json,
    sse,
    sse_response,
    text_stream_chunks,
)

import llmkit.errors as E
from llmkit.backends.openai import AzureOpenAIBackend

ENDPOINT = "https://my-resource.openai.azure.com"
VERSION = "2024-10-21"
CHAT_URL = f"{ENDPOINT}/openai/deployments/my-gpt4o/chat/completions"


@pytest.fixture
def azure_mock() -> respx.MockRouter:
    with respx.mock(assert_all_called=False) as router:
        yield router


async def test_chat_url_version_and_key(azure_mock: respx.MockRouter, mode: str) -> None:
    backend = AzureOpenAIBackend(
        "my-gpt4o", endpoint=ENDPOINT + "/", api_version=VERSION, api_key=KEY
    )
    route = azure_mock.post(CHAT_URL, params={"api-version": VERSION}).respond(
        json=completion_body("from azure")
    )
    r = await call(backend, mode, chat_request(model="my-gpt4o", max_tokens=10))
    assert r.text == "from azure"
    assert r.backend == "azure:my-gpt4o"
    request = route.calls.last.request
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers
    assert sent_json(route)["max_tokens"] == 10
    await backend.aclose()


async def test_stream_url(azure_mock: respx.MockRouter, mode: str) -> None:
    backend = AzureOpenAIBackend("my-gpt4o", endpoint=ENDPOINT, api_version=VERSION, api_key=KEY)
    route = azure_mock.post(CHAT_URL, params={"api-version": VERSION}).mock(
        return_value=sse_response(sse(*text_stream_chunks()))
    )
    events = await collect(backend, mode, chat_request(model="my-gpt4o"))
    assert "".join(e.text for e in events) == "Hi there!"
    assert route.call_count == 1
    await backend.aclose()


async def test_completion_url(azure_mock: respx.MockRouter, mode: str) -> None:
    backend = AzureOpenAIBackend("instruct", endpoint=ENDPOINT, api_version=VERSION, api_key=KEY)
    route = azure_mock.post(f"{ENDPOINT}/openai/deployments/instruct/completions").respond(
        json={"id": "c", "choices": [{"index": 0, "text": "ok", "finish_reason": "stop"}]}
    )
    request = completion_request()
    request.model = "instruct"
    r = await call(backend, mode, request)
    assert r.text == "ok"
    assert route.calls.last.request.url.params["api-version"] == VERSION
    await backend.aclose()


async def test_ad_token_and_token_provider(azure_mock: respx.MockRouter, mode: str) -> None:
    route = azure_mock.post(CHAT_URL).respond(json=completion_body())
    static = AzureOpenAIBackend(
        "my-gpt4o", endpoint=ENDPOINT, api_version=VERSION, azure_ad_token="eyJ.static.token"
    )
    await call(static, mode, chat_request(model="my-gpt4o"))
    assert route.calls.last.request.headers["authorization"] == "Bearer eyJ.static.token"

    issued: list[str] = []

    def provider() -> str:
        issued.append(f"eyJ.fresh.{len(issued)}")
        return issued[-1]

    dynamic = AzureOpenAIBackend(
        "my-gpt4o", endpoint=ENDPOINT, api_version=VERSION, azure_ad_token_provider=provider
    )
    await call(dynamic, mode, chat_request(model="my-gpt4o"))
    await call(dynamic, mode, chat_request(model="my-gpt4o"))
    assert route.calls.last.request.headers["authorization"] == f"Bearer {issued[-1]}"
    assert len(issued) == 2  # asked for every request: tokens expire
    await static.aclose()
    await dynamic.aclose()


async def test_environment(monkeypatch: pytest.MonkeyPatch, azure_mock: respx.MockRouter) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("OPENAI_API_VERSION", VERSION)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    backend = AzureOpenAIBackend("my-gpt4o")
    route = azure_mock.post(CHAT_URL, params={"api-version": VERSION}).respond(
        json=completion_body()
    )
    backend.chat(chat_request(model="my-gpt4o"))
    assert route.calls.last.request.headers["api-key"] == KEY
    assert "my-resource" in repr(backend) and KEY not in repr(backend)
    backend.close()


async def test_errors_map_the_same(azure_mock: respx.MockRouter, mode: str) -> None:
    backend = AzureOpenAIBackend("my-gpt4o", endpoint=ENDPOINT, api_version=VERSION, api_key=KEY)
    azure_mock.post(CHAT_URL).respond(
        429,
        json={"error": {"code": "429", "message": "Requests exceeded call rate limit."}},
        headers={"retry-after": "12", "apim-request-id": "apim-1", "x-request-id": "req_az"},
    )
    with pytest.raises(E.RateLimitError) as info:
        await call(backend, mode, chat_request(model="my-gpt4o"))
    assert (info.value.retry_after, info.value.request_id, info.value.backend) == (
        12.0,
        "req_az",
        "azure",
    )
    await backend.aclose()


def test_configuration_errors() -> None:
    with pytest.raises(E.ConfigError, match="endpoint"):
        AzureOpenAIBackend("d", api_version=VERSION, api_key=KEY)
    with pytest.raises(E.ConfigError, match="api_version"):
        AzureOpenAIBackend("d", endpoint=ENDPOINT, api_key=KEY)
    with pytest.raises(E.ConfigError, match="credential"):
        AzureOpenAIBackend("d", endpoint=ENDPOINT, api_version=VERSION)
    with pytest.raises(E.ConfigError, match="unknown option"):
        AzureOpenAIBackend("d", endpoint=ENDPOINT, api_version=VERSION, api_key=KEY, base_url="x")
