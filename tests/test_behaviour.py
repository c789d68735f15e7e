"""The behavioural suite every backend must pass, through the real Client and AsyncClient.

Each harness puts one backend behind the same script: the fake backend directly, the
``openai`` and ``rest`` backends with their HTTP mocked at the transport (respx: the real
SDK and the real httpx code run). The local ``hf`` backend runs the model-independent part
of the suite in ``tests/hf/test_hf_behaviour.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import pytest
import respx
from pydantic import BaseModel

from llmkit import (
    AsyncClient,
    BadRequestError,
    Client,
    OutputValidationError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Usage,
)
from llmkit.testing import FakeBackend, Reply, SleepRecorder

TEXT = "Hello there, world! How are you?"
CHUNKS = ["Hel", "lo there", ", world!", " How", " are you?"]
USAGE = (11, 9)
KEY = "sk-test-BEHAVIOURKEY-0123456789"


@dataclass
class Scripted:
    """One scripted answer: a reply, or an HTTP error status (with headers)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    content: str = TEXT
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    def chunks(self) -> list[str]:
        if self.content == TEXT:
            return CHUNKS
        return [self.content[i : i + 7] for i in range(0, len(self.content), 7)]


class ClosingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """SSE bytes for respx that remember whether the client closed them."""

    def __init__(self, pieces: list[bytes], log: list[ClosingStream]) -> None:
        self.pieces = pieces
        self.closed = False
        log.append(self)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse(item: Scripted) -> list[bytes]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m-1"}
    deltas: list[dict[str, Any]] = [{"content": c} for c in item.chunks()]
    for index, call in enumerate(item.tool_calls):
        args = call["function"]["arguments"]
        half = len(args) // 2
        first = {"index": index, "id": call["id"], "type": "function"}
        first["function"] = {"name": call["function"]["name"], "arguments": args[:half]}
        deltas += [
            {"tool_calls": [first]},
            {"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]},
        ]
    pieces = []
    for i, delta in enumerate(deltas):
        if i == 0:
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        pieces.append(f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode())
    last = {"index": 0, "delta": {}, "finish_reason": item.finish_reason}
    pieces.append(f"data: {json.dumps({**base, 'choices': [last]})}\n\n".encode())
    usage = {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": sum(USAGE)}
    pieces.append(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def completion(item: Scripted) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": item.content or None}
    if item.tool_calls:
        message["tool_calls"] = item.tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m-1",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": item.finish_reason,
            }
        ],
        "usage": {"prompt_tokens": USAGE[0], "completion_tokens": USAGE[1], "total_tokens": 20},
    }


class Harness:
    name: str

    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.recorder = SleepRecorder()

    def retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=3).with_clock(
            sleep=self.recorder.sleep,
            async_sleep=self.recorder.async_sleep,
            clock=self.recorder.clock,
        )

    def client_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def calls(self) -> int:
        raise NotImplementedError

    def closed_streams(self) -> int:
        raise NotImplementedError

    def sent(self, index: int) -> dict[str, Any]:
        """What the backend received for call ``index``, as OpenAI-shaped JSON."""
        raise NotImplementedError

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeHarness(Harness):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.backend = FakeBackend([self._answer])

    def _answer(self, request: Any) -> Any:
        item = self.script.pop(0)
        if item.status == 429:
            return RateLimitError("rate limited", retry_after=float(item.headers["retry-after"]))
        if item.status == 400:
            return BadRequestError("bad request", status_code=400)
        if item.status >= 500:
            return ServerError("unavailable", status_code=item.status)
        return Reply(
            item.content,
            chunks=item.chunks(),
            tool_calls=item.tool_calls,
            usage=Usage(prompt_tokens=USAGE[0], completion_tokens=USAGE[1]),
            finish_reason=item.finish_reason,
        )

    def client_kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend, "retry": self.retry()}

    def calls(self) -> int:
        return len(self.backend.requests)

    def closed_streams(self) -> int:
        return self.backend.closed_streams

    def sent(self, index: int) -> dict[str, Any]:
        request = self.backend.requests[index]
        return {
            "messages": [m.to_openai() for m in request.messages],
            **request.params.given(),
            **request.extra,
        }


