"""The circuit breaker against a real server on 127.0.0.1: a primary that keeps failing is skipped after N failures (the fallback answers without the
primary being contacted), a half-open probe after the cool-down closes the circuit again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from llmkit import AsyncClient, CircuitBreaker, Client, RetryPolicy

from .fault_server import Fault, FaultServer
from .harness import client_kwargs

pytestmark = pytest.mark.timeout(20)

ONCE = RetryPolicy(max_attempts=1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _calls(
    mode: str, kwargs: dict[str, Any], backup: dict[str, Any], steps: list[Any]
) -> list[str]:
    """Run ``steps`` (prompts, or callables run between calls) on one client with one
    fallback; return the backend that answered each prompt."""
    answered: list[str] = []
    if mode == "sync":
        with Client("rest:m", **backup) as fb, Client("rest:m", fallbacks=[fb], **kwargs) as c:
            for step in steps:
                if callable(step):
                    step()
                else:
                    answered.append(c.chat(step).text)
        return answered

    async def go() -> None:
        async with (
            AsyncClient("rest:m", **backup) as fb,
            AsyncClient("rest:m", fallbacks=[fb], **kwargs) as c,
        ):
            for step in steps:
                if callable(step):
                    step()
                else:
                    answered.append((await c.chat(step)).text)

    asyncio.run(go())
    return answered


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_breaker_opens_skips_the_primary_and_a_probe_closes_it(
    server: FaultServer, mode: str
) -> None:
    # The primary fails twice (503), then is healthy again.
    primary = server.scenario([Fault.error(503), Fault.error(503)])
    backup = server.scenario()
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown=30, clock=clock)
    kwargs = client_kwargs("rest", primary, retry=ONCE, circuit_breaker=breaker)

    def advance() -> None:
        clock.now += 31

    steps: list[str | Callable[[], None]] = ["one", "two", "three", "four", advance, "five", "six"]
    texts = _calls(mode, kwargs, client_kwargs("rest", backup, retry=ONCE), steps)
    assert texts == [f"echo: {p}" for p in ("one", "two", "three", "four", "five", "six")]
    primary_prompts = [r.prompt for r in server.requests(primary)]
    backup_prompts = [r.prompt for r in server.requests(backup)]
    # Two failures open the circuit: "three" and "four" never reach the primary.
    assert primary_prompts == ["one", "two", "five", "six"]
    assert backup_prompts == ["one", "two", "three", "four"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_probe_opens_the_circuit_again(server: FaultServer, mode: str) -> None:
    primary = server.scenario(then=Fault.error(502))  # always down
    backup = server.scenario()
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown=10, clock=clock)
    kwargs = client_kwargs("rest", primary, retry=ONCE, circuit_breaker=breaker)

    def advance() -> None:
        clock.now += 11

    steps: list[str | Callable[[], None]] = ["a", "b", advance, "c", "d"]
    texts = _calls(mode, kwargs, client_kwargs("rest", backup, retry=ONCE), steps)
    assert texts == ["echo: a", "echo: b", "echo: c", "echo: d"]
    # "a" opens it, "b" skips, the probe "c" fails and opens it again, "d" skips.
    assert [r.prompt for r in server.requests(primary)] == ["a", "c"]
