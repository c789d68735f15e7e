"""Faults inside streamed replies: dropped connections before and after the first event,
malformed SSE, stalls before the first byte and between chunks. A stream is retried only
before its first event reached the caller; after that the error surfaces (never a replay)."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmkit import AsyncClient, Client, RetryPolicy, Timeout, errors

from .fault_server import Fault, FaultServer
from .harness import (
    RETRY,
    TIMEOUT,
    assert_no_budget_spent,
    assert_within,
    client_kwargs,
    phases,
    run,
)

pytestmark = pytest.mark.timeout(15)
PROMPT = "one two three four five"  # six words with "echo:": six content chunks


@pytest.fixture(params=["rest", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_stream_baseline(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario()
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.text == f"echo: {PROMPT}"
    assert out.response is not None and out.response.text == out.text
    assert out.response.usage.completion_tokens == 6


@pytest.mark.parametrize(
    "fault",
    [Fault.drop(after=0), Fault.reset(), Fault.error(503), Fault.stall(10)],
    ids=["drop-before-first-event", "reset", "503", "stall-first-byte"],
)
def test_failure_before_the_first_event_is_retried(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario([fault])
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.text == f"echo: {PROMPT}"
    assert len(server.requests(url)) == 2
    # A first-byte stall is cut by the first-token budget (had it been waited out, the
    # stalled request would have answered and been the only one); the others by no budget.
    if fault.kind == "stall":
        assert phases(out) in (["first_token"], ["read"]), out.retried
    else:
        assert_no_budget_spent(out)


@pytest.mark.parametrize(
    "fault", [Fault.drop(after=2), Fault.truncated(after=2)], ids=["reset", "fin"]
)
def test_connection_lost_mid_stream_surfaces_without_replay(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario(then=fault)
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert out.text == "echo: one "  # what arrived before the drop, exactly once
    assert len(server.requests(url)) == 1
    assert_no_budget_spent(out)


def test_malformed_sse_is_a_protocol_error(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario(then=Fault.malformed(after=2))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1
    assert_no_budget_spent(out)


def test_malformed_first_event_is_a_protocol_error(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.malformed(after=0))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert out.events == []
    assert len(server.requests(url)) == 1  # not transient: not retried


def test_stall_before_first_byte_every_time_is_a_timeout(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.stall(10))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.events == []
    assert len(server.requests(url)) == RETRY.max_attempts
    assert len(out.timeouts) == RETRY.max_attempts
    assert set(phases(out)) <= {"first_token", "read"}, out.timeouts
    assert_within(out, RETRY.max_attempts * TIMEOUT.first_token)


def test_long_stall_mid_stream_is_a_timeout_without_replay(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=10))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1
    # After the first event the idle budget (0.3 s) is the one that applies; without it the
    # total (3 s) would end the call, naming itself.
    assert phases(out) == ["idle"], out.timeouts


# A gap longer than `idle` but shorter than `first_token`: only an idle check catches it.
IDLE_GAP = 0.42


def test_gap_longer_than_idle_is_a_timeout(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=IDLE_GAP))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    # Which budget fired: only the idle check can catch this gap (without it the stream
    # would finish, inside the first-token and total budgets).
    assert phases(out) == ["idle"], out.timeouts
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1


def test_slow_consumer_is_not_an_idle_timeout(server: FaultServer, mode: str, kind: str) -> None:
    """``idle`` bounds the server's gaps, not the caller's: time spent between asking for
    events is not the stream's to account for."""
    timeout = Timeout(connect=1, first_token=0.5, idle=0.2, total=10)
    kwargs = client_kwargs(kind, url := server.scenario(), timeout=timeout)
    seen: list[str] = []
    if mode == "sync":
        with Client(f"{kind}:m", **kwargs) as c, c.stream(PROMPT) as s:
            for event in s:
                seen.append(event.text)
                time.sleep(0.3)
    else:

        async def go() -> None:
            async with AsyncClient(f"{kind}:m", **kwargs) as c, c.stream(PROMPT) as s:
                async for event in s:
                    seen.append(event.text)
                    await asyncio.sleep(0.3)

        asyncio.run(go())
    # No idle timeout although the caller spent 0.3 s (more than the 0.2 s idle budget)
    # before each next event: the whole reply, from the one request.
    assert "".join(seen) == f"echo: {PROMPT}"
    assert len(server.requests(url)) == 1


