"""Servers slower than the budgets: no byte before the first-token budget, a reply trickled
slower than the total budget, stalls longer than the whole call. Every case must end in
``llmkit.errors.TimeoutError`` inside the total budget -- nothing hangs."""

from __future__ import annotations

import asyncio

import pytest

from llmkit import AsyncClient, Client, RetryPolicy, Timeout, errors

from .fault_server import Fault, FaultServer
from .harness import (
    RETRY,
    TIMEOUT,
    assert_within,
    client_kwargs,
    phase_of,
    phases,
    run,
)

pytestmark = pytest.mark.timeout(15)

# The phase each error names is the real check. A test whose fault would end anyway, late,
# with the same phase if the budget were enforced only after the fact (a stall that finally
# answers, a trickle that finally completes) keeps one generous wall-clock bound
# (harness.assert_within: twice the budget plus HEADROOM), far below the fault's 10 s.


@pytest.fixture(params=["rest", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_no_first_byte_times_out_after_every_attempt(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.stall(10))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert len(server.requests(url)) == RETRY.max_attempts
    # Every attempt ended at its first-token budget, none at the total.
    assert len(out.timeouts) == RETRY.max_attempts
    assert set(phases(out)) <= {"first_token", "read"}, out.timeouts
    assert_within(out, RETRY.max_attempts * TIMEOUT.first_token)


def test_slow_first_attempt_then_success(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario([Fault.stall(10)])
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert len(server.requests(url)) == 2
    # The stalled attempt was cut by its first-token budget (a stall that finally answered
    # would have been the only request), then retried.
    assert phases(out) in (["first_token"], ["read"]), out.retried


def test_answer_just_inside_first_token_budget_succeeds(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario([Fault.stall(0.2)])
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert len(server.requests(url)) == 1


def test_stall_longer_than_total_ends_at_the_total(
    server: FaultServer, mode: str, kind: str
) -> None:
    # first_token larger than total: only the total budget can end this call.
    timeout = Timeout(connect=1, first_token=5, idle=5, total=1)
    url = server.scenario(then=Fault.stall(10))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url, timeout=timeout))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert phases(out) == ["total"], out.timeouts  # one attempt, ended by the total
    assert_within(out, timeout.total)


def test_reply_trickled_slower_than_total_times_out(
    server: FaultServer, mode: str, kind: str
) -> None:
    # Each byte arrives well inside the read budget; the whole reply takes ~10 s.
    timeout = Timeout(connect=1, first_token=0.5, idle=0.5, total=1)
    url = server.scenario(then=Fault.trickle(0.04))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url, timeout=timeout))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert phases(out) == ["total"], out.timeouts
    assert_within(out, timeout.total)


def test_head_trickled_slower_than_total_times_out(
    server: FaultServer, mode: str, kind: str
) -> None:
    # The status line and headers arrive a byte at a time (~10 s in all), each well inside
    # the read budget.
    timeout = Timeout(connect=1, first_token=0.5, idle=0.5, total=1)
    url = server.scenario(then=Fault.trickle_head(0.1))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url, timeout=timeout))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert phases(out) == ["total"], out.timeouts
    assert_within(out, timeout.total)


def test_per_call_timeout_overrides_the_client_default(server: FaultServer, mode: str) -> None:
    # The client default would wait 5 s for a first byte; the call's 0.3 s wins.
    url = server.scenario(then=Fault.stall(10))
    slow = Timeout(connect=1, first_token=5, idle=5, total=10)
    kwargs = client_kwargs("rest", url, timeout=slow, retry=RetryPolicy(max_attempts=1))
    if mode == "sync":
        with Client("rest:m", **kwargs) as c, pytest.raises(errors.TimeoutError) as info:
            c.chat("hi", timeout=0.3)
    else:

        async def go() -> pytest.ExceptionInfo[errors.TimeoutError]:
            async with AsyncClient("rest:m", **kwargs) as c:
                with pytest.raises(errors.TimeoutError) as caught:
                    await c.chat("hi", timeout=0.3)
                return caught

        info = asyncio.run(go())
    # The budget the error names is the call's, not the client's 5 s (whether the call's
    # budgets are enforced in time is what the tests above check).
    assert "0.3s" in str(info.value), info.value


@pytest.mark.parametrize(
    ("mode", "stream"),
    [
        ("sync", False),
        ("async", False),
        ("sync", True),
        ("async", True),
    ],
    ids=["sync-chat", "async-chat", "sync-stream", "async-stream"],
)
def test_first_token_budget_holds_when_idle_is_longer(
    server: FaultServer, kind: str, mode: str, stream: bool
) -> None:
    """``Timeout(first_token=0.2, idle=1)``: a server silent for 0.6 s has missed the
    first-token budget, whatever the idle budget allows between chunks later."""
    timeout = Timeout(connect=1, first_token=0.2, idle=1.0, total=5)
    url = server.scenario(then=Fault.stall(0.6))
    out = run(
        mode,
        f"{kind}:m",
        stream=stream,
        **client_kwargs(kind, url, timeout=timeout, retry=RetryPolicy(max_attempts=1)),
    )
    assert isinstance(out.error, errors.TimeoutError), out.error
    # The server answers at 0.6 s: had the first-token budget not held, there would be no
    # error at all, so the phase is the whole check (no wall-clock bound needed).
    assert phase_of(out.error) in ("first_token", "read"), out.error