class HTTPHarness(Harness):
    """An OpenAI-compatible endpoint mocked with respx."""

    url: str
    spec: str

    def __init__(self) -> None:
        super().__init__()
        self.router = respx.mock(assert_all_called=False)
        self.streams: list[ClosingStream] = []

    def __enter__(self) -> Harness:
        self.router.__enter__()
        self.route = self.router.post(f"{self.url}/chat/completions").mock(side_effect=self._answer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.router.__exit__(*exc)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        item = self.script.pop(0)
        if item.status != 200:
            body = {"error": {"message": "scripted failure", "type": "x", "code": None}}
            return httpx.Response(item.status, json=body, headers=item.headers)
        if json.loads(request.content).get("stream"):
            stream = ClosingStream(sse(item), self.streams)
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)
        return httpx.Response(200, json=completion(item))

    def client_kwargs(self) -> dict[str, Any]:
        return {"model": self.spec, "api_key": KEY, "base_url": self.url, "retry": self.retry()}

    def calls(self) -> int:
        return self.route.call_count

    def closed_streams(self) -> int:
        return sum(s.closed for s in self.streams)

    def sent(self, index: int) -> dict[str, Any]:
        return json.loads(self.route.calls[index].request.content)  # type: ignore[no-any-return]


class OpenAIHarness(HTTPHarness):
    name = "openai"
    url = "https://api.openai.com/v1"
    spec = "openai:gpt-4o-mini"


class RestHarness(HTTPHarness):
    name = "rest"
    url = "http://127.0.0.1:8000/v1"
    spec = "rest:my-model"


@pytest.fixture(params=[FakeHarness, OpenAIHarness, RestHarness], ids=lambda c: c.name)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    with request.param() as h:
        yield h


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run(
    mode: str,
    kwargs: dict[str, Any],
    op: str,
    *args: Any,
    stop_after: int | None = None,
    **options: Any,
) -> Any:
    """chat(...) → response; stream(...) → (events, response), in either mode."""
    if mode == "sync":
        with Client(**kwargs) as client:
            if op == "chat":
                return client.chat(*args, **options)
            events = []
            with client.stream(*args, **options) as stream:
                for event in stream:
                    events.append(event)
                    if stop_after and len(events) >= stop_after:
                        break
            return events, stream.response

    async def go() -> Any:
        async with AsyncClient(**kwargs) as client:
            if op == "chat":
                return await client.chat(*args, **options)
            events = []
            async with client.stream(*args, **options) as stream:
                async for event in stream:
                    events.append(event)
                    if stop_after and len(events) >= stop_after:
                        break
            return events, stream.response

    return asyncio.run(go())


def test_plain_chat(harness: Harness, mode: str) -> None:
    harness.script = [Scripted()]
    r = run(mode, harness.client_kwargs(), "chat", "Hi", temperature=0, max_tokens=20)
    assert r.text == TEXT
    assert r.finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == USAGE
    assert not r.usage.estimated
    assert r.backend.split(":")[0] == harness.name
    sent = harness.sent(0)
    assert sent["messages"] == [{"role": "user", "content": "Hi"}]
    assert sent["temperature"] == 0
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 20


def test_stream_equals_chat(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(finish_reason="length"), Scripted(finish_reason="length")]
    kwargs = harness.client_kwargs()
    chat = run(mode, kwargs, "chat", "Hi")
    events, streamed = run(mode, kwargs, "stream", "Hi")
    assert [e.text for e in events if e.type == "text"] == CHUNKS
    assert [e.type for e in events][-2:] == ["usage", "finish"]
    assert streamed.message == chat.message
    assert streamed.usage == chat.usage
    assert streamed.finish_reason == chat.finish_reason == "length"


def test_rate_limit_is_retried_after_the_requested_pause(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(429, {"retry-after": "3"}), Scripted()]
    r = run(mode, harness.client_kwargs(), "chat", "Hi")
    assert r.text == TEXT
    assert harness.calls() == 2
    assert harness.recorder.sleeps == [3.0]


def test_bad_request_is_not_retried(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(400), Scripted()]
    with pytest.raises(BadRequestError) as info:
        run(mode, harness.client_kwargs(), "chat", "Hi")
    assert harness.calls() == 1
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_stream_retried_before_first_event(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(503), Scripted()]
    _, response = run(mode, harness.client_kwargs(), "stream", "Hi")
    assert response.text == TEXT
    assert harness.calls() == 2


def test_leaving_a_stream_early_closes_it(harness: Harness, mode: str) -> None:
    harness.script = [Scripted()]
    events, response = run(mode, harness.client_kwargs(), "stream", "Hi", stop_after=2)
    assert [e.text for e in events] == CHUNKS[:2]
    assert response.text == "".join(CHUNKS[:2])
    assert harness.closed_streams() == 1


# -- structured output and tools, the same on every backend ---------------------------------


class Address(BaseModel):
    city: str
    country: str = "FR"


class Person(BaseModel):
    name: str
    age: int
    address: Address
    tags: list[str] = []


