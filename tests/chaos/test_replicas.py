"""Failover across replicas (``rest:`` with ``base_url=[url1, url2]``) and across backends
(``fallbacks=[...]``): a broken, erroring or stalled server is routed around, and a cluster
that is down entirely ends in a typed error within the budget."""

from __future__ import annotations

import asyncio

import pytest

from llmkit import AsyncClient, Client, RetryPolicy, errors

from .fault_server import Fault, FaultServer
from .harness import assert_no_budget_spent, client_kwargs, phases, run

pytestmark = pytest.mark.timeout(15)

# One attempt only: these tests show failover inside a single attempt, not retries.
ONCE = RetryPolicy(max_attempts=1)


@pytest.mark.parametrize(
    "fault",
    [Fault.reset(), Fault.hangup(), Fault.error(503), Fault.error(502), Fault.truncated()],
    ids=["reset", "hangup", "503", "502", "truncated"],
)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_broken_replica_fails_over_to_the_next(
    server: FaultServer, mode: str, fault: Fault, stream: bool
) -> None:
    bad = server.scenario(then=fault)
    good = server.scenario()
    out = run(
        mode, "rest:m", "hi there", stream=stream, **client_kwargs("rest", [bad, good], retry=ONCE)
    )
    assert out.error is None, out.error
    assert out.response is not None and out.response.text == "echo: hi there"
    assert len(server.requests(bad)) == 1
    assert len(server.requests(good)) == 1
    assert_no_budget_spent(out)
    assert out.retried == []  # failed over inside the one attempt


def test_failed_replica_is_skipped_while_cooling_down(server: FaultServer, mode: str) -> None:
    """After one failure the bad replica sits out: three calls, one failed request."""
    bad = server.scenario(then=Fault.reset())
    good = server.scenario()
    kwargs = client_kwargs("rest", [bad, good], retry=ONCE, cooldown=30)
    if mode == "sync":
        with Client("rest:m", **kwargs) as c:
            texts = [c.chat(f"call {i}").text for i in range(3)]
    else:

        async def go() -> list[str]:
            async with AsyncClient("rest:m", **kwargs) as c:
                return [(await c.chat(f"call {i}")).text for i in range(3)]

        texts = asyncio.run(go())
    assert texts == [f"echo: call {i}" for i in range(3)]
    assert len(server.requests(bad)) == 1
    assert len(server.requests(good)) == 3


def test_stalled_replica_is_retried_on_the_other(server: FaultServer, mode: str) -> None:
    """A read timeout is not the replica's fault (no failover inside the attempt), but the
    retry goes to the next replica in rotation and succeeds."""
    slow = server.scenario(then=Fault.stall(10))
    good = server.scenario()
    out = run(mode, "rest:m", **client_kwargs("rest", [slow, good]))
    assert out.error is None, out.error
    assert len(server.requests(slow)) == 1
    assert len(server.requests(good)) == 1
    # The stalled attempt was cut by its first-token budget, then retried on the other.
    assert phases(out) in (["first_token"], ["read"]), out.retried


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_whole_cluster_down_is_a_typed_error(server: FaultServer, mode: str, stream: bool) -> None:
    a = server.scenario(then=Fault.reset())
    b = server.scenario(then=Fault.error(503))
    out = run(mode, "rest:m", stream=stream, **client_kwargs("rest", [a, b]))
    assert isinstance(out.error, (errors.ConnectionError, errors.ServerError)), out.error
    # Every attempt tries both replicas once.
    assert len(server.requests(a)) + len(server.requests(b)) == 2 * 3
    assert_no_budget_spent(out)


def test_drop_mid_stream_is_not_failed_over(server: FaultServer, mode: str) -> None:
    """After an event reached the caller, another replica must not replay the stream."""
    bad = server.scenario(then=Fault.drop(after=2))
    good = server.scenario()
    out = run(mode, "rest:m", "a b c d", stream=True, **client_kwargs("rest", [bad, good]))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert out.text == "echo: a "
    assert len(server.requests(good)) == 0


@pytest.mark.parametrize("kind", ["rest", "openai"])
def test_fallback_backend_answers_when_the_primary_is_down(
    server: FaultServer, mode: str, kind: str
) -> None:
    primary = server.scenario(then=Fault.error(500))
    backup = server.scenario()
    out = run(
        mode,
        f"{kind}:m",
        fallbacks=[client_kwargs(kind, backup)],
        **client_kwargs(kind, primary),
    )
    assert out.error is None, out.error
    assert out.response is not None and out.response.text == "echo: hello chaos"
    assert len(server.requests(primary)) == 3  # the primary's retries first
    assert len(server.requests(backup)) == 1
    assert_no_budget_spent(out)


@pytest.mark.parametrize("kind", ["rest", "openai"])
def test_no_fallback_after_a_non_retryable_error(server: FaultServer, mode: str, kind: str) -> None:
    primary = server.scenario(then=Fault.error(400))
    backup = server.scenario()
    out = run(
        mode, f"{kind}:m", fallbacks=[client_kwargs(kind, backup)], **client_kwargs(kind, primary)
    )
    assert isinstance(out.error, errors.BadRequestError), out.error
    assert len(server.requests(backup)) == 0
