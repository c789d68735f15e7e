"""In-process checks of the pieces: the generation slots, the error table, the OpenAPI
document."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anyio
import httpx
import pytest

from llmkit import errors
from llmkit.server import _schemas as schemas
from llmkit.server import is_loopback
from llmkit.server._errors import error_reply_for
from llmkit.server._event_stream import EventStreamResponse
from llmkit.server._limits import GenerationSlots, Overloaded
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory

# ---------------------------------------------------------------------------- limiter


async def test_limiter_hands_slots_over_in_order() -> None:
    limiter = GenerationSlots(max_in_flight=1, max_queue=2, queue_timeout=None)
    await limiter.acquire()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    tasks = [asyncio.create_task(waiter("a")), asyncio.create_task(waiter("b"))]
    await asyncio.sleep(0)
    assert (limiter.in_flight, limiter.queued) == (1, 2)
    with pytest.raises(Overloaded):
        await limiter.acquire()
    limiter.release()
    for _ in range(10):  # the waiter resumes through wait_for and shield
        await asyncio.sleep(0)
    assert order == ["a"] and limiter.in_flight == 1
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b"]
    limiter.release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_limiter_cancelled_waiter_leaves_the_queue() -> None:
    limiter = GenerationSlots(max_in_flight=1, max_queue=1, queue_timeout=None)
    await limiter.acquire()
    task = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.queued == 0
    limiter.release()
    assert limiter.in_flight == 0  # the slot went back to the pool, not to the dead waiter


async def test_limiter_queue_timeout() -> None:
    limiter = GenerationSlots(max_in_flight=1, max_queue=1, queue_timeout=0.05)
    await limiter.acquire()
    with pytest.raises(Overloaded, match="no generation slot"):
        await limiter.acquire()
    assert limiter.queued == 0 and limiter.in_flight == 1


def test_limiter_serves_one_loop_after_another() -> None:
    # An app is served by one event loop after another (test clients, restarts): the queue
    # must work on each, not only on the loop that used it first.
    limiter = GenerationSlots(max_in_flight=1, max_queue=1, queue_timeout=5)

    async def hand_over() -> None:
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        assert limiter.queued == 1
        limiter.release()
        await asyncio.wait_for(waiter, 1)
        limiter.release()
        assert (limiter.in_flight, limiter.queued) == (0, 0)

    asyncio.run(hand_over())
    asyncio.run(hand_over())


def test_limiter_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        GenerationSlots(0, 1, None)
    with pytest.raises(ValueError):
        GenerationSlots(1, -1, None)


# ---------------------------------------------------------------------------- event stream


class _Events:
    """An SSE source that records whether it was closed; ``stall`` waits after one event."""

    def __init__(self, stall: bool) -> None:
        self.stall = stall
        self.closed = False

    async def generate(self) -> Any:
        try:
            yield b"data: 1\n\n"
            if self.stall:
                await anyio.sleep(30)
            yield b"data: 2\n\n"
        finally:
            self.closed = True


async def _run_response(
    stall: bool, receive: Any, *, spec: str = "2.3", send_fails: bool = False
) -> tuple[_Events, list[bool], list[Any]]:
    events, closes, sent = _Events(stall), [], []

    async def on_close(disconnected: bool) -> None:
        await anyio.sleep(0.01)  # an await that a cancelled scope would interrupt, unshielded
        closes.append(disconnected)

    async def send(message: Any) -> None:
        if send_fails and message.get("body"):
            raise OSError("client went away")
        sent.append(message)

    response = EventStreamResponse(events.generate(), on_close=on_close)
    with anyio.move_on_after(0.5):
        await response({"type": "http", "asgi": {"spec_version": spec}}, receive, send)
    return events, closes, sent


async def _never_disconnects() -> Any:
    await anyio.sleep(30)


async def test_event_stream_finished_closes_once_not_disconnected() -> None:
    events, closes, sent = await _run_response(False, _never_disconnects)
    assert closes == [False] and events.closed
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n", b""]


async def test_event_stream_disconnect_closes_the_source() -> None:
    async def disconnect() -> Any:
        await anyio.sleep(0.05)
        return {"type": "http.disconnect"}

    events, closes, _ = await _run_response(True, disconnect)
    assert closes == [True] and events.closed


async def test_event_stream_asgi_2_4_send_failure_is_a_disconnect() -> None:
    events, closes, _ = await _run_response(False, _never_disconnects, spec="2.4", send_fails=True)
    assert closes == [True] and events.closed


async def test_event_stream_close_is_shielded_from_cancellation() -> None:
    # The whole response is cancelled (a server shutting down, a cancelled scope around the
    # app): the close callback still runs to its end and the source is closed.
    events, closes, _ = await _run_response(True, _never_disconnects)
    assert closes == [False] and events.closed


# ---------------------------------------------------------------------------- errors


def test_error_table_never_leaks_secrets_or_internals() -> None:
    reply = error_reply_for(errors.ServerError("upstream said Bearer abcdefghijklmnopqrstuv"))
    assert reply.status == 502 and "abcdefghijklmnopqrstuv" not in reply.message
    crash = error_reply_for(ValueError("db password is hunter2"))
    assert (crash.status, crash.message) == (500, "internal server error")
    assert error_reply_for(errors.ServerError("x", status_code=503)).headers["retry-after"] == "1"


def test_error_status_follows_the_class_hierarchy() -> None:
    # A subclass the table does not name (a backend's own, one added later) gets the status
    # of its nearest listed ancestor, as Starlette's handlers are looked up.
    class SlowUpstream(errors.TimeoutError):
        pass

    class TooLongForThisModel(errors.ContextLengthError):
        pass

    assert (
        error_reply_for(SlowUpstream("late")).status,
        error_reply_for(SlowUpstream("late")).code,
    ) == (504, "timeout")
    reply = error_reply_for(TooLongForThisModel("long", status_code=400))
    assert (reply.status, reply.code) == (400, "context_length_exceeded")


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")


# ---------------------------------------------------------------------------- openapi, health


def test_openapi_document(serve: ServeFactory) -> None:
    served = serve(api_key=API_KEY)
    document = httpx.get(
        f"{served.base_url}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"} <= set(
        document["paths"]
    )
    schemas = document["components"]["schemas"]
    assert "messages" in schemas["ChatCompletionRequest"]["properties"]
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_completions_validation(serve: ServeFactory) -> None:
    served = serve(["ok"], max_tokens_cap=None)
    url = f"{served.v1}/completions"
    assert httpx.post(url, json={"model": "fake-model", "prompt": ["a", "b"]}).status_code == 400
    assert httpx.post(url, json={"model": "fake-model"}).json()["error"]["param"] == "prompt"
    echo = httpx.post(url, json={"model": "fake-model", "prompt": "a", "echo": True})
    assert echo.json()["error"]["param"] == "echo"
    ok = httpx.post(url, json={"model": "fake-model", "prompt": ["only one"]})
    assert ok.status_code == 200
    assert served.fake.requests[0].params.max_tokens is None  # no cap configured


def _sse_payloads(text: str) -> list[Any]:
    lines = [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_replies_match_the_openapi_models(serve: ServeFactory) -> None:
    # The models that write /openapi.json forbid unknown fields: a reply the server sends
    # that they do not describe (a new field, a changed type) fails here.
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    served = serve([Reply("plain text", tool_calls=[call])])
    chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    stream_options = {"stream": True, "stream_options": {"include_usage": True}}
    stream = {**chat, **stream_options}
    text = {"model": "fake-model", "prompt": "once"}
    with httpx.Client(base_url=served.base_url) as http:
        schemas.ChatCompletion.model_validate(http.post("/v1/chat/completions", json=chat).json())
        chunks = _sse_payloads(http.post("/v1/chat/completions", json=stream).text)
        for chunk in chunks:
            schemas.ChatCompletionChunk.model_validate(chunk)
        assert chunks[-1]["usage"] and any(c["choices"][0]["delta"] for c in chunks[:-1])
        schemas.TextCompletion.model_validate(http.post("/v1/completions", json=text).json())
        for chunk in _sse_payloads(
            http.post("/v1/completions", json={**text, **stream_options}).text
        ):
            schemas.TextCompletion.model_validate(chunk)
        schemas.ModelList.model_validate(http.get("/v1/models").json())
        schemas.ModelCard.model_validate(http.get("/v1/models/fake-model").json())
        schemas.Health.model_validate(http.get("/health").json())
        schemas.ErrorBody.model_validate(http.get("/v1/models/nope").json())
        document = http.get("/openapi.json").json()
    # Every schema the document names is generated from these models.
    names = set(document["components"]["schemas"])
    assert {m.__name__ for m in schemas.RESPONSE_MODELS} <= names
    assert {"ChatCompletionRequest", "CompletionRequestBody"} <= names
    reply_schema = document["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]
    assert reply_schema["content"]["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")
