"""``stream_complete()``: a raw completion streamed through the real Client and AsyncClient,
with the same stream objects and semantics as ``stream()``, in sync and async mode alike."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import (
    AsyncClient,
    Client,
    ConfigError,
    Hooks,
    InvalidInputError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeout,
    UnsupportedFeatureError,
    Usage,
)
from llmkit.backends.base import BaseBackend, Capabilities
from llmkit.errors import ConnectionError, TimeoutError
from llmkit.testing import FakeBackend, Reply, SleepRecorder, instant_retry
from llmkit.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    FinishEvent,
    Message,
    StreamEvent,
    TextDelta,
    UsageEvent,
)

USAGE = Usage(prompt_tokens=4, completion_tokens=5)
CONTINUATION = Reply(" upon a time there", chunks=[" upon", " a", " time", " there"], usage=USAGE)


def test_streamed_completion_accumulates_to_what_complete_returns(driver) -> None:
    fake = FakeBackend([CONTINUATION, CONTINUATION])
    whole = driver.complete({"backend": fake}, "Once", max_tokens=5)
    events, streamed = driver.stream_complete(
        {"backend": fake}, "Once", max_tokens=5, temperature=0, stop=["\n"], seed=1, best_of=2
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        " upon",
        " a",
        " time",
        " there",
    ]
    assert isinstance(events[-1], FinishEvent)
    fields = {"message", "finish_reason", "usage", "model", "backend"}
    assert streamed.model_dump(include=fields) == whole.model_dump(include=fields)
    assert streamed.text == " upon a time there" and streamed.usage == USAGE
    request = fake.requests[1]
    assert isinstance(request, CompletionRequest) and request.prompt == "Once"
    assert request.params.max_tokens == 5 and request.params.stop == ["\n"]
    assert (request.params.temperature, request.params.seed) == (0, 1)
    assert request.extra == {"best_of": 2}


class CompletionOnly(BaseBackend):
    """Streams raw completions only; a chat stream would fail the test."""

    name = "completion-only"
    capabilities = Capabilities(completion=True)

    def __init__(self) -> None:
        super().__init__("base-model")
        self.prompts: list[str] = []
        self.closed_streams = 0

    def chat(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("chat() must not be called")

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        raise AssertionError("stream() must not be called for a raw completion")

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        self.prompts.append(request.prompt)
        try:
            yield TextDelta(delta=request.prompt.upper())
            yield TextDelta(delta="!")
            yield UsageEvent(usage=USAGE)
            yield FinishEvent(finish_reason="length")
        finally:
            self.closed_streams += 1


def test_the_stream_objects_call_the_backends_stream_complete(driver) -> None:
    # Async mode drives the sync generator through BaseBackend's thread-based default.
    backend = CompletionOnly()
    events, response = driver.stream_complete({"backend": backend}, "abc")
    assert "".join(e.text for e in events) == "ABC!"
    assert (response.text, response.finish_reason, response.usage) == ("ABC!", "length", USAGE)
    assert response.backend == "completion-only:base-model"
    assert backend.prompts == ["abc"] and backend.closed_streams == 1


def test_leaving_a_completion_stream_early_closes_it(driver) -> None:
    fake = FakeBackend([Reply("one two three four five")])
    events, response = driver.stream_complete({"backend": fake}, "count", stop_after=2)
    assert [e.text for e in events] == ["one ", "two "]
    assert fake.closed_streams == 1
    assert response.text == "one two "
    assert response.usage.estimated  # the stream ended before any usage arrived


def test_retried_before_the_first_event(driver) -> None:
    fake = FakeBackend([RateLimitError("busy"), ServerError("down"), Reply("fine now")])
    _, response = driver.stream_complete({"backend": fake, "retry": instant_retry()}, "p")
    assert response.text == "fine now"
    assert len(fake.requests) == 3
    assert all(isinstance(r, CompletionRequest) for r in fake.requests)


def test_not_retried_after_an_event_reached_the_caller(driver) -> None:
    drop = ConnectionError("connection dropped mid-stream")
    fake = FakeBackend([Reply("a b c d", fail_after=2, error=drop), Reply("second try")])
    seen: list[str] = []

    with pytest.raises(ConnectionError):
        if driver.is_async:

            async def go() -> None:
                async with (
                    AsyncClient(backend=fake, retry=instant_retry()) as c,
                    c.stream_complete("p") as s,
                ):
                    async for e in s:
                        seen.append(e.text)

            asyncio.run(go())
        else:
            with Client(backend=fake, retry=instant_retry()) as c, c.stream_complete("p") as s:
                for e in s:
                    seen.append(e.text)
    assert seen == ["a ", "b "]
    assert len(fake.requests) == 1


def test_falls_back_before_the_first_event(driver) -> None:
    first = FakeBackend([Reply("x", fail_after=0, error=ServerError("down"))], model="a")
    second = FakeBackend(["from b"], model="b")
    fallback: Any = AsyncClient(backend=second) if driver.is_async else Client(backend=second)
    _, response = driver.stream_complete(
        {
            "backend": first,
            "retry": instant_retry(RetryPolicy(max_attempts=1)),
            "fallbacks": [fallback],
        },
        "p",
    )
    assert response.text == "from b" and response.backend == "fake:b"
    assert isinstance(second.requests[0], CompletionRequest)


def test_async_idle_timeout() -> None:
    fake = FakeBackend([Reply("a b c", chunk_delay=5.0)])

    async def go() -> None:
        async with (
            AsyncClient(
                backend=fake,
                timeout=Timeout(idle=0.05, total=10),
                retry=RetryPolicy(max_attempts=1),
            ) as c,
            c.stream_complete("p") as s,
        ):
            async for _ in s:
                pass

    with pytest.raises(TimeoutError, match="idle"):
        asyncio.run(asyncio.wait_for(go(), 5))
    assert fake.closed_streams == 1


def test_async_first_token_timeout() -> None:
    fake = FakeBackend([Reply("late", delay=5.0)])

    async def go() -> None:
        async with (
            AsyncClient(
                backend=fake,
                timeout=Timeout(first_token=0.05, total=10),
                retry=RetryPolicy(max_attempts=1),
            ) as c,
            c.stream_complete("p"),
        ):
            pass

    with pytest.raises(TimeoutError, match="first token"):
        asyncio.run(asyncio.wait_for(go(), 5))


def test_sync_stall_uses_the_backend_budget() -> None:
    rec = SleepRecorder()
    fake = FakeBackend([Reply("a b c", chunk_delay=100.0)], sleep=rec.sleep)
    with (
        Client(backend=fake, timeout=Timeout(idle=2.0), retry=RetryPolicy(max_attempts=1)) as c,
        # The fake raises it itself (a sync client cannot interrupt a backend): what this
        # checks is that the client handed down the idle budget, by phase and by value.
        pytest.raises(TimeoutError, match=r"idle timeout: no new event within 2s"),
        c.stream_complete("p") as s,
    ):
        for _ in s:
            pass
    assert rec.sleeps == [2.0]


def test_total_timeout_bounds_a_slow_stream(driver) -> None:
    fake = FakeBackend([Reply("a b c d e f", chunk_delay=0.2)])
    with pytest.raises(TimeoutError, match="total timeout"):  # the client's, not the fake's
        driver.stream_complete({"backend": fake, "timeout": Timeout(total=0.3)}, "p")


def test_hooks_and_usage_totals(driver) -> None:
    seen: dict[str, list[Any]] = {"request": [], "response": [], "retry": [], "error": []}
    hooks = Hooks(
        on_request=lambda r: seen["request"].append(r),
        on_response=lambda r: seen["response"].append(r.text),
        on_retry=lambda e, n: seen["retry"].append((type(e).__name__, n)),
        on_error=lambda e: seen["error"].append(type(e).__name__),
    )
    fake = FakeBackend([RateLimitError("busy"), CONTINUATION, ServerError("down")])
    kwargs = {"backend": fake, "hooks": hooks, "retry": instant_retry(RetryPolicy(max_attempts=2))}
    if driver.is_async:

        async def go() -> tuple[AsyncClient, str]:
            async with AsyncClient(**kwargs) as c:
                async with c.stream_complete("Once") as s:
                    async for _ in s:
                        pass
                text = s.response.text  # the response (and its hooks) once the stream ended
                with pytest.raises(ServerError):
                    async with c.stream_complete("Once"):
                        pass
                return c, text

        client, text = asyncio.run(go())
    else:
        client = Client(**kwargs)
        with client.stream_complete("Once") as s:
            for _ in s:
                pass
        text = s.response.text
        with pytest.raises(ServerError), client.stream_complete("Once"):
            pass
    assert text == " upon a time there"
    assert len(seen["request"]) == 4
    assert all(isinstance(r, CompletionRequest) for r in seen["request"])
    assert seen["response"] == [" upon a time there"]
    assert seen["retry"] == [("RateLimitError", 1), ("ServerError", 1)]
    assert seen["error"] == ["ServerError"]
    assert client.usage == USAGE
    assert client.usage_by_backend == {"fake:fake-model": USAGE}


class ChatOnly(BaseBackend):
    """A backend without raw completion: BaseBackend's defaults answer for it."""

    name = "chat-only"

    def __init__(self) -> None:
        super().__init__("chat-model")
        self.calls = 0

    def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(message=Message.assistant("hi"))

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.calls += 1
        yield FinishEvent()


