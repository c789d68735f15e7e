"""The AsyncClient's request slots (llmkit/_slots.py): FIFO hand-over, per-waiter deadlines on
one timer, cancellation at every point, and the typed error a queued call gets."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmkit import AsyncClient, errors
from llmkit._slots import AsyncSlots
from llmkit.backends.base import Capabilities
from llmkit.client import Hooks
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


class JumpLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock the test moves forward (``skip``): a timer due by the moved
    clock fires on the loop's next turn, so deadlines are tested without real waiting and
    without a wall-clock bound that a loaded machine could miss."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped = 0.0

    def time(self) -> float:
        return super().time() + self.skipped

    async def skip(self, seconds: float) -> None:
        self.skipped += seconds
        for _ in range(5):  # turns enough for every timer now due to have fired
            await asyncio.sleep(0)


# Real seconds a future may take to resolve once its deadline has come on the jumped clock
# (it takes one loop turn). Only a timer armed for the wrong deadline, 30 s or more away,
# would wait that long; the guard turns such a bug into a failure instead of a hang.
HANG_GUARD = 10.0


def test_each_waiter_times_out_at_its_own_deadline() -> None:
    async def main(loop: JumpLoop) -> None:
        slots = AsyncSlots(1, clock=loop.time)
        now = loop.time()
        assert slots.acquire(now + 600) is None
        # A long deadline queued first, then a shorter one: the one timer re-arms for the
        # earlier.
        late = slots.acquire(now + 60)
        early = slots.acquire(now + 30)
        never = slots.acquire(now + 600)
        assert late is not None and early is not None and never is not None
        await loop.skip(29.9)
        assert not early.done()  # not before its deadline
        await loop.skip(0.1)
        assert await asyncio.wait_for(early, HANG_GUARD) is False
        assert not late.done()
        await loop.skip(29.9)
        assert not late.done()
        await loop.skip(0.1)
        assert await asyncio.wait_for(late, HANG_GUARD) is False
        assert not never.done()
        slots.release()  # the expired waiters are skipped; the live one gets the slot
        assert never.result() is True
        assert (slots.free, slots.waiting) == (0, 0)

    loop = JumpLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


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
    backend = FakeBackend([Reply(text=t, delay=1.0) for t in "abcd"])
    return AsyncClient(backend=backend, max_concurrency=concurrency)


async def test_a_call_queued_past_its_deadline_gets_a_typed_timeout() -> None:
    failures: list[BaseException] = []
    backend = FakeBackend([Reply(text=t, delay=1.0) for t in "abcd"])
    hooks = Hooks(on_error=failures.append)
    async with AsyncClient(backend=backend, max_concurrency=1, hooks=hooks) as client:
        busy = asyncio.ensure_future(client.chat("first"))
        await asyncio.sleep(0.02)
        # The message tells the slots' timer (at 0.1 s) from the deadline check when the
        # busy call hands its slot over (at 1 s: "total timeout of 0.1s exceeded").
        with pytest.raises(errors.TimeoutError, match="waiting for a free request slot") as info:
            await client.chat("second", timeout=0.1)
        assert info.value.backend == "fake"
        assert info.value.retryable is False  # the deadline is spent: no retry, no fallback
        assert failures == [info.value]  # seen by the hooks like any failure
        assert (await busy).text == "a"
        assert len(backend.requests) == 1  # the queued call never reached the backend
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


async def test_a_call_failing_before_its_first_attempt_gives_its_slot_back() -> None:
    no_tools = Capabilities(streaming=True, tools=False, completion=True)
    async with AsyncClient(backend=FakeBackend(capabilities=no_tools), max_concurrency=1) as client:

        def lookup(city: str) -> str:
            return city

        for _ in range(3):  # a leaked slot would make the second call wait forever
            with pytest.raises(errors.UnsupportedFeatureError):
                await client.chat("hi", tools=[lookup], timeout=1)
        slots = client._async_slots()
        assert (slots.free, slots.waiting) == (1, 0)
        assert (await client.chat("hi")).text == "hi"


async def test_a_slot_handed_to_a_call_cancelled_before_it_resumes_is_passed_on() -> None:
    queued: list[asyncio.Task[object]] = []

    def cancel_the_queued_call(response: object) -> None:
        # Runs in the busy call after its slot went to the queued call, which has not
        # resumed yet: it is cancelled while it owns a slot it never used.
        if queued:
            queued.pop().cancel()

    backend = FakeBackend([Reply(text="a", delay=0.2), "b", "c"])
    hooks = Hooks(on_response=cancel_the_queued_call)
    async with AsyncClient(backend=backend, max_concurrency=1, hooks=hooks) as client:
        busy = asyncio.ensure_future(client.chat("first"))
        await asyncio.sleep(0.02)
        task = asyncio.ensure_future(client.chat("second"))
        queued.append(task)
        await asyncio.sleep(0.02)
        assert client._async_slots().waiting == 1
        assert (await busy).text == "a"
        with pytest.raises(asyncio.CancelledError):
            await task
        slots = client._async_slots()
        assert (slots.free, slots.waiting) == (1, 0)
        assert (await client.chat("third")).text == "b"  # the cancelled call sent nothing
        assert len(backend.requests) == 2