def test_caller_cancelling_a_wait_is_a_cancellation_not_a_timeout(
    server: FaultServer, kind: str
) -> None:
    """The caller's own deadline around ``__anext__`` (``asyncio.wait_for``) cancels the
    wait; llmkit must not turn that into its own ``TimeoutError``, and the stream's budget
    must not fire later on a task that moved on."""
    timeout = Timeout(connect=1, first_token=1, idle=0.5, total=10)
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=10))

    async def go() -> None:
        async with AsyncClient(f"{kind}:m", **client_kwargs(kind, url, timeout=timeout)) as c:
            async with c.stream(PROMPT) as s:
                assert (await s.__anext__()).text == "echo: "
                assert (await s.__anext__()).text == "one "
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(s.__anext__(), 0.1)
            # Past the idle budget: a budget timer left behind would cancel this task here.
            await asyncio.sleep(0.6)

    asyncio.run(go())


def test_stream_dripping_past_the_total_ends_at_the_total(
    server: FaultServer, mode: str, kind: str
) -> None:
    """Every event arrives inside the first-token and idle budgets, but the whole reply
    takes longer than the total: the call ends at the total, not at the next event (which
    comes 10 s later: far beyond the generous wall-clock bound, unlike a drip of events)."""
    timeout = Timeout(connect=1, first_token=20, idle=20, total=1)
    url = server.scenario(then=Fault.stall_mid(after=1, seconds=10))
    out = run(
        mode,
        f"{kind}:m",
        PROMPT,
        stream=True,
        **client_kwargs(kind, url, timeout=timeout, retry=RetryPolicy(max_attempts=1)),
    )
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert phases(out) == ["total"], out.timeouts
    assert out.text == "echo: "  # the one event that made it inside the total
    assert_within(out, timeout.total)


@pytest.mark.parametrize("kind", ["rest", "openai"])  # SSE dialects: comments are SSE
def test_keepalive_comments_do_not_extend_the_first_token_budget(
    server: FaultServer, mode: str, kind: str
) -> None:
    """A server that sends only SSE comments has sent no token: the first-token budget
    runs from the request, whatever bytes keep the connection busy."""
    timeout = Timeout(connect=1, first_token=0.5, idle=0.5, total=5)
    url = server.scenario(then=Fault.keepalive(0.1))
    out = run(
        mode,
        f"{kind}:m",
        PROMPT,
        stream=True,
        **client_kwargs(kind, url, timeout=timeout, retry=RetryPolicy(max_attempts=1)),
    )
    assert isinstance(out.error, errors.TimeoutError), out.error
    # The comments never end (one every 0.1 s): without the first-token budget the total
    # (5 s) would end the call, naming itself.
    assert "first" in str(out.error), out.error
    assert phases(out) in (["first_token"], ["read"]), out.timeouts
    assert out.events == []


@pytest.mark.parametrize(
    ("kind", "dialect"),
    [
        ("openai", {}),
        ("rest", {}),
        ("rest", {"dialect": "tgi", "template": "chatml"}),
        ("rest", {"dialect": "ollama"}),
    ],
    ids=["openai", "rest-openai", "rest-tgi", "rest-ollama"],
)
def test_stream_cut_short_with_a_clean_http_end_is_an_error(
    server: FaultServer, mode: str, kind: str, dialect: dict[str, str]
) -> None:
    """A proxy that gives up on a slow upstream may end the chunked body properly; the
    reply is still incomplete and must not pass for a finished one."""
    url = server.scenario(then=Fault.cut(after=2))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url, **dialect))
    assert isinstance(out.error, errors.ConnectionError), (out.error, out.response)
    assert len(out.events) == 2
