"""How the total timeout ends a run of retries, one deterministic case per outcome
(issue 15, item 3).

``tests/test_client.py::test_total_timeout_bounds_retries`` accepts either ``ServerError`` or
``TimeoutError``: which one comes depends on where a loaded machine's clock lands (the
policy declining a backoff that would pass the deadline gives the provider's error; the
deadline passing during an attempt gives a timeout). Each outcome is pinned here with
budgets that leave no such race: a backoff far longer than the total, and a backend that
stalls past it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmkit import AsyncClient, RetryPolicy, ServerError, Timeout, TimeoutError
from llmkit.testing import FakeBackend, Reply


def _policy(sleeps: list[float], backoff: float) -> RetryPolicy:
    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    policy = RetryPolicy(max_attempts=50, initial_backoff=backoff, max_backoff=backoff, jitter=0)
    return policy.with_clock(sleep=sleeps.append, async_sleep=async_sleep)


def test_a_backoff_past_the_deadline_is_not_slept(driver: Any) -> None:
    # 30 s of backoff against a 5 s total: the policy stops at once, and the caller gets
    # what the provider said, not a timeout.
    sleeps: list[float] = []
    fake = FakeBackend([ServerError("down")])
    kwargs = {"backend": fake, "retry": _policy(sleeps, 30.0), "timeout": Timeout(total=5)}
    with pytest.raises(ServerError, match="down"):
        driver.chat(kwargs, "q")
    assert len(fake.requests) == 1 and sleeps == []


def test_a_stall_past_the_deadline_is_a_total_timeout() -> None:
    # The first attempt stalls past the 0.3 s total (not the 10 s first-token budget). Async
    # only: the async client's timer ends it; a sync client relies on the backend honouring
    # the budget (the real HTTP backends do, see tests/chaos; the fake does not).
    sleeps: list[float] = []
    fake = FakeBackend([Reply("late", delay=10.0)])
    timeout = Timeout(connect=10, first_token=10, idle=10, total=0.3)

    async def go() -> None:
        async with AsyncClient(backend=fake, retry=_policy(sleeps, 0.01), timeout=timeout) as c:
            await c.chat("q")

    with pytest.raises(TimeoutError, match="total timeout"):
        asyncio.run(asyncio.wait_for(go(), 5))
    assert len(fake.requests) == 1  # a timeout on the total is not retried
