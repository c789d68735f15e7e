"""Streamed raw completions over mocked HTTP, in every dialect and both modes: the
OpenAI-compatible ``/v1/completions`` (SSE ``text_completion`` chunks), TGI's
``/generate_stream`` and Ollama's ``/api/generate`` (NDJSON); and the same through the client."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmkit import AsyncClient, Client, RetryPolicy, errors
from llmkit.types import FinishEvent, UsageEvent

from .helpers import FAKE_KEY, Mode, Pieces, completion_request, kinds, split_at, streamed, texts

API = "http://llm.test/v1"
TGI = "http://tgi.test"
OLLAMA = "http://ollama.test:11434"


# -- wire bytes of each dialect ---------------------------------------------------------


def openai_chunk(text: str, finish_reason: str | None = None, **extra: Any) -> bytes:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "my-model",
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
        **extra,
    }
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


OPENAI_USAGE = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
OPENAI_SAMPLE = (
    openai_chunk(" upon")
    + openai_chunk(" a tíme")
    + openai_chunk(" ✓", "length")
    + b"data: "
    + json.dumps(
        {"id": "cmpl-1", "model": "my-model", "choices": [], "usage": OPENAI_USAGE}
    ).encode()
    + b"\n\ndata: [DONE]\n\n"
)


def tgi_event(text: str, details: dict[str, Any] | None = None) -> bytes:
    body = {
        "index": 1,
        "token": {"id": 1, "text": text, "logprob": -0.1, "special": False},
        "generated_text": None,
        "details": details,
    }
    return b"data:" + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


TGI_DETAILS = {"finish_reason": "length", "generated_tokens": 3, "input_length": 2}
TGI_SAMPLE = tgi_event(" upon") + tgi_event(" a tíme") + tgi_event(" ✓", TGI_DETAILS)


def ollama_line(text: str, *, done: bool = False, **extra: Any) -> bytes:
    body = {"model": "my-model", "response": text, "done": done, **extra}
    return json.dumps(body, ensure_ascii=False).encode() + b"\n"


OLLAMA_FINAL = {"done_reason": "length", "prompt_eval_count": 2, "eval_count": 3}
OLLAMA_SAMPLE = (
    ollama_line(" upon")
    + ollama_line(" a tíme")
    + ollama_line(" ✓")
    + ollama_line("", done=True, **OLLAMA_FINAL)
)

EXPECTED_TEXT = " upon a tíme ✓"
EXPECTED_USAGE = {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5, "estimated": False}


# dialect -> (backend options, endpoint URL, sample body, content type)
DIALECTS: dict[str, tuple[dict[str, Any], str, bytes, str]] = {
    "openai": ({"base_url": API}, f"{API}/completions", OPENAI_SAMPLE, "text/event-stream"),
    "tgi": (
        {"base_url": TGI, "dialect": "tgi"},
        f"{TGI}/generate_stream",
        TGI_SAMPLE,
        "text/event-stream",
    ),
    "ollama": (
        {"base_url": OLLAMA, "dialect": "ollama"},
        f"{OLLAMA}/api/generate",
        OLLAMA_SAMPLE,
        "application/x-ndjson",
    ),
}


@pytest.fixture(params=sorted(DIALECTS))
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def summary(events: list[Any]) -> tuple[Any, ...]:
    usage = [e.usage.model_dump() for e in events if isinstance(e, UsageEvent)]
    assert isinstance(events[-1], FinishEvent)
    return texts(events), usage, events[-1].finish_reason


async def test_streamed_completion_split_at_every_position(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, sample, content_type = DIALECTS[dialect]
    route = respx_mock.post(url)
    backend = make_backend(**options)
    for position in range(len(sample) + 1):
        route.mock(return_value=streamed(split_at(sample, position), content_type=content_type))
        events = await mode.stream(backend, completion_request(max_tokens=3))
        assert summary(events) == (EXPECTED_TEXT, [EXPECTED_USAGE], "length"), position
    assert kinds(events) == ["text", "text", "text", "usage", "finish"]
    assert route.call_count == len(sample) + 1


async def test_streamed_payloads(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, sample, content_type = DIALECTS[dialect]
    route = respx_mock.post(url).mock(return_value=streamed(sample, content_type=content_type))
    request = completion_request(max_tokens=3, stop=["\n"], seed=4)
    await mode.stream(make_backend(**options), request)
    sent = json.loads(route.calls.last.request.content)
    if dialect == "openai":
        assert sent == {
            "model": "my-model",
            "prompt": "Once upon",
            "max_tokens": 3,
            "stop": ["\n"],
            "seed": 4,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    elif dialect == "tgi":
        assert sent == {
            "inputs": "Once upon",
            "parameters": {"details": True, "max_new_tokens": 3, "stop": ["\n"], "seed": 4},
        }
    else:
        assert sent == {
            "model": "my-model",
            "prompt": "Once upon",
            "stream": True,
            "options": {"num_predict": 3, "stop": ["\n"], "seed": 4},
        }


async def test_openai_stream_usage_option_off(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{API}/completions").mock(return_value=streamed(OPENAI_SAMPLE))
    await mode.stream(make_backend(stream_usage=False), completion_request())
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True and "stream_options" not in sent


async def test_connection_dropped_mid_stream(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, sample, content_type = DIALECTS[dialect]
    cut = sample.index(b" a t")  # inside the second event
    body = Pieces([sample[:cut], sample[cut:]], error=httpx.ReadError("reset"), fail_at=1)
    respx_mock.post(url).mock(
        return_value=httpx.Response(200, headers={"content-type": content_type}, stream=body)
    )
    seen: list[Any] = []
    with pytest.raises(errors.ConnectionError):
        if mode.name == "sync":
            for event in make_backend(**options).stream_complete(completion_request()):
                seen.append(event)
        else:
            async for event in make_backend(**options).astream_complete(completion_request()):
                seen.append(event)
    assert texts(seen) == " upon"
    assert body.closed


async def test_stream_cut_short_is_a_connection_error(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, sample, content_type = DIALECTS[dialect]
    first_event = sample[: sample.index(b"\n") + 1 + (dialect != "ollama")]
    respx_mock.post(url).mock(return_value=streamed(first_event, content_type=content_type))
    with pytest.raises(errors.ConnectionError, match="before the reply was complete"):
        await mode.stream(make_backend(**options), completion_request())


async def test_http_error_before_the_first_event(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, _, _ = DIALECTS[dialect]
    respx_mock.post(url).mock(
        return_value=httpx.Response(503, json={"error": f"overloaded, key {FAKE_KEY}"})
    )
    backend = make_backend(api_key=FAKE_KEY, **options)
    with pytest.raises(errors.ServerError) as info:
        await mode.stream(backend, completion_request())
    assert info.value.status_code == 503
    assert FAKE_KEY not in str(info.value)


async def test_leaving_early_closes_the_response(
    mode: Mode, make_backend: Any, respx_mock: Any, dialect: str
) -> None:
    options, url, sample, content_type = DIALECTS[dialect]
    first = sample[: sample.index(b"\n") + 1 + (dialect != "ollama")]
    body = Pieces([first] * 50)
    respx_mock.post(url).mock(
        return_value=httpx.Response(200, headers={"content-type": content_type}, stream=body)
    )
    events = await mode.stream(make_backend(**options), completion_request(), limit=2)
    assert texts(events) == " upon upon"
    assert body.closed


# -- through the client -----------------------------------------------------------------


async def test_client_stream_complete_in_every_dialect(
    mode: Mode, respx_mock: Any, dialect: str
) -> None:
    """``Client.stream_complete`` reaches each dialect's streaming completion endpoint, is
    retried before its first event, and accumulates what arrived."""
    options, url, sample, content_type = DIALECTS[dialect]
    route = respx_mock.post(url).mock(
        side_effect=[
            httpx.Response(502, json={"error": "bad gateway"}),
            streamed([sample[:7], sample[7:]], content_type=content_type),
        ]
    )
    kwargs = {
        "verify": False,
        "retry": RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001),
        **options,
    }
    if mode.name == "sync":
        with Client("rest:my-model", **kwargs) as client:
            with client.stream_complete("Once upon", max_tokens=3) as stream:
                deltas = [e.text for e in stream if e.text]
            response = stream.response
    else:

        async def go() -> tuple[list[str], Any]:
            async with AsyncClient("rest:my-model", **kwargs) as client:
                async with client.stream_complete("Once upon", max_tokens=3) as stream:
                    deltas = [e.text async for e in stream if e.text]
                return deltas, stream.response

        deltas, response = await go()
    assert deltas == [" upon", " a tíme", " ✓"]
    assert response.text == EXPECTED_TEXT and response.finish_reason == "length"
    assert response.usage.model_dump() == EXPECTED_USAGE
    assert response.backend == "rest:my-model"
    assert route.call_count == 2
