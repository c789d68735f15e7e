"""Streaming through the real SDK's raw streaming response, mocked at the HTTP boundary."""

from __future__ import annotations

import itertools
import json
import logging

import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai_testkit import (
    KEY,
    Pieces,
    call,
    chat_request,
    chunk,
    collect,
    completion_body,
    sent_json,
    sse,
    sse_response,
    text_stream_chunks,
)

import llmkit.errors as E
from llmkit import AsyncClient, Client
from llmkit.backends.openai import OpenAIBackend
from llmkit.streaming import StreamAccumulator
from llmkit.types import FinishEvent, TextDelta, ToolCallDelta, UsageEvent


def accumulate(events: list[object], backend: OpenAIBackend) -> object:
    acc = StreamAccumulator(model=backend.model, backend=backend.spec)
    for event in events:
        acc.add(event)
    return acc.response()


async def test_text_stream_with_usage(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").mock(
        return_value=sse_response(sse(*text_stream_chunks()), **{"x-request-id": "req_s"})
    )
    events = await collect(backend, mode, chat_request(temperature=0))

    assert [type(e) for e in events] == [TextDelta, TextDelta, TextDelta, UsageEvent, FinishEvent]
    assert "".join(e.text for e in events) == "Hi there!"
    usage = events[3]
    assert isinstance(usage, UsageEvent)
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (9, 3)
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    assert (finish.finish_reason, finish.id, finish.model) == (
        "stop",
        "chatcmpl-abc123",
        "gpt-4o-mini-2024-07-18",
    )
    sent = sent_json(route)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0


def llm_call_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "llmkit"]


@pytest.mark.parametrize("request_id", ["req_stream7", None])
async def test_stream_request_id_reaches_the_response_and_the_log(
    mock: respx.MockRouter, mode: str, caplog: pytest.LogCaptureFixture, request_id: str | None
) -> None:
    caplog.set_level(logging.INFO, logger="llmkit")
    headers = {"x-request-id": request_id} if request_id else {}
    mock.post("/chat/completions").mock(
        return_value=sse_response(sse(*text_stream_chunks()), **headers)
    )
    if mode == "sync":
        with Client("openai:gpt-4o-mini", api_key=KEY) as client, client.stream("Hi") as stream:
            events = list(stream)
            logged = llm_call_lines(caplog)  # the stream ended: logged before .response is read
            response = stream.response
    else:
        async with (
            AsyncClient("openai:gpt-4o-mini", api_key=KEY) as aclient,
            aclient.stream("Hi") as astream,
        ):
            events = [event async for event in astream]
            logged = llm_call_lines(caplog)
            response = astream.response
    finish = events[-1]
    assert isinstance(finish, FinishEvent) and finish.request_id == request_id
    assert response.request_id == request_id
    assert response.text == "Hi there!" and response.id == "chatcmpl-abc123"
    assert len(logged) == 1 and f"request_id={request_id}" in logged[0]
    assert "id=chatcmpl-abc123" in logged[0] and "completion_tokens=3" in logged[0]
    assert llm_call_lines(caplog) == logged  # reading .response did not log it again


def tool_chunks() -> list[dict[str, object]]:
    def tc(index: int, *, id: str | None = None, name: str | None = None, args: str = "") -> dict:
        call: dict[str, object] = {"index": index, "function": {"arguments": args}}
        if id:
            call["id"] = id
            call["type"] = "function"
            call["function"] = {"name": name, "arguments": args}
        return {"tool_calls": [call]}

    return [
        chunk({"role": "assistant", "content": None}),
        chunk(tc(0, id="call_a", name="get_weather")),
        chunk(tc(0, args='{"ci')),
        chunk(tc(0, args='ty": "Paris"}')),
        chunk(tc(1, id="call_b", name="get_time")),
        chunk(tc(1, args='{"tz": "CET"}')),
        chunk({}, finish_reason="tool_calls"),
        chunk(None, usage=(20, 15)),
    ]


