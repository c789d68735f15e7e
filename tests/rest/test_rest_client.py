"""The REST backend behind llmkit's Client / AsyncClient: spec resolution, chat, stream,
errors through the retry policy, replicas -- over mocked HTTP (respx)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmkit import Client, NotFoundError, RateLimitError, RetryPolicy
from llmkit.backends.rest import RestBackend

from .helpers import FAKE_KEY, streamed

URL = "http://llm.test/v1/chat/completions"
NO_WAIT = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, jitter=0.0)


def reply(text: str = "Bonjour") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "chatcmpl-1",
            "model": "my-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5},
        },
    )


def sse_reply(*words: str, usage: bool = True) -> httpx.Response:
    out = b""
    for word in words:
        out += (
            b"data: "
            + json.dumps(
                {"id": "c", "choices": [{"index": 0, "delta": {"content": word}}]}
            ).encode()
            + b"\n\n"
        )
    out += b'data: {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
    if usage:
        out += b'data: {"id": "c", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}\n\n'
    return streamed(out + b"data: [DONE]\n\n")


def opts(**extra: Any) -> dict[str, Any]:
    return {
        "model": "rest:my-model",
        "base_url": "http://llm.test/v1",
        "retry": NO_WAIT,
        "verify": False,
        **extra,
    }


def test_client_builds_rest_backend() -> None:
    with Client(
        "rest:my-model", base_url="http://llm.test/v1", api_key=FAKE_KEY, dialect="openai"
    ) as client:
        assert isinstance(client.backend, RestBackend)
        assert client.backend.model == "my-model"
        assert FAKE_KEY not in repr(client)


def test_chat(driver: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=reply())
    response = driver.chat(
        opts(api_key=FAKE_KEY), "Hello", system="Translate to French.", temperature=0
    )
    assert response.text == "Bonjour"
    assert response.backend == "rest:my-model"
    assert response.usage.total_tokens == 5
    sent = json.loads(route.calls.last.request.content)
    assert sent["messages"][0] == {"role": "system", "content": "Translate to French."}
    assert sent["temperature"] == 0
    assert route.calls.last.request.headers["authorization"] == f"Bearer {FAKE_KEY}"


def test_request_id_header_is_kept(driver: Any, respx_mock: Any) -> None:
    answer = reply()
    answer.headers["x-request-id"] = "req-42"
    respx_mock.post(URL).mock(return_value=answer)
    assert driver.chat(opts(), "Hello").request_id == "req-42"
    respx_mock.post(URL).mock(return_value=reply())
    assert driver.chat(opts(), "Hello").request_id is None


def test_stream(driver: Any, respx_mock: Any) -> None:
    respx_mock.post(URL).mock(side_effect=lambda req: sse_reply("Bon", "jour"))
    events, response = driver.stream(opts(), "Hello")
    assert "".join(e.text for e in events) == "Bonjour"
    assert response.text == "Bonjour"
    assert response.usage.completion_tokens == 2 and not response.usage.estimated


def test_stream_without_usage_is_estimated(driver: Any, respx_mock: Any) -> None:
    respx_mock.post(URL).mock(side_effect=lambda req: sse_reply("Bon", "jour", usage=False))
    _, response = driver.stream(opts(), "Hello")
    assert response.text == "Bonjour" and response.usage.estimated


def test_retry_after_server_error(driver: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(side_effect=[httpx.Response(503, text="busy"), reply("ok")])
    assert driver.chat(opts(), "Hello").text == "ok"
    assert route.call_count == 2


def test_stream_retried_before_first_event(driver: Any, respx_mock: Any) -> None:
    dropped = streamed([b""], error=httpx.ReadError("reset"), fail_at=0)
    route = respx_mock.post(URL).mock(side_effect=[dropped, sse_reply("ok")])
    _events, response = driver.stream(opts(), "Hello")
    assert response.text == "ok" and route.call_count == 2


def test_errors_surface_typed(driver: Any, respx_mock: Any) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(404, json={"detail": "no such model"}))
    with pytest.raises(NotFoundError, match="no such model"):
        driver.chat(opts(), "Hello")
    respx_mock.post(URL).mock(return_value=httpx.Response(429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimitError) as info:
        driver.chat(opts(retry=RetryPolicy(max_attempts=1)), "Hello")
    assert info.value.retry_after == 7


def test_replicas_through_client(driver: Any, respx_mock: Any) -> None:
    respx_mock.post("http://a.test/v1/chat/completions").mock(
        side_effect=httpx.ConnectError("refused")
    )
    respx_mock.post("http://b.test/v1/chat/completions").mock(return_value=reply("from b"))
    response = driver.chat(opts(base_url=["http://a.test", "http://b.test"]), "Hello")
    assert response.text == "from b"


def test_ollama_dialect_through_client(driver: Any, respx_mock: Any) -> None:
    respx_mock.post("http://o.test/api/chat").mock(
        return_value=httpx.Response(
            200,
            json={
                "model": "llama3",
                "message": {"content": "hi"},
                "done": True,
                "eval_count": 1,
                "prompt_eval_count": 2,
            },
        )
    )
    response = driver.chat(
        opts(model="rest:llama3", base_url="http://o.test", dialect="ollama"), "Hello"
    )
    assert response.text == "hi" and response.usage.total_tokens == 3
