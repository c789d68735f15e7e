"""The provider's request id (``x-request-id``) of a streamed REST reply, in every dialect,
through Client and AsyncClient over mocked HTTP (respx; the real httpx underneath)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from llmkit import RetryPolicy
from llmkit.types import FinishEvent

from .helpers import streamed


def _openai_sse() -> bytes:
    chunks = [
        {"id": "chatcmpl-r1", "choices": [{"index": 0, "delta": {"content": "Bon"}}]},
        {"id": "chatcmpl-r1", "choices": [{"index": 0, "delta": {"content": "jour"}}]},
        {"id": "chatcmpl-r1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "chatcmpl-r1", "choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
    ]
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


def _tgi_sse() -> bytes:
    def token(text: str, details: dict[str, Any] | None = None) -> bytes:
        body = {"index": 1, "token": {"id": 1, "text": text, "special": False}, "details": details}
        return b"data:" + json.dumps(body).encode() + b"\n\n"

    details = {"finish_reason": "eos_token", "generated_tokens": 2, "input_length": 4}
    return token("Bon") + token("jour", details)


def _ollama_ndjson() -> bytes:
    def line(content: str, **extra: Any) -> bytes:
        body = {"model": "my-model", "message": {"role": "assistant", "content": content}}
        return json.dumps({**body, "done": False, **extra}).encode() + b"\n"

    return (
        line("Bon")
        + line("jour")
        + line("", done=True, done_reason="stop", prompt_eval_count=4, eval_count=2)
    )


# dialect -> (client options, streaming URL, body, content type)
DIALECTS: dict[str, tuple[dict[str, Any], str, bytes, str]] = {
    "openai": (
        {"base_url": "http://llm.test/v1"},
        "http://llm.test/v1/chat/completions",
        _openai_sse(),
        "text/event-stream",
    ),
    "tgi-native": (
        {"base_url": "http://tgi.test", "dialect": "tgi", "template": "chatml"},
        "http://tgi.test/generate_stream",
        _tgi_sse(),
        "text/event-stream",
    ),
    "tgi-messages": (  # no template: TGI's OpenAI-compatible route
        {"base_url": "http://tgi.test", "dialect": "tgi"},
        "http://tgi.test/v1/chat/completions",
        _openai_sse(),
        "text/event-stream",
    ),
    "ollama": (
        {"base_url": "http://ollama.test:11434", "dialect": "ollama"},
        "http://ollama.test:11434/api/chat",
        _ollama_ndjson(),
        "application/x-ndjson",
    ),
}


@pytest.mark.parametrize("request_id", ["req-rest-9", None])
@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_stream_carries_the_request_id(
    driver: Any,
    respx_mock: Any,
    caplog: pytest.LogCaptureFixture,
    dialect: str,
    request_id: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="llmkit")
    options, url, body, content_type = DIALECTS[dialect]
    headers = {"x-request-id": request_id} if request_id else {}
    respx_mock.post(url).mock(
        side_effect=lambda req: streamed(body, content_type=content_type, headers=headers)
    )
    events, response = driver.stream(
        {
            "model": "rest:my-model",
            "verify": False,
            "retry": RetryPolicy(max_attempts=1),
            **options,
        },
        "Hello",
    )
    assert response.text == "Bonjour"
    finish = events[-1]
    assert isinstance(finish, FinishEvent) and finish.request_id == request_id
    assert response.request_id == request_id
    logged = [r.getMessage() for r in caplog.records if r.name == "llmkit"]
    assert len(logged) == 1 and f"request_id={request_id}" in logged[0]
    assert f"id={response.id}" in logged[0]


def test_failed_over_stream_keeps_the_answering_replicas_id(driver: Any, respx_mock: Any) -> None:
    first = respx_mock.post("http://a.test/v1/chat/completions").mock(
        return_value=httpx.Response(503, headers={"x-request-id": "req-a"})
    )
    respx_mock.post("http://b.test/v1/chat/completions").mock(
        side_effect=lambda req: streamed(_openai_sse(), headers={"x-request-id": "req-b"})
    )
    _, response = driver.stream(
        {
            "model": "rest:my-model",
            "base_url": ["http://a.test/v1", "http://b.test/v1"],
            "verify": False,
            "retry": RetryPolicy(max_attempts=1),
        },
        "Hello",
    )
    assert first.called  # the first replica failed before any event ...
    assert response.text == "Bonjour" and response.request_id == "req-b"  # ... b answered