async def test_tool_call_deltas_and_accumulation_equals_non_streamed(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").mock(return_value=sse_response(sse(*tool_chunks())))
    events = await collect(backend, mode, chat_request())
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [(d.index, d.id, d.name, d.arguments) for d in deltas] == [
        (0, "call_a", "get_weather", ""),
        (0, None, None, '{"ci'),
        (0, None, None, 'ty": "Paris"}'),
        (1, "call_b", "get_time", ""),
        (1, None, None, '{"tz": "CET"}'),
    ]
    assert isinstance(events[-1], FinishEvent)
    assert events[-1].finish_reason == "tool_calls"
    streamed = accumulate(events, backend)

    calls = [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "CET"}'},
        },
    ]
    mock.post("/chat/completions").respond(
        json=completion_body(None, tool_calls=calls, finish_reason="tool_calls", usage=(20, 15))
    )
    plain = await call(backend, mode, chat_request())
    fields = {"message", "finish_reason", "usage", "model", "backend", "id"}
    assert streamed.model_dump(include=fields) == plain.model_dump(include=fields)


async def test_text_accumulation_equals_non_streamed(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").mock(return_value=sse_response(sse(*text_stream_chunks())))
    streamed = accumulate(await collect(backend, mode, chat_request()), backend)
    mock.post("/chat/completions").respond(json=completion_body("Hi there!"))
    plain = await call(backend, mode, chat_request())
    fields = {"message", "finish_reason", "usage", "model", "backend", "id"}
    assert streamed.model_dump(include=fields) == plain.model_dump(include=fields)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# Multi-byte characters, CRLF line ends and a comment, so that cuts land inside all of them.
AWKWARD = b": keep-alive\r\n\r\n" + sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Gr\u00fc\u00df "}),
    chunk({"content": "\u4f60\u597d \U0001f600"}),
    chunk({}, finish_reason="stop"),
    chunk(None, usage=(1, 2)),
).replace(b"\n\n", b"\r\n\r\n")


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
async def test_sse_split_at_awkward_boundaries(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str, size: int
) -> None:
    pieces = [AWKWARD[i : i + size] for i in range(0, len(AWKWARD), size)]
    mock.post("/chat/completions").mock(return_value=sse_response(Pieces(pieces)))
    events = await collect(backend, mode, chat_request())
    assert "".join(e.text for e in events) == "Gr\u00fc\u00df \u4f60\u597d \U0001f600"
    assert isinstance(events[-1], FinishEvent)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(AWKWARD)), max_size=12))
def test_sse_split_anywhere(cuts: list[int]) -> None:
    backend = OpenAIBackend("gpt-4o-mini", api_key="sk-test-hypothesis-000000")
    with respx.mock(base_url="https://api.openai.com/v1") as router:
        router.post("/chat/completions").mock(
            return_value=sse_response(Pieces(split(AWKWARD, cuts)))
        )
        events = list(backend.stream(chat_request()))
    assert "".join(e.text for e in events) == "Gr\u00fc\u00df \u4f60\u597d \U0001f600"
    assert [type(e) for e in events[-2:]] == [UsageEvent, FinishEvent]
    backend.close()


async def test_nothing_after_done_is_parsed(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    body = sse(*text_stream_chunks()) + b"data: {not json at all\n\n"
    stream = Pieces([body, b"data: never read\n\n"])
    mock.post("/chat/completions").mock(return_value=sse_response(stream))
    events = await collect(backend, mode, chat_request())
    assert "".join(e.text for e in events) == "Hi there!"
    # The rest of the body is drained (as the openai SDK does), so httpx's generators end
    # normally instead of being left to the garbage collector, but it is never parsed.
    assert stream.sent == 2
    assert stream.closed


async def test_missing_done_after_a_finish_reason_is_tolerated(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").mock(
        return_value=sse_response(sse(*text_stream_chunks(), done=False))
    )
    events = await collect(backend, mode, chat_request())
    assert "".join(e.text for e in events) == "Hi there!"
    assert isinstance(events[-1], FinishEvent)


async def test_stream_cut_off_without_finish_is_a_connection_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").mock(
        return_value=sse_response(sse(chunk({"content": "Hi"}), done=False))
    )
    with pytest.raises(E.ConnectionError, match="before the reply was complete"):
        await collect(backend, mode, chat_request())


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"error": {"message": "The server had an error", "type": "server_error"}}, E.ServerError),
        ({"error": {"message": "Rate limit reached", "code": 429}}, E.RateLimitError),
        (
            {"error": {"message": "maximum context length exceeded", "code": 400}},
            E.ContextLengthError,
        ),
    ],
)
async def test_error_payload_mid_stream(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    payload: dict[str, object],
    error: type[E.ProviderError],
) -> None:
    body = sse(chunk({"content": "Hi"}), payload)
    mock.post("/chat/completions").mock(
        return_value=sse_response(body, **{"x-request-id": "req_mid"})
    )
    seen: list[object] = []
    with pytest.raises(error) as info:
        if mode == "sync":
            for event in backend.stream(chat_request()):
                seen.append(event)
        else:
            async for event in backend.astream(chat_request()):
                seen.append(event)
    assert [e.text for e in seen] == ["Hi"]
    assert info.value.request_id == "req_mid"
    assert info.value.backend == "openai"


