"""The Ollama-native dialect over mocked HTTP: /api/chat and /api/generate, NDJSON streams,
options mapping, keep_alive, usage, stop reasons and errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmkit import errors
from llmkit.types import FinishEvent, UsageEvent

from .helpers import Mode, chat_request, completion_request, kinds, split_at, streamed, texts

ROOT = "http://ollama.test:11434"
MODEL = "llama3.2:1b"


def req(*args: Any, **kwargs: Any) -> Any:
    return chat_request(*args, model=MODEL, **kwargs)


def ollama(make_backend: Any, **options: Any) -> Any:
    options.setdefault("base_url", ROOT)
    return make_backend("llama3.2:1b", dialect="ollama", **options)


def line(content: str, *, done: bool = False, **extra: Any) -> bytes:
    body = {
        "model": "llama3.2:1b",
        "created_at": "2024-07-01T10:00:00.123456789Z",
        "message": {"role": "assistant", "content": content},
        "done": done,
        **extra,
    }
    return json.dumps(body, ensure_ascii=False).encode() + b"\n"


FINAL = {"done_reason": "stop", "total_duration": 123, "prompt_eval_count": 9, "eval_count": 4}
SAMPLE = line("Guten") + line(" Tag, ") + line("Grüße ✓") + line("", done=True, **FINAL)


async def test_chat_payload_and_reply(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(f"{ROOT}/api/chat").mock(
        return_value=httpx.Response(
            200,
            json={
                "model": "llama3.2:1b",
                "created_at": "2024-07-01T10:00:00.123456789Z",
                "message": {"role": "assistant", "content": "Hallo!"},
                "done": True,
                "done_reason": "length",
                "prompt_eval_count": 9,
                "eval_count": 2,
            },
        )
    )
    backend = ollama(make_backend, keep_alive="10m")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    request = req(
        [
            {"role": "system", "content": "Kurz."},
            {"role": "user", "content": [{"type": "text", "text": "Was?"}, image]},
        ],
        max_tokens=2,
        temperature=0.1,
        top_p=0.5,
        stop=["\n"],
        seed=1,
        response_format={"type": "json_object"},
        extra={"num_ctx": 4096, "options": {"top_k": 3}, "think": False},
    )
    response = await mode.chat(backend, request)
    assert json.loads(route.calls.last.request.content) == {
        "model": "llama3.2:1b",
        "messages": [
            {"role": "system", "content": "Kurz."},
            {"role": "user", "content": "Was?", "images": ["iVBORw0KGgo="]},
        ],
        "stream": False,
        "format": "json",
        "keep_alive": "10m",
        "think": False,
        "options": {
            "num_predict": 2,
            "temperature": 0.1,
            "top_p": 0.5,
            "stop": ["\n"],
            "seed": 1,
            "num_ctx": 4096,
            "top_k": 3,
        },
    }
    assert response.text == "Hallo!" and response.finish_reason == "length"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (9, 2)
    assert response.created == 1719828000
    assert response.backend == "rest:llama3.2:1b"


async def test_default_base_url(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post("http://127.0.0.1:11434/api/chat").mock(
        return_value=httpx.Response(200, json={"message": {"content": "ok"}, "done": True})
    )
    backend = make_backend(MODEL, dialect="ollama", base_url=None)
    response = await mode.chat(
        backend,
        req(response_format={"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}),
    )
    assert response.text == "ok" and response.usage.estimated
    assert json.loads(route.calls.last.request.content)["format"] == {"type": "object"}


async def test_generate(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(f"{ROOT}/api/generate").mock(
        return_value=httpx.Response(
            200, json={"model": "llama3.2:1b", "response": " a time", "done": True, "eval_count": 2}
        )
    )
    response = await mode.complete(
        ollama(make_backend), completion_request(model=MODEL, extra={"raw": True})
    )
    assert json.loads(route.calls.last.request.content) == {
        "model": "llama3.2:1b",
        "prompt": "Once upon",
        "stream": False,
        "raw": True,
    }
    assert response.text == " a time"
    assert response.usage.completion_tokens == 2 and response.usage.estimated


def summary(events: list[Any]) -> tuple[Any, ...]:
    usage = [e.usage.model_dump() for e in events if isinstance(e, UsageEvent)]
    assert isinstance(events[-1], FinishEvent)
    return texts(events), usage, events[-1].finish_reason, events[-1].model


EXPECTED = (
    "Guten Tag, Grüße ✓",
    [{"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "estimated": False}],
    "stop",
    "llama3.2:1b",
)


async def test_stream_split_at_every_position(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{ROOT}/api/chat")
    backend = ollama(make_backend)
    for position in range(len(SAMPLE) + 1):
        route.mock(
            return_value=streamed(split_at(SAMPLE, position), content_type="application/x-ndjson")
        )
        events = await mode.stream(backend, req())
        assert summary(events) == EXPECTED, position
    assert kinds(events) == ["text", "text", "text", "usage", "finish"]
    assert json.loads(route.calls.last.request.content)["stream"] is True


async def test_stream_crlf_and_length(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    payload = line("a").replace(b"\n", b"\r\n") + line(
        "", done=True, done_reason="length", eval_count=1
    )
    respx_mock.post(f"{ROOT}/api/chat").mock(return_value=streamed([bytes([b]) for b in payload]))
    events = await mode.stream(ollama(make_backend), req())
    assert texts(events) == "a" and events[-1].finish_reason == "length"


async def test_stream_error_line(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    payload = line("a") + b'{"error":"llama runner process has terminated"}\n'
    respx_mock.post(f"{ROOT}/api/chat").mock(return_value=streamed(payload))
    with pytest.raises(errors.ServerError, match="runner process"):
        await mode.stream(ollama(make_backend), req())


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            404,
            {"error": "model 'llama3.2:1b' not found, try pulling it first"},
            errors.NotFoundError,
        ),
        (400, {"error": "invalid options"}, errors.BadRequestError),
        (500, {"error": "unexpected server status"}, errors.ServerError),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_http_errors(
    status: int,
    body: Any,
    cls: type[Exception],
    streaming: bool,
    mode: Mode,
    make_backend: Any,
    respx_mock: Any,
) -> None:
    respx_mock.post(f"{ROOT}/api/chat").mock(return_value=httpx.Response(status, json=body))
    backend = ollama(make_backend)
    with pytest.raises(cls, match=body["error"][:12]):
        if streaming:
            await mode.stream(backend, req())
        else:
            await mode.chat(backend, req())


async def test_malformed_and_dropped(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(f"{ROOT}/api/chat")
    backend = ollama(make_backend)
    route.mock(return_value=streamed(line("a") + b'{"message": oops}\n' + SAMPLE))
    with pytest.raises(errors.ProtocolError, match="oops") as info:
        await mode.stream(backend, req())
    assert info.value.backend == "rest"
    route.mock(return_value=streamed(line("a") + b'{"message": "not an object", "done": false}\n'))
    with pytest.raises(errors.ProtocolError, match="not an object"):
        await mode.stream(backend, req())
    route.mock(
        return_value=streamed(
            [line("a"), line("b")], error=httpx.RemoteProtocolError("eof"), fail_at=1
        )
    )
    with pytest.raises(errors.ConnectionError):
        await mode.stream(backend, req())


async def test_unsupported_inputs(mode: Mode, make_backend: Any) -> None:
    backend = ollama(make_backend)
    assert not backend.capabilities.tools
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with pytest.raises(errors.UnsupportedFeatureError, match="data: URIs"):
        await mode.chat(backend, req([{"role": "user", "content": [image]}]))
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(errors.UnsupportedFeatureError, match="tools"):
        await mode.chat(backend, req(tools=[tool]))


async def test_stream_cut_short(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    respx_mock.post(f"{ROOT}/api/chat").mock(return_value=streamed(line("a") + line("b")))
    with pytest.raises(errors.ConnectionError, match="before the reply was complete"):
        await mode.stream(ollama(make_backend), req())
