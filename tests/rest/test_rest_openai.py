"""The OpenAI-compatible dialect over mocked HTTP (respx): plain, streamed, usage, stop
reasons, errors, malformed payloads, dropped connections -- sync and async."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from llmkit import errors
from llmkit.timeouts import Timeout
from llmkit.types import FinishEvent, TextDelta, ToolCallDelta, UsageEvent

from .helpers import Mode, chat_request, completion_request, kinds, split_at, streamed, texts

URL = "http://llm.test/v1/chat/completions"


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "my-model",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def sse(*objects: Any, done: bool = True, sep: bytes = b"\n") -> bytes:
    out = b""
    for obj in objects:
        data = obj if isinstance(obj, (bytes, str)) else json.dumps(obj, ensure_ascii=False)
        data = data.encode() if isinstance(data, str) else data
        out += b"data: " + data + sep + sep
    if done:
        out += b"data: [DONE]" + sep + sep
    return out


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
SAMPLE = sse(
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo, wörld ✓"}),
    chunk({}, "stop"),
    {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "model": "my-model",
        "choices": [],
        "usage": USAGE,
    },
)


def completion(text: str = "Hello!", finish: str = "stop", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-xyz",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "my-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        ],
        "usage": USAGE,
    }
    body.update(extra)
    return body


# ---------------------------------------------------------------------------- plain


async def test_chat_plain_payload_and_reply(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion()))
    backend = make_backend()
    request = chat_request(
        [{"role": "system", "content": "Be brief."}, "Hi"],
        temperature=0.2,
        max_tokens=16,
        stop="END",
        seed=7,
        extra={"guided_json": {"type": "object"}, "top_k": 5},
    )
    response = await mode.chat(backend, request)
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "my-model",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "max_tokens": 16,
        "stop": ["END"],
        "seed": 7,
        "guided_json": {"type": "object"},  # server-specific extras pass through
        "top_k": 5,
    }
    assert route.calls.last.request.headers["content-type"] == "application/json"
    assert response.text == "Hello!"
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens == 5 and response.usage.completion_tokens == 3
    assert not response.usage.estimated
    assert response.backend == "rest:my-model"
    assert response.id == "chatcmpl-xyz"


@pytest.mark.parametrize(
    "base_url",
    ["http://llm.test", "http://llm.test/", "http://llm.test/v1", "http://llm.test/v1/"],
)
async def test_base_url_with_or_without_v1(
    base_url: str, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion()))
    backend = make_backend(base_url=base_url)
    assert (await mode.chat(backend, chat_request())).text == "Hello!"
    assert route.called


async def test_base_url_with_prefix(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post("http://gw.test/llama/v1/chat/completions").mock(
        return_value=httpx.Response(200, json=completion())
    )
    backend = make_backend(base_url="http://gw.test/llama")
    await mode.chat(backend, chat_request())
    assert route.called


async def test_tolerant_reply_shapes(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    uuid = "3f1c2a9e-4b7d-4c1a-9f0e-2d6b8a7c5e41"
    body = completion(id=uuid, model="my-model-Q4_K_M.gguf")
    del body["usage"]  # no usage: the client estimates
    body["choices"][0]["message"]["reasoning_content"] = "hmm"  # fields we do not model
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    response = await mode.chat(make_backend(), chat_request())
    assert response.id == uuid
    assert response.model == "my-model-Q4_K_M.gguf"
    assert response.usage.estimated


@pytest.mark.parametrize("finish", ["stop", "length", "content_filter"])
async def test_plain_stop_reasons(
    finish: str, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion(finish=finish)))
    assert (await mode.chat(make_backend(), chat_request())).finish_reason == finish


async def test_plain_tool_calls(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    body = completion(text="", finish="tool_calls")
    body["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=body))
    backend = make_backend()
    assert backend.capabilities.tools
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    response = await mode.chat(backend, chat_request(tools=[tool], tool_choice="auto"))
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls[0].parsed_arguments == {"city": "Paris"}
    sent = json.loads(route.calls.last.request.content)
    assert sent["tools"][0]["function"]["name"] == "weather" and sent["tool_choice"] == "auto"


async def test_complete_uses_v1_completions(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post("http://llm.test/v1/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "cmpl-1",
                "object": "text_completion",
                "model": "my-model",
                "choices": [{"index": 0, "text": " a time", "finish_reason": "length"}],
                "usage": USAGE,
            },
        )
    )
    response = await mode.complete(make_backend(), completion_request(max_tokens=2))
    assert json.loads(route.calls.last.request.content) == {
        "model": "my-model",
        "prompt": "Once upon",
        "max_tokens": 2,
    }
    assert response.text == " a time" and response.finish_reason == "length"
    assert response.usage.total_tokens == 8


async def test_error_object_with_status_200(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    respx_mock.post(URL).mock(
        return_value=httpx.Response(200, json={"error": {"message": "model crashed", "code": 503}})
    )
    with pytest.raises(errors.ServerError, match="model crashed"):
        await mode.chat(make_backend(), chat_request())


@pytest.mark.parametrize(
    "content",
    [b"<html>oops</html>", b'{"choices": "nope"}', b"[1, 2]", b'{"choices": [{"message": 5}]}'],
)
async def test_malformed_plain_reply(
    content: bytes, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, content=content))
    with pytest.raises(errors.ProtocolError) as info:
        await mode.chat(make_backend(), chat_request())
    assert info.value.backend == "rest" and info.value.model == "my-model"


# ---------------------------------------------------------------------------- errors


ERROR_CASES = [
    (
        400,
        {"error": {"message": "bad 'temperature'", "type": "invalid_request_error"}},
        errors.BadRequestError,
    ),
    (401, {"error": {"message": "Invalid API key"}}, errors.AuthenticationError),
    (403, "Forbidden", errors.PermissionDeniedError),
    (404, {"detail": "Model 'x' not found"}, errors.NotFoundError),
    (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens.",
            "code": 400,
        },
        errors.ContextLengthError,
    ),
    (
        422,
        {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]},
        errors.BadRequestError,
    ),
    (429, {"error": {"message": "slow down"}}, errors.RateLimitError),
    (500, "Internal Server Error", errors.ServerError),
    (503, {"detail": "loading model"}, errors.ServerError),
]


@pytest.mark.parametrize(("status", "body", "cls"), ERROR_CASES)
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
    headers = {"retry-after": "3", "x-request-id": "req-42"}
    if isinstance(body, str):
        reply = httpx.Response(status, text=body, headers=headers)
    else:
        reply = httpx.Response(status, json=body, headers=headers)
    respx_mock.post(URL).mock(return_value=reply)
    backend = make_backend()
    with pytest.raises(cls) as info:
        if streaming:
            await mode.stream(backend, chat_request())
        else:
            await mode.chat(backend, chat_request())
    err = info.value
    assert type(err) is cls
    assert err.status_code == status and err.backend == "rest" and err.model == "my-model"
    assert err.request_id == "req-42"
    assert err.retry_after == 3.0
    assert err.retryable == (status in (429, 500, 503))


async def test_429_retry_after_http_date(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    respx_mock.post(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": when}))
    with pytest.raises(errors.RateLimitError) as info:
        await mode.chat(make_backend(), chat_request())
    assert 25 <= (info.value.retry_after or 0) <= 31


# ---------------------------------------------------------------------------- streaming


def summary(events: list[Any]) -> tuple[Any, ...]:
    usage = [e.usage.model_dump() for e in events if isinstance(e, UsageEvent)]
    finish = events[-1]
    assert isinstance(finish, FinishEvent)
    return (texts(events), usage, finish.finish_reason, finish.id, finish.model)


EXPECTED = ("Hello, wörld ✓", [{**USAGE, "estimated": False}], "stop", "chatcmpl-abc", "my-model")


async def test_stream_payload(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=streamed(SAMPLE))
    events = await mode.stream(make_backend(), chat_request(extra={"min_p": 0.1}))
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["min_p"] == 0.1
    assert summary(events) == EXPECTED
    assert kinds(events) == ["text", "text", "usage", "finish"]


async def test_stream_usage_option_off(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=streamed(SAMPLE))
    events = await mode.stream(make_backend(stream_usage=False), chat_request())
    assert "stream_options" not in json.loads(route.calls.last.request.content)
    assert summary(events) == EXPECTED  # usage sent without being asked is still used


async def test_stream_split_at_every_position(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(URL)
    backend = make_backend()
    for position in range(len(SAMPLE) + 1):
        route.mock(return_value=streamed(split_at(SAMPLE, position)))
        assert summary(await mode.stream(backend, chat_request())) == EXPECTED, position


@pytest.mark.parametrize("sep", [b"\n", b"\r\n", b"\r"])
async def test_stream_byte_by_byte_any_line_end(
    sep: bytes, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    payload = b": keep-alive\n\n" + sse(
        chunk({"content": "Hel"}),
        chunk({"content": "lo, wörld ✓"}),
        chunk({}, "stop", usage=USAGE),
        sep=sep,
    )
    respx_mock.post(URL).mock(return_value=streamed([bytes([b]) for b in payload]))
    assert summary(await mode.stream(make_backend(), chat_request())) == EXPECTED


async def test_stream_without_done_and_usage_on_last_choice(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    # llama.cpp-style: usage rides on the chunk that carries the finish reason; no [DONE].
    payload = sse(chunk({"content": "Hello, wörld ✓"}), chunk({}, "stop", usage=USAGE), done=False)
    respx_mock.post(URL).mock(return_value=streamed(payload))
    assert summary(await mode.stream(make_backend(), chat_request())) == EXPECTED


async def test_stream_without_usage_leaves_estimate_to_client(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    payload = sse(chunk({"content": "Hi"}), chunk({}, "length"))
    respx_mock.post(URL).mock(return_value=streamed(payload))
    events = await mode.stream(make_backend(), chat_request())
    assert kinds(events) == ["text", "finish"]
    assert events[-1].finish_reason == "length"


async def test_stream_ignores_what_follows_done(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    payload = SAMPLE + b"data: {not json\n\n"
    respx_mock.post(URL).mock(return_value=streamed(payload))
    assert summary(await mode.stream(make_backend(), chat_request())) == EXPECTED


async def test_stream_tool_call_deltas(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    payload = sse(
        chunk({"role": "assistant", "tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": None, "function": {"arguments": '"Paris"}'}}]}),
        chunk({}, "tool_calls"),
    )
    respx_mock.post(URL).mock(return_value=streamed(payload))
    events = await mode.stream(make_backend(), chat_request())
    calls = [e for e in events if isinstance(e, ToolCallDelta)]
    assert calls[0].name == "weather" and calls[0].id == "call_1"
    assert "".join(c.arguments for c in calls) == '{"city":"Paris"}'
    assert events[-1].finish_reason == "tool_calls"


async def test_stream_closes_response_on_early_exit(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    reply = streamed(SAMPLE)
    respx_mock.post(URL).mock(return_value=reply)
    backend = make_backend()
    events = await mode.stream(backend, chat_request(), limit=1)
    assert isinstance(events[0], TextDelta)
    assert reply.stream.closed  # type: ignore[attr-defined]
    assert all(r.in_flight == 0 for r in backend.replicas)


async def test_stream_closes_response_at_end(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    reply = streamed(SAMPLE)
    respx_mock.post(URL).mock(return_value=reply)
    await mode.stream(make_backend(), chat_request())
    assert reply.stream.closed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("payload", "cls", "match"),
    [
        (
            sse({"error": {"message": "CUDA out of memory", "code": 500}}),
            errors.ServerError,
            "out of memory",
        ),
        (
            sse({"error": {"message": "bad grammar", "code": 400}}),
            errors.BadRequestError,
            "bad grammar",
        ),
        (sse({"error": "oops", "detail": "x"}), errors.ServerError, "oops"),
        (
            b'event: error\ndata: {"message": "slot unavailable"}\n\n',
            errors.ServerError,
            "slot unavailable",
        ),
    ],
)
async def test_error_inside_200_stream(
    payload: bytes, cls: type[Exception], match: str, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    respx_mock.post(URL).mock(
        return_value=streamed(sse(chunk({"content": "Hi"}), done=False) + payload)
    )
    with pytest.raises(cls, match=match):
        await mode.stream(make_backend(), chat_request())


@pytest.mark.parametrize(
    ("line", "quoted"),
    [
        (
            b'data: {"choices": [{"delta": {"content": "x"}\n\n',
            '{"choices": [{"delta": {"content": "x"}',
        ),
        (b"data: [1, 2, 3]\n\n", "[1, 2, 3]"),
        (b'data: {"choices": ["not a choice"]}\n\n', "not a choice"),
        (b"data: " + b'"' + b"x" * 500 + b"\n\n", "xxxxxxxx"),
    ],
)
async def test_malformed_stream_line(
    line: bytes, quoted: str, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    reply = streamed(sse(chunk({"content": "Hi"}), done=False) + line + b"data: [DONE]\n\n")
    respx_mock.post(URL).mock(return_value=reply)
    with pytest.raises(errors.ProtocolError) as info:
        await mode.stream(make_backend(), chat_request())
    err = info.value
    assert quoted in str(err)
    assert len(err.message) < 400  # the offending line is trimmed
    assert err.backend == "rest" and err.model == "my-model"
    assert not err.retryable
    assert reply.stream.closed  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
)
async def test_connection_dropped_mid_stream(
    error: Exception, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    pieces = [
        sse(chunk({"content": "Hel"}), done=False),
        sse(chunk({"content": "lo"}), done=False),
        SAMPLE,
    ]
    reply = streamed(pieces, error=error, fail_at=2)
    respx_mock.post(URL).mock(return_value=reply)
    backend = make_backend()
    seen: list[Any] = []
    with pytest.raises(errors.ConnectionError) as info:
        if mode.name == "sync":
            for event in backend.stream(chat_request()):
                seen.append(event)
        else:
            async for event in backend.astream(chat_request()):
                seen.append(event)
    assert texts(seen) == "Hello"  # what arrived before the drop reached the caller
    assert info.value.retryable and info.value.backend == "rest"
    assert isinstance(info.value.__cause__, type(error))
    assert reply.stream.closed  # type: ignore[attr-defined]


async def test_connection_dropped_before_first_event(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    respx_mock.post(URL).mock(
        return_value=streamed([SAMPLE], error=httpx.ReadError("reset"), fail_at=0)
    )
    with pytest.raises(errors.ConnectionError):
        await mode.stream(make_backend(), chat_request())


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), errors.ConnectionError),
        (httpx.ConnectTimeout("connect"), errors.TimeoutError),
        (httpx.ReadTimeout("read"), errors.TimeoutError),
        (httpx.PoolTimeout("pool"), errors.TimeoutError),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_transport_errors(
    exc: Exception,
    cls: type[Exception],
    streaming: bool,
    mode: Mode,
    make_backend: Any,
    respx_mock: Any,
) -> None:
    respx_mock.post(URL).mock(side_effect=exc)
    backend = make_backend()
    with pytest.raises(cls) as info:
        if streaming:
            await mode.stream(backend, chat_request())
        else:
            await mode.chat(backend, chat_request())
    assert info.value.retryable
    assert info.value.__cause__ is exc


# ---------------------------------------------------------------------------- timeouts


async def test_timeout_from_request(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion()))
    timeout = Timeout(connect=1.5, first_token=7, idle=3, total=20)
    await mode.chat(make_backend(), chat_request(timeout=timeout))
    sent = route.calls.last.request.extensions["timeout"]
    assert sent == {"connect": 1.5, "read": 7, "write": 3, "pool": 7}


async def test_timeout_capped_by_deadline(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=streamed(SAMPLE))
    # The default budgets are 10 s and more: each is capped by the deadline 5 s away (5 s
    # rather than less, so a loaded machine's delay before the send cannot use it all up).
    request = chat_request(timeout=Timeout(), deadline=time.monotonic() + 5.0)
    await mode.stream(make_backend(), request)
    sent = route.calls.last.request.extensions["timeout"]
    assert all(0 < value <= 5.0 for value in sent.values())


async def test_deadline_passed_sends_nothing(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=completion()))
    with pytest.raises(errors.TimeoutError, match="deadline"):
        await mode.chat(make_backend(), chat_request(deadline=time.monotonic() - 1))
    assert not route.called


class _Trickle(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives after the headers, one piece every ``delay`` seconds."""

    def __init__(self, pieces: list[bytes], delay: float) -> None:
        self.pieces, self.delay = pieces, delay

    def __iter__(self) -> Any:
        for piece in self.pieces:
            time.sleep(self.delay)
            yield piece

    async def __aiter__(self) -> Any:
        for piece in self.pieces:
            await asyncio.sleep(self.delay)
            yield piece


