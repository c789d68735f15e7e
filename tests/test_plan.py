"""The call plan on its own: its decisions, with no I/O and no driver.

Each step is what a driver would do: ``prepare()`` before an attempt, ``after(error)`` when
it failed. Nothing is sent; the backends are only targets.
"""

from __future__ import annotations

import asyncio
import warnings

import pytest

import llmkit
from llmkit import (
    AsyncClient,
    BadRequestError,
    CircuitBreaker,
    CircuitOpenError,
    Client,
    ConfigError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from llmkit._client.plan import CallPlan
from llmkit.testing import FakeBackend, instant_retry


def plan_for(client: Client) -> CallPlan:
    return CallPlan(client, client._prepare_chat("q", {}))


def test_retries_then_falls_back_then_gives_up() -> None:
    primary, fallback = FakeBackend(), FakeBackend(model="other")
    retry = instant_retry(RetryPolicy(max_attempts=2, initial_backoff=1.0, jitter=0))
    client = Client(backend=primary, fallbacks=[Client(backend=fallback, retry=retry)], retry=retry)
    plan = plan_for(client)
    assert plan.target.backend is primary
    assert plan.prepare() == 0.0
    assert plan.after(ServerError("down")) == 1.0  # retry the primary after the backoff
    assert plan.target.backend is primary
    plan.prepare()
    assert plan.after(ServerError("down")) == 0.0  # attempts spent: the fallback, at once
    assert plan.target.backend is fallback
    plan.prepare()
    assert plan.after(BadRequestError("bad")) is None  # not retryable, no fallback left
    assert plan.call.attempts == 3


def test_retry_after_is_the_wait() -> None:
    client = Client(backend=FakeBackend(), retry=instant_retry(RetryPolicy(max_retry_after=5)))
    plan = plan_for(client)
    plan.prepare()
    assert plan.after(RateLimitError("slow down", retry_after=3)) == 3.0
    plan.prepare()
    assert plan.after(RateLimitError("slow down", retry_after=30)) == 5.0


def test_no_wait_past_the_deadline() -> None:
    retry = RetryPolicy(max_attempts=5, initial_backoff=10.0, jitter=0)
    client = Client(backend=FakeBackend(), retry=retry, timeout=1.0)
    plan = plan_for(client)
    plan.prepare()
    assert plan.after(ServerError("down")) is None  # a 10 s sleep would end past the 1 s total


def test_an_open_circuit_is_a_circuit_open_error_and_falls_back_without_retry() -> None:
    primary, fallback = FakeBackend(), FakeBackend(model="other")
    breaker = CircuitBreaker(failure_threshold=1, cooldown=60)
    client = Client(
        backend=primary,
        fallbacks=[Client(backend=fallback)],
        circuit_breaker=breaker,
        retry=instant_retry(),
    )
    client._targets[0].record(ServerError("down"))  # the primary's circuit opens
    plan = plan_for(client)
    with pytest.raises(CircuitOpenError) as caught:
        plan.prepare()
    error = caught.value
    assert isinstance(error, ServerError) and error.retryable  # old `except` clauses hold
    assert "circuit open" in str(error)
    assert plan.after(error) == 0.0 and plan.target.backend is fallback


def test_circuit_open_error_is_public() -> None:
    assert llmkit.CircuitOpenError is llmkit.errors.CircuitOpenError
    assert issubclass(CircuitOpenError, ServerError)
    assert not RetryPolicy.is_retryable(CircuitOpenError("open"))


def test_an_open_circuit_without_fallback_fails_fast_with_circuit_open_error(driver) -> None:
    fake = FakeBackend([ServerError("down"), "never"])
    kwargs = {
        "backend": fake,
        "circuit_breaker": CircuitBreaker(failure_threshold=1, cooldown=60),
        "retry": instant_retry(),
    }
    # The first attempt fails and opens the circuit; the retry finds it open and stops.
    with pytest.raises(CircuitOpenError):
        driver.chat(kwargs, "q")
    assert len(fake.requests) == 1  # the open circuit sent nothing, and retried nothing


# -- AsyncClient.close() -------------------------------------------------------------------


def test_async_close_awaited_closes_without_a_warning() -> None:
    async def go() -> AsyncClient:
        client = AsyncClient("fake:m")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await client.close()
        return client

    client = asyncio.run(go())
    assert client.backend.closed  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="closed"):
        asyncio.run(client.chat("q"))


def test_async_close_is_a_coroutine_for_asyncio_run_and_tasks() -> None:
    client = AsyncClient("fake:m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        asyncio.run(client.close())
    assert client.backend.closed  # type: ignore[attr-defined]

    async def go() -> AsyncClient:
        other = AsyncClient("fake:m")
        await asyncio.create_task(other.close())
        return other

    assert asyncio.run(go()).backend.closed  # type: ignore[attr-defined]


def test_async_close_not_awaited_still_closes_and_warns() -> None:
    client = AsyncClient("fake:m")
    with pytest.warns(RuntimeWarning, match="not awaited"):
        client.close()  # the missing `await` under test
    assert client.backend.closed  # type: ignore[attr-defined]


def test_async_close_not_awaited_in_a_running_loop_closes_on_the_loop() -> None:
    async def go() -> AsyncClient:
        client = AsyncClient("fake:m")
        with pytest.warns(RuntimeWarning, match="not awaited"):
            client.close()
        await asyncio.sleep(0.01)
        return client

    client = asyncio.run(go())
    assert client.backend.closed  # type: ignore[attr-defined]