PERSON = Person(name="Ada", age=36, address=Address(city="London", country="UK"), tags=["math"])


def test_nested_model_round_trips(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(content=PERSON.model_dump_json())]
    r = run(mode, harness.client_kwargs(), "chat", "Who?", response_model=Person)
    assert r.parsed == PERSON
    sent = harness.sent(0)
    if "response_format" in sent:  # backends with native JSON-schema support
        schema = sent["response_format"]["json_schema"]["schema"]
        assert schema["$defs"]["Address"]["required"] == ["city"]
    else:  # the others get the format in a system message
        assert (
            sent["messages"][0]["role"] == "system"
            and '"address": {"city"' in sent["messages"][0]["content"]
        )


def test_invalid_output_is_reasked_then_raises(harness: Harness, mode: str) -> None:
    bad = '{"name": "Ada", "age": "old"}'
    harness.script = [Scripted(content=bad), Scripted(content=bad), Scripted(content=bad)]
    with pytest.raises(OutputValidationError) as info:
        run(mode, harness.client_kwargs(), "chat", "Who?", response_model=Person)
    assert info.value.raw_text == bad and info.value.attempts == 3
    assert harness.calls() == 3
    third = harness.sent(2)["messages"]
    assert third[-2] == {"role": "assistant", "content": bad}
    assert "age" in third[-1]["content"] and "address" in third[-1]["content"]


def lookup_city(
    name: str,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    near: Address | None = None,
) -> dict[str, Any]:
    """Look up the weather of a city.

    Args:
        name: the city.
    """
    return {"city": name, "temp": 21, "unit": unit}


CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup_city", "arguments": '{"name": "Paris"}'},
}


def test_function_tool_schema_in_the_outgoing_request(harness: Harness, mode: str) -> None:
    harness.script = [Scripted(content="", tool_calls=[CALL], finish_reason="tool_calls")]
    run(
        mode,
        harness.client_kwargs(),
        "chat",
        "Weather?",
        tools=[lookup_city],
        tool_choice="required",
    )
    sent = harness.sent(0)
    (tool,) = sent["tools"]
    fn = tool["function"]
    assert tool["type"] == "function" and fn["name"] == "lookup_city"
    assert fn["description"] == "Look up the weather of a city."
    params = fn["parameters"]
    assert params["required"] == ["name"]
    assert params["properties"]["name"]["description"] == "the city."
    assert params["properties"]["unit"] == {
        "default": "celsius",
        "enum": ["celsius", "fahrenheit"],
        "type": "string",
    }
    assert params["$defs"]["Address"]["properties"]["city"] == {"title": "City", "type": "string"}
    assert sent["tool_choice"] == "required"


def test_two_turn_tool_loop(harness: Harness, mode: str) -> None:
    harness.script = [
        Scripted(content="", tool_calls=[CALL], finish_reason="tool_calls"),
        Scripted(content="21 degrees in Paris."),
    ]
    kwargs = harness.client_kwargs()
    if mode == "sync":
        with Client(**kwargs) as client:
            r = client.run_tools("Weather in Paris?", [lookup_city])
    else:

        async def go() -> Any:
            async with AsyncClient(**kwargs) as client:
                return await client.run_tools("Weather in Paris?", [lookup_city])

        r = asyncio.run(go())
    assert r.text == "21 degrees in Paris."
    second = harness.sent(1)["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "tool"]
    assert second[1]["tool_calls"] == [CALL]
    assert second[2]["tool_call_id"] == "call_1"
    assert json.loads(second[2]["content"]) == {"city": "Paris", "temp": 21, "unit": "celsius"}


def test_streamed_tool_calls_accumulate(harness: Harness, mode: str) -> None:
    other = {
        "id": "call_2",
        "type": "function",
        "function": {"name": "lookup_city", "arguments": '{"name": "Lyon", "unit": "fahrenheit"}'},
    }
    item = Scripted(content="", tool_calls=[CALL, other], finish_reason="tool_calls")
    harness.script = [item, item]
    kwargs = harness.client_kwargs()
    chat = run(mode, kwargs, "chat", "q", tools=[lookup_city])
    events, streamed = run(mode, kwargs, "stream", "q", tools=[lookup_city])
    assert [e.type for e in events].count("tool_call") == 4
    assert streamed.tool_calls == chat.tool_calls
    assert [c.parsed_arguments for c in streamed.tool_calls] == [
        {"name": "Paris"},
        {"name": "Lyon", "unit": "fahrenheit"},
    ]
    assert streamed.finish_reason == "tool_calls"