async def test_stream_total_budget(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    # httpx bounds each read, not the whole stream; a server that keeps trickling bytes must
    # still not outlive the call's total budget. The headers come at once and the body
    # trickles after them (each piece well inside every per-read budget): only the total
    # can end this call, which would otherwise take 20 x 0.05 s.
    body = _Trickle([b": tick\n\n"] * 20 + [SAMPLE], delay=0.05)
    respx_mock.post(URL).mock(
        return_value=httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)
    )
    with pytest.raises(errors.TimeoutError, match="total timeout"):
        await mode.stream(
            make_backend(),
            chat_request(timeout=Timeout(connect=5, first_token=5, idle=5, total=0.3)),
        )


@pytest.mark.parametrize("streaming", [False, True])
async def test_undecodable_body_is_protocol_error(
    streaming: bool, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    headers = {"content-encoding": "gzip"}
    # A stream body for both cases: httpx.Response(content=...) would decode it at once.
    respx_mock.post(URL).mock(return_value=streamed(b"not gzip at all", headers=headers))
    backend = make_backend()
    with pytest.raises(errors.ProtocolError, match="undecodable"):
        if streaming:
            await mode.stream(backend, chat_request())
        else:
            await mode.chat(backend, chat_request())


async def test_stream_cut_short_with_clean_end_is_connection_error(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    # The body ends properly, but with neither [DONE] nor a finish_reason: a proxy gave up.
    respx_mock.post(URL).mock(return_value=streamed(sse(chunk({"content": "Hel"}), done=False)))
    seen: list[Any] = []
    with pytest.raises(errors.ConnectionError, match="before the reply was complete") as info:
        if mode.name == "sync":
            for event in make_backend().stream(chat_request()):
                seen.append(event)
        else:
            async for event in make_backend().astream(chat_request()):
                seen.append(event)
    assert texts(seen) == "Hel"
    assert info.value.retryable and info.value.backend == "rest"
