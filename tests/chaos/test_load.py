"""Load with faults mixed in: 1,000 concurrent requests through one ``AsyncClient`` (and
1,000 through ``batch``) against the fault server, some answered with 500s, 429s and
connection resets. Every request ends exactly once -- in its own response or a typed llmkit
error -- and afterwards nothing is left behind: no open connections on the server, no extra
threads, no stray asyncio tasks."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from llmkit import AsyncClient, Client, Timeout, errors
from llmkit.errors import LLMError

from .fault_server import Fault, FaultServer, Scenario
from .harness import RETRY, client_kwargs

pytestmark = pytest.mark.timeout(60)

N = 1_000
# The total budget covers waiting for a free slot (max_concurrency) too: with 1,000 calls
# queued behind 64 slots the tail waits seconds, and a retry queues again. The budgets here
# are generous so that every outcome is the injected fault's, never a load-induced timeout
# (check() fails on any outcome that is not). How fast the burst runs (typically ~3 s) is
# not asserted: these tests check that every request ends, exactly once, correctly, and
# that nothing leaks; the pytest timeout below catches a hang.
LOAD_TIMEOUT = Timeout(connect=5, first_token=10, idle=10, total=30)


# Requests in flight. The server shares this process (and the GIL) with the client, and
# httpcore's pool bookkeeping grows with the connections it holds: at llmkit's default cap of
# 64 a burst of 1,000 takes ~20 s here, at 16 about 3 s -- the same code paths either way.
LOAD_CONCURRENCY = 16


def load_kwargs(kind: str, url: str) -> dict[str, object]:
    return client_kwargs(kind, url, timeout=LOAD_TIMEOUT, max_concurrency=LOAD_CONCURRENCY)


def _index(prompt: str) -> int:
    return int(prompt.rsplit("-", 1)[1])


def mixed(prompt: str, attempt: int) -> Fault:
    """The fault mix, decided by the request's id so that each outcome is known in advance:
    10% fail once with a 500, 10% once with a 429, 10% once with a reset (all then succeed
    on the retry); 5% always answer 503 and 5% always reset (typed errors after 3 tries)."""
    i = _index(prompt)
    if i % 20 == 4:
        return Fault.error(503)
    if i % 20 == 14:
        return Fault.reset()
    if attempt == 1:
        if i % 10 == 1:
            return Fault.error(500)
        if i % 10 == 2:
            return Fault.error(429, retry_after=0)
        if i % 10 == 3:
            return Fault.reset()
    return Fault.ok()


def expected_error(i: int) -> type[LLMError] | None:
    if i % 20 == 4:
        return errors.ServerError
    if i % 20 == 14:
        return errors.ConnectionError
    return None


def expected_attempts(i: int) -> int:
    if expected_error(i) is not None:
        return RETRY.max_attempts
    return 2 if i % 10 in (1, 2, 3) else 1


def check(results: list[object], server: FaultServer, url: str) -> None:
    """One outcome per request, each the right one, and the server saw the right retries."""
    assert len(results) == N
    for i, result in enumerate(results):
        want = expected_error(i)
        if want is None:
            assert not isinstance(result, BaseException), (i, result)
            # The echo proves the answer belongs to this request and no other.
            assert result.text == f"echo: req-{i}", (i, result.text)  # type: ignore[attr-defined]
        else:
            assert isinstance(result, want), (i, result)
    attempts = Counter(_index(r.prompt) for r in server.requests(url))
    assert set(attempts) == set(range(N))
    wrong = {i: n for i, n in attempts.items() if n != expected_attempts(i)}
    assert not wrong, f"unexpected attempt counts (id: attempts): {dict(list(wrong.items())[:10])}"


def client_threads() -> int:
    """Threads alive, not counting the event loop's own default executor (``asyncio_N``):
    the openai SDK runs small blocking helpers there, and the loop, not the client, owns and
    joins those workers when it shuts down."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


async def assert_nothing_leaked(server: FaultServer, threads_before: int) -> None:
    assert await server.await_idle(5) == 0, "connections left open after the client closed"
    assert client_threads() <= threads_before
    # Async generators dropped without aclose() are finalised through tasks the loop spawns
    # at garbage collection; give those a moment so that only a task that really hangs
    # counts here (test_streams_leave_no_async_generator_... checks the generators exactly).
    gc.collect()
    await asyncio.sleep(0.05)
    current = asyncio.current_task()
    assert {t for t in asyncio.all_tasks() if not t.done()} == {current}


async def test_thousand_concurrent_requests_with_faults(server: FaultServer) -> None:
    url = server.scenario(Scenario(decide=mixed))
    threads_before = client_threads()
    client = AsyncClient("rest:m", **load_kwargs("rest", url))
    try:

        async def one(i: int) -> object:
            try:
                return await client.chat(f"req-{i}")
            except LLMError as exc:
                return exc

        # Outcomes land in a dict keyed by the caller's id: a duplicate would overwrite,
        # a loss would leave a hole; both are caught by the checks below.
        outcomes: dict[int, object] = {}

        async def record(i: int) -> None:
            assert i not in outcomes
            outcomes[i] = await one(i)

        await asyncio.gather(*(record(i) for i in range(N)))
    finally:
        await client.aclose()
    assert sorted(outcomes) == list(range(N))
    check([outcomes[i] for i in range(N)], server, url)
    await assert_nothing_leaked(server, threads_before)


