"""Non-streamed chat and raw completion through the real SDK, mocked at the HTTP boundary."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
import respx
from openai_testkit import (
    KEY,
    call,
    chat_request,
    completion_body,
    completion_request,
    sent_json,
)

import llmkit.errors as E
from llmkit.backends.base import Backend, Capabilities
from llmkit.backends.openai import AzureOpenAIBackend, OpenAIBackend
from llmkit.registry import get_backend_class

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_plain_chat(backend: OpenAIBackend, mock: respx.MockRouter, mode: str) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body())
    r = await call(backend, mode, chat_request("Hello"))

    assert r.text == "Hi there!"
    assert r.finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (9, 3, 12)
    assert not r.usage.estimated
    assert r.model == "gpt-4o-mini-2024-07-18"
    assert r.id == "chatcmpl-abc123"
    assert r.backend == "openai:gpt-4o-mini"
    assert r.raw["system_fingerprint"] == "fp_1"
    request = route.calls.last.request
    assert str(request.url) == "https://api.openai.com/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert sent_json(route) == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello"}],
    }


async def test_request_id_is_kept_and_logged(
    mock: respx.MockRouter, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from llmkit import AsyncClient, Client

    caplog.set_level(logging.INFO, logger="llmkit")
    headers = {"x-request-id": "req_0123"}
    mock.post("/chat/completions").respond(json=completion_body(), headers=headers)
    legacy = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": " a time", "finish_reason": "stop", "logprobs": None}],
    }
    mock.post("/completions").respond(json=legacy, headers=headers)
    if mode == "sync":
        with Client("openai:gpt-4o-mini", api_key=KEY) as client:
            responses = [client.chat("Hello"), client.complete("Hello")]
    else:
        async with AsyncClient("openai:gpt-4o-mini", api_key=KEY) as aclient:
            responses = [await aclient.chat("Hello"), await aclient.complete("Hello")]
    assert [r.request_id for r in responses] == ["req_0123", "req_0123"]
    logged = [r.getMessage() for r in caplog.records if r.name == "llmkit"]
    assert len(logged) == 2 and all("request_id=req_0123" in m for m in logged)
    assert "id=chatcmpl-abc123" in logged[0] and "id=cmpl-1" in logged[1]


async def test_every_parameter_lands_in_the_json(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body())
    request = chat_request(
        "Hello",
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n", "END"],
        seed=42,
        tools=[TOOL],
        tool_choice="get_weather",
        response_format={"type": "json_object"},
        extra={
            "n": 1,
            "logprobs": True,
            "top_logprobs": 2,
            "user": "user-123",
            "parallel_tool_calls": False,
            "frequency_penalty": 0.5,
            "vendor_knob": {"a": 1},  # unknown to the SDK: travels in extra_body
            "extra_body": {"guided_json": {"type": "object"}},
            "extra_headers": {"x-trace": "t-1"},
            "extra_query": {"tenant": "acme"},
        },
    )
    await call(backend, mode, request)
    sent = sent_json(route)
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Hello"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n", "END"],
        "seed": 42,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_object"},
        "n": 1,
        "logprobs": True,
        "top_logprobs": 2,
        "user": "user-123",
        "parallel_tool_calls": False,
        "frequency_penalty": 0.5,
        "vendor_knob": {"a": 1},
        "guided_json": {"type": "object"},
    }
    http_request = route.calls.last.request
    assert http_request.headers["x-trace"] == "t-1"
    assert http_request.url.params["tenant"] == "acme"


@pytest.mark.parametrize(
    ("model", "option", "expected"),
    [
        ("gpt-4o-mini", None, "max_tokens"),
        ("o3-mini", None, "max_completion_tokens"),
        ("o1", None, "max_completion_tokens"),
        ("gpt-5-nano", None, "max_completion_tokens"),
        ("openai/gpt-5", None, "max_completion_tokens"),
        ("gpt-4o", "max_completion_tokens", "max_completion_tokens"),
        ("o4-mini", "max_tokens", "max_tokens"),
    ],
)
async def test_max_tokens_parameter_name(
    mock: respx.MockRouter, mode: str, model: str, option: str | None, expected: str
) -> None:
    options = {"max_tokens_param": option} if option else {}
    backend = OpenAIBackend(model, api_key=KEY, **options)
    route = mock.post("/chat/completions").respond(json=completion_body())
    await call(backend, mode, chat_request(model=model, max_tokens=64))
    sent = sent_json(route)
    assert sent[expected] == 64
    other = {"max_tokens", "max_completion_tokens"} - {expected}
    assert not other & set(sent)
    await backend.aclose()


async def test_n_other_than_one_is_refused_before_sending(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body())
    with pytest.raises(E.InvalidInputError, match="n=2"):
        await call(backend, mode, chat_request(extra={"n": 2}))
    assert route.call_count == 0


async def test_tool_call_reply(backend: OpenAIBackend, mock: respx.MockRouter, mode: str) -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    mock.post("/chat/completions").respond(
        json=completion_body(None, tool_calls=calls, finish_reason="tool_calls")
    )
    r = await call(backend, mode, chat_request(tools=[TOOL]))
    assert r.finish_reason == "tool_calls"
    assert r.text == ""
    assert [(c.id, c.name, c.parsed_arguments) for c in r.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]


async def test_raw_completion(backend: OpenAIBackend, mock: respx.MockRouter, mode: str) -> None:
    route = mock.post("/completions").respond(
        json={
            "id": "cmpl-1",
            "object": "text_completion",
            "created": 1_700_000_000,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [
                {"index": 0, "text": " a time", "finish_reason": "length", "logprobs": None}
            ],
            "usage": {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4},
        }
    )
    r = await call(backend, mode, completion_request("Once upon", max_tokens=2, stop="\n"))
    assert (r.text, r.finish_reason, r.usage.total_tokens, r.id) == (
        " a time",
        "length",
        4,
        "cmpl-1",
    )
    assert str(route.calls.last.request.url) == "https://api.openai.com/v1/completions"
    assert sent_json(route) == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Once upon",
        "max_tokens": 2,
        "stop": ["\n"],
    }


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(429, json={"error": {"message": "slow down"}}),
        httpx.Response(500, json={"error": {"message": "boom"}}),
        httpx.Response(503, text="unavailable"),
        httpx.Response(409, json={"error": {"message": "conflict"}}),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    ],
    ids=["429", "500", "503", "409", "connect", "timeout"],
)
async def test_exactly_one_http_attempt_per_call(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str, failure: object
) -> None:
    # The SDK would retry all of these by itself; with max_retries=0 it must not.
    route = mock.post("/chat/completions")
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    with pytest.raises(E.ProviderError) as info:
        await call(backend, mode, chat_request())
    assert info.value.retryable
    assert route.call_count == 1


async def test_base_url_points_at_a_compatible_host(mode: str) -> None:
    backend = OpenAIBackend("llama-3.1-8b", base_url="http://127.0.0.1:8000/v1")
    with respx.mock(assert_all_called=True) as router:
        route = router.post("http://127.0.0.1:8000/v1/chat/completions").respond(
            json=completion_body("local")
        )
        r = await call(backend, mode, chat_request(model="llama-3.1-8b", max_tokens=5))
    assert r.text == "local"
    assert sent_json(route)["max_tokens"] == 5
    # No key configured: a placeholder is sent, never a real credential from elsewhere.
    assert route.calls.last.request.headers["authorization"] == "Bearer EMPTY"
    await backend.aclose()


async def test_environment_supplies_key_and_base_url(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1")
    backend = OpenAIBackend("m")
    with respx.mock() as router:
        route = router.post("http://127.0.0.1:9999/v1/chat/completions").respond(
            json=completion_body()
        )
        await call(backend, mode, chat_request(model="m"))
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    await backend.aclose()


async def test_organization_project_and_default_headers(mock: respx.MockRouter, mode: str) -> None:
    backend = OpenAIBackend(
        "gpt-4o-mini",
        api_key=KEY,
        organization="org-1",
        project="proj-1",
        default_headers={"x-team": "search"},
        default_query={"q": "1"},
    )
    route = mock.post("/chat/completions").respond(json=completion_body())
    await call(backend, mode, chat_request())
    headers = route.calls.last.request.headers
    assert headers["openai-organization"] == "org-1"
    assert headers["openai-project"] == "proj-1"
    assert headers["x-team"] == "search"
    assert route.calls.last.request.url.params["q"] == "1"
    await backend.aclose()


async def test_error_object_in_a_200_reply(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").respond(
        json={"error": {"message": "model overloaded", "code": 503}}
    )
    with pytest.raises(E.ServerError, match="model overloaded"):
        await call(backend, mode, chat_request())


async def test_malformed_reply_is_a_protocol_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").respond(text="<html>gateway</html>")
    with pytest.raises(E.ProtocolError, match="not JSON"):
        await call(backend, mode, chat_request())
    mock.post("/chat/completions").respond(json={"id": "x", "choices": []})
    with pytest.raises(E.ProtocolError, match="choices"):
        await call(backend, mode, chat_request())


def test_options_are_validated() -> None:
    with pytest.raises(E.ConfigError, match=r"unknown option.*'base_uri'"):
        OpenAIBackend("gpt-4o-mini", api_key=KEY, base_uri="http://x")
    with pytest.raises(E.ConfigError, match="max_tokens_param"):
        OpenAIBackend("gpt-4o-mini", api_key=KEY, max_tokens_param="tokens")
    with pytest.raises(E.ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o-mini")


def test_registry_and_protocol() -> None:
    assert get_backend_class("openai") is OpenAIBackend
    assert get_backend_class("azure") is AzureOpenAIBackend
    backend = OpenAIBackend("gpt-4o-mini", api_key=KEY, timeout=5)
    assert isinstance(backend, Backend)
    assert backend.spec == "openai:gpt-4o-mini"
    assert backend.capabilities == Capabilities.every()  # the chat API takes every part
    backend.close()


def test_sdk_is_built_with_llmkit_http_client_and_no_retries() -> None:
    backend = OpenAIBackend("gpt-4o-mini", api_key=KEY)
    sdk = backend.sdk
    assert sdk.max_retries == 0
    assert isinstance(sdk._client, httpx.Client)  # llmkit's, not the SDK's own (httpx2) one
    backend.close()


def test_import_llmkit_does_not_import_openai() -> None:
    code = "import sys, llmkit, llmkit.registry; print('openai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().lower()) is False