async def test_error_event_mid_stream(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    body = sse(chunk({"content": "Hi"}), done=False) + (
        b'event: error\ndata: {"message": "overloaded", "type": "server_error"}\n\n'
    )
    mock.post("/chat/completions").mock(return_value=sse_response(body))
    with pytest.raises(E.ServerError, match="overloaded"):
        await collect(backend, mode, chat_request())


async def test_early_close_closes_the_http_response(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    pieces = [sse(chunk({"content": f"w{i} "}), done=False) for i in range(100)]
    stream = Pieces(pieces)
    mock.post("/chat/completions").mock(return_value=sse_response(stream))
    if mode == "sync":
        gen = backend.stream(chat_request())
        first = next(gen)
        gen.close()
    else:
        agen = backend.astream(chat_request())
        first = await agen.__anext__()
        await agen.aclose()
    assert first.text == "w0 "
    assert stream.closed
    assert stream.sent < 100


async def test_http_error_before_the_first_event(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").respond(
        429,
        json={"error": {"message": "Rate limit", "type": "requests"}},
        headers={"retry-after-ms": "1500", "x-request-id": "req_429"},
    )
    with pytest.raises(E.RateLimitError) as info:
        await collect(backend, mode, chat_request())
    assert info.value.retry_after == 1.5
    assert info.value.request_id == "req_429"
    assert info.value.status_code == 429


async def test_connection_drop_before_the_stream(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(E.ConnectionError):
        await collect(backend, mode, chat_request())
    assert route.call_count == 1


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.RemoteProtocolError("peer closed connection"), E.ConnectionError),
        (httpx.ReadError("connection reset"), E.ConnectionError),
        (httpx.ReadTimeout("idle"), E.TimeoutError),
    ],
)
async def test_connection_drop_during_the_stream(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    failure: Exception,
    error: type[E.ProviderError],
) -> None:
    stream = Pieces([sse(chunk({"content": "Hi"}), done=False)], fail=failure)
    mock.post("/chat/completions").mock(
        return_value=sse_response(stream, **{"x-request-id": "req_drop"})
    )
    seen: list[object] = []
    with pytest.raises(error) as info:
        if mode == "sync":
            for event in backend.stream(chat_request()):
                seen.append(event)
        else:
            async for event in backend.astream(chat_request()):
                seen.append(event)
    assert [e.text for e in seen] == ["Hi"]
    assert info.value.request_id == "req_drop"
    assert info.value.__cause__ is failure
    assert stream.closed


async def test_stream_respects_caller_stream_options(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").mock(
        return_value=sse_response(sse(*text_stream_chunks()))
    )
    request = chat_request(extra={"stream_options": {"include_obfuscation": False}})
    await collect(backend, mode, request)
    assert sent_json(route)["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }


async def test_malformed_chunk_is_a_protocol_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/chat/completions").mock(return_value=sse_response(b"data: {oops\n\n"))
    with pytest.raises(E.ProtocolError, match="malformed JSON"):
        await collect(backend, mode, chat_request())


def test_json_helper_sanity() -> None:
    # The fixtures themselves produce what OpenAI produces.
    assert json.loads(sse(chunk({"content": "x"})).split(b"\n\n")[0][6:])["object"] == (
        "chat.completion.chunk"
    )
