"""Client behaviour over the scripted backend, in sync and async mode alike."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pydantic import BaseModel

from llmkit import (
    AsyncClient,
    Client,
    ConfigError,
    InvalidInputError,
    Message,
    OutputValidationError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeout,
    UnsupportedFeatureError,
    Usage,
)
from llmkit.backends.base import Capabilities
from llmkit.errors import ConnectionError, TimeoutError
from llmkit.testing import FakeBackend, Reply, SleepRecorder, instant_retry


def test_plain_chat(driver) -> None:
    fake = FakeBackend([Reply("Paris.", usage=Usage(prompt_tokens=9, completion_tokens=2))])
    response = driver.chat({"backend": fake}, "What is the capital of France?")
    assert response.text == "Paris."
    assert response.finish_reason == "stop"
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=2, total_tokens=11)
    assert response.backend == "fake:fake-model"
    assert response.message == Message(role="assistant", content="Paris.")
    assert fake.requests[0].messages == [
        Message(role="user", content="What is the capital of France?")
    ]


def test_usage_is_estimated_when_backend_reports_none(driver) -> None:
    response = driver.chat({"backend": FakeBackend(["a reply of some length"])}, "question text")
    assert response.usage.estimated
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0


def test_per_call_options_override_client_defaults(driver) -> None:
    fake = FakeBackend(["ok"])
    driver.chat(
        {"backend": fake, "temperature": 0.2, "max_tokens": 50, "system": "Be brief."},
        "hi",
        temperature=0.9,
        vendor_flag=True,
    )
    request = fake.requests[0]
    assert request.params.temperature == 0.9
    assert request.params.max_tokens == 50
    assert request.params.model_fields_set == {"temperature", "max_tokens"}
    assert request.extra == {"vendor_flag": True}
    assert request.messages[0] == Message(role="system", content="Be brief.")


def test_absent_options_are_not_sent(driver) -> None:
    fake = FakeBackend(["ok"])
    driver.chat({"backend": fake}, "hi")
    assert fake.requests[0].params.given() == {}


def test_invalid_options_fail_before_the_backend_is_called(driver) -> None:
    fake = FakeBackend(["ok"])
    with pytest.raises(InvalidInputError, match="temperature"):
        driver.chat({"backend": fake}, "hi", temperature=7)
    with pytest.raises(InvalidInputError, match="position 1"):
        driver.chat({"backend": fake}, ["hi", 12])
    assert fake.requests == []


def test_fallbacks_in_order_and_backend_recorded(driver) -> None:
    first = FakeBackend([ServerError("down", status_code=503)], model="primary")
    second = FakeBackend([RateLimitError("busy")], model="secondary")
    third = FakeBackend(["from third"], model="tertiary")
    kwargs = {
        "backend": first,
        "retry": instant_retry(RetryPolicy(max_attempts=2)),
        "fallbacks": [
            Client(backend=second, retry=instant_retry(RetryPolicy(max_attempts=1))),
            Client(backend=third),
        ],
    }
    response = driver.chat(kwargs, "hi")
    assert response.text == "from third"
    assert response.backend == "fake:tertiary"
    assert (len(first.requests), len(second.requests), len(third.requests)) == (2, 1, 1)


def test_no_fallback_on_non_retryable_error(driver) -> None:
    from llmkit import BadRequestError

    first = FakeBackend([BadRequestError("bad request")])
    second = FakeBackend(["never"])
    with pytest.raises(BadRequestError):
        driver.chat({"backend": first, "fallbacks": [Client(backend=second)]}, "hi")
    assert second.requests == []


def test_fallback_specs_build_backends() -> None:
    client = Client("fake:one", fallbacks=["fake:two"])
    assert repr(client) == "Client('fake:one', fallbacks=['fake:two'])"
    assert client.chat("echo me").text == "echo me"


def test_stream_accumulates_to_the_same_response_as_chat(driver) -> None:
    reply = Reply(
        "The answer is 42.",
        tool_calls=[
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "calc", "arguments": '{"x": 6, "y": 7}'},
            }
        ],
        usage=Usage(prompt_tokens=5, completion_tokens=9),
        finish_reason="tool_calls",
    )
    fake = FakeBackend([reply, reply])
    chat = driver.chat({"backend": fake}, "q")
    events, streamed = driver.stream({"backend": fake}, "q")
    assert "".join(e.text for e in events) == "The answer is 42."
    assert streamed.message == chat.message
    assert streamed.usage == chat.usage
    assert streamed.finish_reason == chat.finish_reason == "tool_calls"
    assert streamed.tool_calls[0].parsed_arguments == {"x": 6, "y": 7}
    assert events[-1].type == "finish"


def test_leaving_a_stream_early_closes_it(driver) -> None:
    fake = FakeBackend([Reply("one two three four five six")])
    events, response = driver.stream({"backend": fake}, "q", stop_after=2)
    assert [e.text for e in events] == ["one ", "two "]
    assert fake.closed_streams == 1
    assert response.text == "one two "


def test_stream_is_retried_before_the_first_event(driver) -> None:
    fake = FakeBackend([RateLimitError("busy"), Reply("fine now")])
    _events, response = driver.stream({"backend": fake, "retry": instant_retry()}, "q")
    assert response.text == "fine now"
    assert len(fake.requests) == 2


def test_stream_is_not_retried_after_an_event_reached_the_caller(driver) -> None:
    drop = ConnectionError("connection dropped mid-stream")
    fake = FakeBackend([Reply("a b c d", fail_after=2, error=drop), Reply("second try")])
    seen = []

    with pytest.raises(ConnectionError):
        if driver.is_async:

            async def go() -> None:
                async with (
                    AsyncClient(backend=fake, retry=instant_retry()) as c,
                    c.stream("q") as s,
                ):
                    async for e in s:
                        seen.append(e.text)

            asyncio.run(go())
        else:
            with Client(backend=fake, retry=instant_retry()) as c, c.stream("q") as s:
                for e in s:
                    seen.append(e.text)
    assert seen == ["a ", "b "]
    assert len(fake.requests) == 1


def test_stream_fails_over_before_first_event(driver) -> None:
    first = FakeBackend([Reply("x", fail_after=0, error=ServerError("down"))], model="a")
    second = FakeBackend(["from b"], model="b")
    _, response = driver.stream(
        {
            "backend": first,
            "retry": instant_retry(RetryPolicy(max_attempts=1)),
            "fallbacks": [Client(backend=second)],
        },
        "q",
    )
    assert response.text == "from b" and response.backend == "fake:b"


def test_async_stream_stall_fails_with_idle_timeout() -> None:
    fake = FakeBackend([Reply("a b c", chunk_delay=5.0)])

    async def go() -> None:
        async with (
            AsyncClient(
                backend=fake,
                timeout=Timeout(idle=0.05, total=10),
                retry=RetryPolicy(max_attempts=1),
            ) as c,
            c.stream("q") as s,
        ):
            async for _ in s:
                pass

    with pytest.raises(TimeoutError, match="idle"):
        asyncio.run(asyncio.wait_for(go(), 5))
    assert fake.closed_streams == 1


def test_async_first_token_timeout_is_enforced() -> None:
    fake = FakeBackend([Reply("late", delay=5.0)])

    async def go() -> None:
        async with AsyncClient(backend=fake, timeout=0.05, retry=RetryPolicy(max_attempts=1)) as c:
            await c.chat("q")

    with pytest.raises(TimeoutError):
        asyncio.run(asyncio.wait_for(go(), 5))


def test_sync_stall_uses_the_backend_budget() -> None:
    rec = SleepRecorder()
    fake = FakeBackend([Reply("a b c", chunk_delay=100.0)], sleep=rec.sleep)
    with (
        Client(backend=fake, timeout=Timeout(idle=2.0), retry=RetryPolicy(max_attempts=1)) as c,
        pytest.raises(TimeoutError),
        c.stream("q") as s,
    ):
        for _ in s:
            pass
    assert rec.sleeps == [2.0]


def test_total_timeout_bounds_retries(driver) -> None:
    fake = FakeBackend([ServerError("down")])
    retry = RetryPolicy(max_attempts=50, initial_backoff=0.02, max_backoff=0.02, jitter=0)
    with pytest.raises((ServerError, TimeoutError)):
        driver.chat({"backend": fake, "retry": retry, "timeout": Timeout(total=0.1)}, "q")
    assert 2 <= len(fake.requests) < 50


def test_complete(driver) -> None:
    fake = FakeBackend(["continuation"])
    response = driver.complete({"backend": fake}, "Once upon a time", max_tokens=5)
    assert response.text == "continuation"
    assert fake.requests[0].prompt == "Once upon a time"
    with pytest.raises(InvalidInputError):
        driver.complete({"backend": fake}, ["not", "a", "str"])


def test_tools_rejected_by_a_backend_without_tools(driver) -> None:
    fake = FakeBackend(["x"], capabilities=Capabilities(tools=False))
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(UnsupportedFeatureError, match="cannot call tools"):
        driver.chat({"backend": fake}, "q", tools=[tool])
    assert fake.requests == []


class City(BaseModel):
    name: str
    country: str


def test_response_model_parses_and_reasks(driver) -> None:
    fake = FakeBackend(
        ['Sure! {"name": "Paris"}', '```json\n{"name": "Paris", "country": "France"}\n```']
    )
    response = driver.chat({"backend": fake}, "Capital of France?", response_model=City)
    assert response.parsed == City(name="Paris", country="France")
    assert len(fake.requests) == 2
    second = fake.requests[1].messages
    assert second[-2].role == "assistant" and "country" in second[-1].text
    # a backend without native schemas gets a format template in a system message
    assert second[0].text.endswith('{"name": <string>, "country": <string>}')


def test_response_model_gives_up_with_output_validation_error(driver) -> None:
    fake = FakeBackend(["not json at all"])
    with pytest.raises(OutputValidationError) as info:
        driver.chat({"backend": fake}, "q", response_model=City)
    assert info.value.raw_text == "not json at all"
    assert info.value.attempts == 3
    assert len(fake.requests) == 3


def test_native_structured_output_sends_a_schema(driver) -> None:
    fake = FakeBackend(
        ['{"name": "Rome", "country": "Italy"}'], capabilities=Capabilities(structured_output=True)
    )
    response = driver.chat({"backend": fake}, "q", response_model=City)
    assert response.parsed == City(name="Rome", country="Italy")
    fmt = fake.requests[0].params.response_format
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["required"] == [
        "name",
        "country",
    ]


def test_closed_client_refuses_calls() -> None:
    client = Client(backend=FakeBackend(["x"]))
    client.close()
    with pytest.raises(ConfigError, match="closed"):
        client.chat("q")


def test_client_closes_only_backends_it_built() -> None:
    mine = FakeBackend(["x"])
    with Client(backend=mine):
        pass
    assert not mine.closed
    with Client("fake:echo") as built:
        backend = built.backend
    assert backend.closed  # type: ignore[attr-defined]


def test_model_and_backend_together_is_an_error() -> None:
    with pytest.raises(ConfigError, match="either"):
        Client("fake:x", backend=FakeBackend())


def test_call_is_logged_without_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmkit")
    Client(
        backend=FakeBackend(
            [Reply("secret answer", usage=Usage(prompt_tokens=3, completion_tokens=2))]
        )
    ).chat("private question")
    record = next(r for r in caplog.records if r.name == "llmkit")
    text = record.getMessage()
    assert "backend=fake:fake-model" in text and "prompt_tokens=3" in text and "attempts=1" in text
    assert "secret answer" not in text and "private question" not in text


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_is_finished_when_it_ends(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    """Iterated to its end, a stream is logged, counted and reported once, like chat() --
    whether or not ``.response`` is read (the server reads it; many callers never do)."""
    caplog.set_level(logging.INFO, logger="llmkit")
    seen: list[str] = []
    from llmkit import Hooks

    usage = Usage(prompt_tokens=4, completion_tokens=2)
    kwargs: dict[str, Any] = {
        "backend": FakeBackend([Reply("one two", usage=usage)]),
        "hooks": Hooks(on_response=lambda r: seen.append(r.text)),
    }

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "llmkit"]

    if mode == "sync":
        client = Client(**kwargs)
        with client.stream("q") as stream:
            for _ in stream:
                pass
            logged, total = lines(), client.usage.total_tokens
        response = stream.response
    else:

        async def go() -> tuple[list[str], int, Any, Any]:
            async with AsyncClient(**kwargs) as aclient, aclient.stream("q") as astream:
                async for _ in astream:
                    pass
                return lines(), aclient.usage.total_tokens, astream.response, aclient

        logged, total, response, client = asyncio.run(go())
    assert len(logged) == 1 and f"id={response.id}" in logged[0] and "request_id=None" in logged[0]
    assert total == 6 and seen == ["one two"]
    assert response.request_id is None  # the fake sends none
    assert lines() == logged and seen == ["one two"] and client.usage.total_tokens == 6


def test_a_stream_left_early_is_finished_when_its_response_is_read(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmkit")
    client = Client(backend=FakeBackend([Reply("one two three")]))
    with client.stream("q") as stream:
        next(iter(stream))
    assert not [r for r in caplog.records if r.name == "llmkit"]
    assert stream.response.text == "one "
    assert stream.response.text == "one "
    assert len([r for r in caplog.records if r.name == "llmkit"]) == 1


def test_a_streamed_reply_failing_validation_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Answer(BaseModel):
        value: int

    caplog.set_level(logging.INFO, logger="llmkit")
    client = Client(backend=FakeBackend(["not json"]))
    with client.stream("q", response_model=Answer) as stream:
        for _ in stream:
            pass
    total = client.usage.total_tokens
    for _ in range(2):
        with pytest.raises(OutputValidationError):
            _ = stream.response
    assert len([r for r in caplog.records if r.name == "llmkit"]) == 1
    assert total > 0 and client.usage.total_tokens == total  # counted once


def test_sync_client_creates_no_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sync client must not start an event loop")

    monkeypatch.setattr(asyncio, "new_event_loop", forbidden)
    monkeypatch.setattr(asyncio, "run", forbidden)
    with Client(backend=FakeBackend(["x y"])) as client:
        assert client.chat("q").text == "x y"
        with client.stream("q") as s:
            assert "".join(e.text for e in s) == "x y"
        assert client.complete("q").text == "x y"


def test_batch_preserves_order_and_collects_errors(driver) -> None:
    from llmkit import BadRequestError

    def answer(request):
        text = request.messages[-1].text
        if text == "bad":
            raise BadRequestError("bad item")
        return Reply(text.upper())

    fake = FakeBackend([answer])
    inputs = ["a", "b", "bad", "c", "d"]
    if driver.is_async:
        results = asyncio.run(
            AsyncClient(backend=fake).batch(inputs, concurrency=3, return_exceptions=True)
        )
    else:
        results = Client(backend=fake).batch(inputs, concurrency=3, return_exceptions=True)
    assert [r.text if not isinstance(r, Exception) else "ERR" for r in results] == [
        "A",
        "B",
        "ERR",
        "C",
        "D",
    ]
    assert isinstance(results[2], BadRequestError)
    with pytest.raises(BadRequestError):
        if driver.is_async:
            asyncio.run(AsyncClient(backend=fake).batch(inputs, concurrency=2))
        else:
            Client(backend=fake).batch(inputs, concurrency=2)


def test_async_backend_sees_at_most_max_concurrency_requests() -> None:
    state = {"now": 0, "peak": 0}

    class Counting(FakeBackend):
        async def achat(self, request):
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
            try:
                await asyncio.sleep(0.01)
                return await super().achat(request)
            finally:
                state["now"] -= 1

    async def go() -> None:
        async with AsyncClient(backend=Counting(["ok"]), max_concurrency=3) as c:
            await c.batch([str(i) for i in range(20)], concurrency=20)

    asyncio.run(go())
    assert state["peak"] == 3


def test_backend_sees_at_most_max_concurrency_requests() -> None:
    import threading
    import time as _time

    lock = threading.Lock()
    state = {"now": 0, "peak": 0}

    def answer(request):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        _time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return Reply("ok")

    client = Client(backend=FakeBackend([answer]), max_concurrency=2)
    client.batch([str(i) for i in range(10)], concurrency=10)
    assert state["peak"] == 2


def test_hooks_usage_totals_and_cost(driver) -> None:
    seen: dict[str, list] = {"request": [], "response": [], "retry": [], "error": []}
    from llmkit import Hooks

    hooks = Hooks(
        on_request=lambda r: seen["request"].append(r),
        on_response=lambda r: seen["response"].append(r.text),
        on_retry=lambda e, n: seen["retry"].append((type(e).__name__, n)),
        on_error=lambda e: seen["error"].append(type(e).__name__),
    )
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    fake = FakeBackend([RateLimitError("busy"), Reply("ok", usage=usage), ServerError("down")])
    kwargs = {"backend": fake, "hooks": hooks, "retry": instant_retry(RetryPolicy(max_attempts=2))}
    if driver.is_async:

        async def go():
            async with AsyncClient(**kwargs) as c:
                await c.chat("q")
                with pytest.raises(ServerError):
                    await c.chat("q")
                return c

        client = asyncio.run(go())
    else:
        client = Client(**kwargs)
        client.chat("q")
        with pytest.raises(ServerError):
            client.chat("q")
    assert len(seen["request"]) == 4
    assert seen["response"] == ["ok"]
    assert seen["retry"] == [("RateLimitError", 1), ("ServerError", 1)]
    assert seen["error"] == ["ServerError"]
    assert client.usage == Usage(prompt_tokens=1000, completion_tokens=500)
    assert client.cost({"fake-model": (2.0, 10.0)}) == pytest.approx(0.002 + 0.005)
    with pytest.raises(ConfigError, match="no price"):
        client.cost({})


def test_batch_uses_a_native_backend_batch(driver) -> None:
    class Batching(FakeBackend):
        batches: list[int] = []

        def batch(self, requests):
            self.batches.append(len(requests))
            return [
                Reply(r.messages[-1].text[::-1]).response(self.model, self.spec) for r in requests
            ]

        async def abatch(self, requests):
            return self.batch(requests)

    backend = Batching()
    if driver.is_async:
        results = asyncio.run(
            AsyncClient(backend=backend).batch(["abc", "xyz"], temperature=0, system="S")
        )
    else:
        results = Client(backend=backend).batch(["abc", "xyz"], temperature=0, system="S")
    assert [r.text for r in results] == ["cba", "zyx"]
    assert backend.batches == [2]
    assert all(r.backend == "fake:fake-model" and r.usage.completion_tokens > 0 for r in results)


def test_circuit_breaker_opens_falls_back_and_probes(driver) -> None:
    from llmkit import CircuitBreaker

    clock = SleepRecorder()
    health = {"up": False}

    def primary_answer(request):
        if not health["up"]:
            raise ServerError("down", status_code=503)
        return Reply("primary back")

    primary = FakeBackend([primary_answer], model="primary")
    backup = FakeBackend(["from backup"], model="backup")
    kwargs = {
        "backend": primary,
        "retry": instant_retry(RetryPolicy(max_attempts=2)),
        "fallbacks": [Client(backend=backup)],
        "circuit_breaker": CircuitBreaker(failure_threshold=2, cooldown=10, clock=clock.clock),
    }
    client_cls = AsyncClient if driver.is_async else Client
    client = client_cls(**kwargs)

    def call() -> Any:
        return asyncio.run(client.chat("q")) if driver.is_async else client.chat("q")

    assert call().backend == "fake:backup"  # two failures open the circuit
    assert len(primary.requests) == 2
    assert client._targets[0].breaker.state == "open"
    assert call().backend == "fake:backup"  # open: the primary is not even tried
    assert len(primary.requests) == 2
    clock.now += 10  # cool-down over: one probe goes through, and fails
    assert call().backend == "fake:backup"
    assert len(primary.requests) == 3 and client._targets[0].breaker.state == "open"
    clock.now += 10
    health["up"] = True
    assert call().text == "primary back"  # the probe succeeds and closes the circuit
    assert client._targets[0].breaker.state == "closed"


def test_non_retryable_errors_do_not_trip_the_breaker() -> None:
    from llmkit import BadRequestError, CircuitBreaker

    fake = FakeBackend([BadRequestError("bad")])
    client = Client(backend=fake, circuit_breaker=CircuitBreaker(failure_threshold=1))
    for _ in range(3):
        with pytest.raises(BadRequestError):
            client.chat("q")
    assert client._targets[0].breaker.state == "closed" and len(fake.requests) == 3


def test_rate_limit_requests_per_minute(driver) -> None:
    from llmkit import RateLimit

    clock = SleepRecorder()
    limit = RateLimit(
        requests_per_minute=3, clock=clock.clock, sleep=clock.sleep, async_sleep=clock.async_sleep
    )
    fake = FakeBackend(["ok"])
    client_cls = AsyncClient if driver.is_async else Client
    client = client_cls(backend=fake, rate_limit=limit)
    for _ in range(5):
        asyncio.run(client.chat("q")) if driver.is_async else client.chat("q")
    # three at once, then one every 20 s (3 per minute); the waits are reserved in order
    assert clock.sleeps == [pytest.approx(20.0), pytest.approx(20.0)]
    assert len(fake.requests) == 5


def test_rate_limit_tokens_per_minute_counts_prompt_and_completion() -> None:
    from llmkit import RateLimit

    clock = SleepRecorder()
    limit = RateLimit(tokens_per_minute=120, clock=clock.clock, sleep=clock.sleep)
    reply = Reply("x", usage=Usage(prompt_tokens=10, completion_tokens=50))
    client = Client(backend=FakeBackend([reply]), rate_limit=limit)
    prompt = "p" * 40  # ~10 tokens by estimate
    client.chat(prompt)  # 10 reserved before sending, 50 charged after: 60 of 120 left
    client.chat(prompt)  # the same again: 0 left, and no wait so far
    assert clock.sleeps == []
    client.chat(prompt)  # 10 short: 5 s at the refill rate of 2 tokens a second
    assert clock.sleeps == [pytest.approx(5.0)]


def test_rate_limit_counts_an_embedding_batch_once() -> None:
    """An embedding batch's tokens are its prompt, reserved before sending: the reply's usage
    is not charged on top (that counted every embedded text twice)."""
    from llmkit import RateLimit

    clock = SleepRecorder()
    limit = RateLimit(tokens_per_minute=120, clock=clock.clock, sleep=clock.sleep)
    client = Client(backend=FakeBackend(), rate_limit=limit)
    text = "p" * 160  # ~40 tokens by estimate
    for _ in range(3):
        client.embed([text])  # 40 reserved each time: 120 of 120, no wait
    assert clock.sleeps == []
    client.embed([text])  # 40 short: 20 s at the refill rate of 2 tokens a second
    assert clock.sleeps == [pytest.approx(20.0)]


def test_rate_limit_past_the_deadline_fails_fast() -> None:
    from llmkit import RateLimit

    clock = SleepRecorder()
    limit = RateLimit(requests_per_minute=1, clock=clock.clock, sleep=clock.sleep)
    client = Client(backend=FakeBackend(["ok"]), rate_limit=limit, timeout=5)
    client.chat("q")
    with pytest.raises(RateLimitError, match="client-side rate limit"):
        client.chat("q")
    assert clock.sleeps == []