async def test_thousand_requests_through_batch(server: FaultServer) -> None:
    url = server.scenario(Scenario(decide=mixed))
    threads_before = client_threads()
    async with AsyncClient("rest:m", **load_kwargs("rest", url)) as client:
        results = await client.batch(
            [f"req-{i}" for i in range(N)], concurrency=N, return_exceptions=True
        )
    check(results, server, url)
    await assert_nothing_leaked(server, threads_before)


@pytest.mark.parametrize("kind", ["rest", "openai"])
async def test_concurrent_streams_with_faults(server: FaultServer, kind: str) -> None:
    """200 concurrent streams, a third of them dropped mid-way: the dropped ones end in
    ConnectionError after their first events, the rest read to the end; nothing leaks."""
    n = 200

    def decide(prompt: str, attempt: int) -> Fault:
        return Fault.drop(after=2) if _index(prompt) % 3 == 0 else Fault.ok()

    url = server.scenario(Scenario(decide=decide))
    threads_before = client_threads()
    async with AsyncClient(f"{kind}:m", **load_kwargs(kind, url)) as client:

        async def one(i: int) -> tuple[str, BaseException | None]:
            seen = []
            try:
                async with client.stream(f"word word req-{i}") as s:
                    async for event in s:
                        seen.append(event.text)
            except LLMError as exc:
                return "".join(seen), exc
            return "".join(seen), None

        results = await asyncio.gather(*(one(i) for i in range(n)))
    for i, (text, error) in enumerate(results):
        if i % 3 == 0:
            assert isinstance(error, errors.ConnectionError), (i, error)
            assert text == "echo: word "
        else:
            assert error is None, (i, error)
            assert text == f"echo: word word req-{i}"
    assert len(server.requests(url)) == n  # mid-stream failures are never replayed
    await assert_nothing_leaked(server, threads_before)


def test_thousand_requests_through_sync_batch(server: FaultServer) -> None:
    """The sync client's batch runs on a thread pool; its threads must be gone afterwards."""
    url = server.scenario(Scenario(decide=mixed))
    threads_before = client_threads()
    with Client("rest:m", **load_kwargs("rest", url)) as client:
        results = client.batch(
            [f"req-{i}" for i in range(N)], concurrency=16, return_exceptions=True
        )
    check(results, server, url)
    assert server.wait_idle(5) == 0
    assert client_threads() <= threads_before


async def test_cancelled_requests_release_slots_replicas_and_connections(
    server: FaultServer,
) -> None:
    """Callers that give up (their task is cancelled while the server stalls) must hand back
    the concurrency slot, the replica's in-flight count and the connection."""
    stalled = server.scenario(then=Fault.stall(10))
    threads_before = client_threads()
    async with AsyncClient("rest:m", **load_kwargs("rest", stalled)) as client:
        tasks = [asyncio.ensure_future(client.chat(f"req-{i}")) for i in range(100)]
        # Let them all start (the first LOAD_CONCURRENCY reach the server, the rest queue).
        deadline = time.monotonic() + 5
        while len(server.requests(stalled)) < LOAD_CONCURRENCY and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(o, asyncio.CancelledError) for o in outcomes)
        backend = client.backend
        assert [r.in_flight for r in backend.replicas] == [0]  # type: ignore[attr-defined]
        slots = client._async_slots()
        assert (slots.free, slots.waiting) == (LOAD_CONCURRENCY, 0)  # nothing held or queued
    await assert_nothing_leaked(server, threads_before)


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("rest", Fault.ok()),
        ("rest", Fault.drop(after=2)),
        ("openai", Fault.ok()),
        ("openai", Fault.drop(after=2)),
    ],
    ids=["rest-ok", "rest-dropped", "openai-ok", "openai-dropped"],
)
async def test_streams_leave_no_async_generator_to_the_garbage_collector(
    server: FaultServer, kind: str, fault: Fault
) -> None:
    """Every async generator a stream opens is closed by the code that opened it. One left
    suspended is finalised later by the loop (a stray ``aclose()`` task per stream, and a
    "Task was destroyed but it is pending" warning when the loop is already closing)."""
    url = server.scenario(then=fault)
    left_to_gc: list[str] = []
    hooks = sys.get_asyncgen_hooks()

    def finalizer(agen: Any) -> None:
        left_to_gc.append(getattr(agen, "__qualname__", repr(agen)))
        assert hooks.finalizer is not None
        hooks.finalizer(agen)

    # Hooks are captured by each generator on its first iteration, so set them before any.
    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        async with AsyncClient(f"{kind}:m", **load_kwargs(kind, url)) as client:
            for i in range(5):
                try:
                    async with client.stream(f"a b c req-{i}") as s:
                        async for _ in s:
                            pass
                except errors.ConnectionError:
                    pass
        gc.collect()
        for _ in range(3):
            await asyncio.sleep(0)
    finally:
        sys.set_asyncgen_hooks(*hooks)
    assert left_to_gc == [], left_to_gc