class CompletesWhole(ChatOnly):
    """Completes raw prompts, but has no streamed variant."""

    name = "completes-whole"
    capabilities = Capabilities(completion=True)

    def complete(self, request: CompletionRequest) -> ChatResponse:
        self.calls += 1
        return ChatResponse(message=Message.assistant("whole"))


@pytest.mark.parametrize(
    ("backend_cls", "message"),
    [
        (ChatOnly, r"'chat-only' does not support raw completion; use chat\(\)"),
        (CompletesWhole, r"'completes-whole' does not stream raw completions; use complete\(\)"),
    ],
)
def test_a_backend_without_streamed_completion_raises_the_typed_error(
    driver, backend_cls: type[ChatOnly], message: str
) -> None:
    backend = backend_cls()
    with pytest.raises(UnsupportedFeatureError, match=message):
        driver.stream_complete({"backend": backend, "retry": instant_retry()}, "p")
    assert backend.calls == 0  # neither retried nor sent through another method


def test_arguments_are_validated_when_the_stream_is_made(driver) -> None:
    fake = FakeBackend(["x"])
    client: Any = AsyncClient(backend=fake) if driver.is_async else Client(backend=fake)
    with pytest.raises(InvalidInputError, match=r"stream_complete\(\) takes the prompt as a str"):
        client.stream_complete(["not", "a", "prompt"])
    with pytest.raises(InvalidInputError, match="temperature"):
        client.stream_complete("p", temperature=5)
    assert fake.requests == []
    if driver.is_async:
        asyncio.run(client.aclose())
    else:
        client.close()
    with pytest.raises(ConfigError, match="closed"):
        client.stream_complete("p")
