"""Streamed raw completions (``POST /completions`` with ``stream: true``) through the real SDK
and the real Client, mocked at the HTTP boundary, sync and async."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx
from openai_testkit import BASE, KEY, Pieces, completion_request, sent_json, sse, sse_response

import llmkit.errors as E
from llmkit import AsyncClient, Client, RetryPolicy
from llmkit.backends.openai import OpenAIBackend
from llmkit.types import CompletionRequest, FinishEvent, TextDelta, UsageEvent

MODEL = "gpt-3.5-turbo-instruct"


def text_chunk(text: str, finish_reason: str | None = None) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk as OpenAI sends it."""
    return {
        "id": "cmpl-xyz789",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
    }


def usage_chunk(prompt: int = 2, completion: int = 4) -> dict[str, Any]:
    return {
        **text_chunk(""),
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


WORDS = (" upon", " a", " time", " there")
BODY = sse(*(text_chunk(w) for w in WORDS), text_chunk("", "length"), usage_chunk())


async def collect(backend: OpenAIBackend, mode: str, request: CompletionRequest) -> list[Any]:
    if mode == "sync":
        return list(backend.stream_complete(request))
    return [event async for event in backend.astream_complete(request)]


async def test_streamed_completion_events_and_payload(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/completions").mock(
        return_value=sse_response(BODY, **{"x-request-id": "req_c"})
    )
    events = await collect(backend, mode, completion_request(max_tokens=4, stop=["\n"], seed=7))

    assert [type(e) for e in events] == [TextDelta] * 4 + [UsageEvent, FinishEvent]
    assert "".join(e.text for e in events) == " upon a time there"
    usage = events[-2].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 4)
    finish = events[-1]
    assert (finish.finish_reason, finish.id, finish.model) == ("length", "cmpl-xyz789", MODEL)
    sent = sent_json(route)
    assert sent["prompt"] == "Once upon" and sent["model"] == MODEL
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert (sent["max_tokens"], sent["stop"], sent["seed"]) == (4, ["\n"], 7)
    assert "messages" not in sent


async def test_streamed_completion_accumulates_to_complete(
    mock: respx.MockRouter, mode: str
) -> None:
    """Through the real client: the events arrive one chunk at a time and the accumulated
    response equals what ``complete()`` returns for the same reply."""
    pieces = Pieces(
        [sse(text_chunk(w), done=False) for w in WORDS]
        + [sse(text_chunk("", "length"), usage_chunk())]
    )
    mock.post("/completions").mock(
        side_effect=[
            sse_response(pieces),
            httpx.Response(
                200,
                json={
                    **text_chunk(" upon a time there", "length"),
                    "usage": usage_chunk()["usage"],
                },
            ),
        ]
    )
    kwargs: dict[str, Any] = {"api_key": KEY, "retry": RetryPolicy(max_attempts=1)}
    if mode == "sync":
        with Client(f"openai:{MODEL}", **kwargs) as client:
            with client.stream_complete("Once upon", max_tokens=4) as stream:
                texts = [e.text for e in stream if isinstance(e, TextDelta)]
            streamed = stream.response
            whole = client.complete("Once upon", max_tokens=4)
    else:

        async def go() -> Any:
            async with AsyncClient(f"openai:{MODEL}", **kwargs) as client:
                async with client.stream_complete("Once upon", max_tokens=4) as stream:
                    texts = [e.text async for e in stream if isinstance(e, TextDelta)]
                return texts, stream.response, await client.complete("Once upon", max_tokens=4)

        texts, streamed, whole = await go()
    assert texts == list(WORDS)
    assert pieces.closed
    fields = {"message", "finish_reason", "usage", "model", "backend", "id"}
    assert streamed.model_dump(include=fields) == whole.model_dump(include=fields)
    assert streamed.finish_reason == "length" and not streamed.usage.estimated


async def test_error_before_the_first_chunk_is_typed_and_redacted(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/completions").respond(
        401,
        json={"error": {"message": f"Incorrect API key provided: {KEY}", "type": "auth"}},
        headers={"x-request-id": "req_401"},
    )
    with pytest.raises(E.AuthenticationError) as info:
        await collect(backend, mode, completion_request())
    assert info.value.request_id == "req_401"
    assert KEY not in str(info.value) and KEY not in repr(info.value.body)


async def test_connection_drop_mid_stream(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    stream = Pieces([sse(text_chunk(" upon"), done=False)], fail=httpx.ReadError("reset"))
    mock.post("/completions").mock(return_value=sse_response(stream))
    seen: list[Any] = []
    with pytest.raises(E.ConnectionError):
        if mode == "sync":
            for event in backend.stream_complete(completion_request()):
                seen.append(event)
        else:
            async for event in backend.astream_complete(completion_request()):
                seen.append(event)
    assert [e.text for e in seen] == [" upon"]
    assert stream.closed


async def test_stream_cut_off_without_finish_is_a_connection_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/completions").mock(return_value=sse_response(sse(text_chunk(" upon"), done=False)))
    with pytest.raises(E.ConnectionError, match="before the reply was complete"):
        await collect(backend, mode, completion_request())


async def test_error_payload_mid_stream(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    body = sse(text_chunk(" upon"), {"error": {"message": "overloaded", "type": "server_error"}})
    mock.post("/completions").mock(return_value=sse_response(body))
    seen: list[Any] = []
    with pytest.raises(E.ServerError, match="overloaded"):
        if mode == "sync":
            for event in backend.stream_complete(completion_request()):
                seen.append(event)
        else:
            async for event in backend.astream_complete(completion_request()):
                seen.append(event)
    assert [e.text for e in seen] == [" upon"]


async def test_unsupported_n_is_refused_before_any_request(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/completions").mock(return_value=sse_response(BODY))
    with pytest.raises(E.InvalidInputError, match="n=2"):
        await collect(backend, mode, completion_request(extra={"n": 2}))
    assert route.call_count == 0


def test_client_retries_a_stream_that_fails_before_its_first_chunk() -> None:
    with respx.mock(base_url=BASE) as router:
        route = router.post("/completions").mock(
            side_effect=[
                httpx.Response(503, json={"error": {"message": "busy", "type": "server"}}),
                sse_response(BODY),
            ]
        )
        retry = RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001)

        async def go() -> str:
            async with (
                AsyncClient(f"openai:{MODEL}", api_key=KEY, retry=retry) as client,
                client.stream_complete("Once upon") as stream,
            ):
                return "".join([e.text async for e in stream])

        assert asyncio.run(go()) == " upon a time there"
        assert route.call_count == 2
