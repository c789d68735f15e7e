"""The AsyncClient's request slots (llmkit/_slots.py): FIFO hand-over, per-waiter deadlines on
one timer, cancellation at every point, and the typed error a queued call gets."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmkit import AsyncClient, errors
from llmkit._slots import AsyncSlots
from llmkit.testing import FakeBackend, Reply


async def test_free_slots_are_taken_without_waiting() -> None:
    slots = AsyncSlots(2)
    assert slots.acquire(time.monotonic() + 1) is None
    assert slots.acquire(time.monotonic() + 1) is None
    assert (slots.free, slots.waiting) == (0, 0)
    waiter = slots.acquire(time.monotonic() + 1)
    assert waiter is not None and not waiter.done()
    assert slots.waiting == 1
    slots.release()  # handed straight to the waiter, never through the free pool
    assert waiter.result() is True
    assert (slots.free, slots.waiting) == (0, 0)
    slots.release()
    slots.release()
    assert slots.free == 2


async def test_waiters_get_slots_first_in_first_out() -> None:
    slots = AsyncSlots(1)
    assert slots.acquire(time.monotonic() + 5) is None
    order: list[int] = []

    async def wait(i: int) -> None:
        waiter = slots.acquire(time.monotonic() + 5)
        assert waiter is not None
        assert await waiter
        order.append(i)
        await asyncio.sleep(0)
        slots.release()

    tasks = [asyncio.ensure_future(wait(i)) for i in range(5)]
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert (slots.free, slots.waiting) == (1, 0)


async def test_each_waiter_times_out_at_its_own_deadline() -> None:
    slots = AsyncSlots(1)
    assert slots.acquire(time.monotonic() + 60) is None
    now = time.monotonic()
    # A long deadline queued first, then a shorter one: the one timer re-arms for the earlier.
    late = slots.acquire(now + 0.30)
    early = slots.acquire(now + 0.05)
    never = slots.acquire(now + 60)
    assert late is not None and early is not None and never is not None
    assert await early is False
    assert time.monotonic() - now < 0.25
    assert not late.done()
    assert await late is False
    assert time.monotonic() - now >= 0.29
    assert not never.done()
    slots.release()  # the expired waiters are skipped; the live one gets the slot
    assert never.result() is True
    assert (slots.free, slots.waiting) == (0, 0)


async def test_a_deadline_already_past_fails_at_once() -> None:
    slots = AsyncSlots(1)
    assert slots.acquire(time.monotonic() + 60) is None
    waiter = slots.acquire(time.monotonic() - 1)
    assert waiter is not None and waiter.result() is False
    assert slots.waiting == 0


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    slots = AsyncSlots(1)
    assert slots.acquire(time.monotonic() + 60) is None
    gone = slots.acquire(time.monotonic() + 60)
    after = slots.acquire(time.monotonic() + 60)
    assert gone is not None and after is not None
    slots.abandon(gone)
    assert slots.waiting == 1
    slots.release()
    assert after.result() is True
    slots.release()
    assert (slots.free, slots.waiting) == (1, 0)


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    slots = AsyncSlots(1)
    assert slots.acquire(time.monotonic() + 60) is None
    first = slots.acquire(time.monotonic() + 60)
    second = slots.acquire(time.monotonic() + 60)
    assert first is not None and second is not None
    slots.release()  # first now owns the slot, but its task is cancelled before it resumes
    assert first.result() is True
    slots.abandon(first)
    assert second.result() is True
    slots.release()
    assert (slots.free, slots.waiting) == (1, 0)


def _slow_client(concurrency: int) -> AsyncClient:
    backend = FakeBackend([Reply(text=t, delay=0.3) for t in "abcd"])
    return AsyncClient(backend=backend, max_concurrency=concurrency)


async def test_a_call_queued_past_its_deadline_gets_a_typed_timeout() -> None:
    async with _slow_client(1) as client:
        busy = asyncio.ensure_future(client.chat("first"))
        await asyncio.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(errors.TimeoutError, match="waiting for a free request slot") as info:
            await client.chat("second", timeout=0.1)
        assert time.monotonic() - started < 0.25
        assert info.value.backend == "fake"
        assert (await busy).text == "a"
        slots = client._async_slots()
        assert (slots.free, slots.waiting) == (1, 0)


async def test_cancelling_queued_calls_leaks_no_slot() -> None:
    async with _slow_client(2) as client:
        tasks = [asyncio.ensure_future(client.chat(f"q{i}")) for i in range(6)]
        await asyncio.sleep(0.05)
        slots = client._async_slots()
        assert (slots.free, slots.waiting) == (0, 4)
        for task in tasks[2:]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [r.text for r in results[:2]] == ["a", "b"]  # type: ignore[union-attr]
        assert all(isinstance(r, asyncio.CancelledError) for r in results[2:])
        assert (slots.free, slots.waiting) == (2, 0)
        assert (await client.chat("again")).text == "c"
