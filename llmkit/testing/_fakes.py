"""Scripted stand-ins and fake clocks (re-exported by :mod:`llmkit.testing`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends.fake import FakeBackend, FunctionBackend, Reply, ScriptItem
from ..client import AsyncClient, Client
from ..retry import RetryPolicy

__all__ = [
    "FakeBackend",
    "FunctionBackend",
    "Reply",
    "SleepRecorder",
    "fake_async_client",
    "fake_client",
    "instant_retry",
]


class SleepRecorder:
    """A fake clock: ``sleep`` advances ``now`` instead of waiting; ``sleeps`` lists the waits."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def clock(self) -> float:
        return self.now


def instant_retry(
    policy: RetryPolicy | None = None, recorder: SleepRecorder | None = None
) -> RetryPolicy:
    """``policy`` (default: 3 attempts) driven by a :class:`SleepRecorder` instead of real time."""
    recorder = recorder or SleepRecorder()
    return (policy or RetryPolicy()).with_clock(
        sleep=recorder.sleep, async_sleep=recorder.async_sleep, clock=recorder.clock
    )


def fake_client(
    replies: Sequence[ScriptItem] | ScriptItem | None = None, **client_options: Any
) -> Client:
    """A :class:`Client` over a new :class:`FakeBackend` (reach it as ``client.backend``)."""
    client_options.setdefault("retry", instant_retry())
    return Client(backend=FakeBackend(replies), **client_options)


def fake_async_client(
    replies: Sequence[ScriptItem] | ScriptItem | None = None, **client_options: Any
) -> AsyncClient:
    """An :class:`AsyncClient` over a new :class:`FakeBackend`."""
    client_options.setdefault("retry", instant_retry())
    return AsyncClient(backend=FakeBackend(replies), **client_options)
