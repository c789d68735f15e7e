"""Helpers for testing applications that use llmkit, offline.

* :class:`FakeBackend` / :class:`FunctionBackend`: scripted backends, used as
  ``Client(backend=FakeBackend([...]))``; they record every request in ``.requests``.
* :class:`Reply`: a scripted answer with stream chunks, tool calls, delays or failures.
* :func:`fake_client` / :func:`fake_async_client`: shortcuts that build both at once.
* :func:`instant_retry`: a retry policy that never really sleeps (and records the waits).
* :func:`cassette`: record what a real backend answered once, replay it offline afterwards
  (:mod:`llmkit.testing.cassette`); the pytest plugin is :mod:`llmkit.testing.pytest_plugin`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends.fake import FakeBackend, FunctionBackend, Reply, ScriptItem
from ..client import AsyncClient, Client
from ..retry import RetryPolicy
from .cassette import Cassette, CassetteError, CassetteMiss, RecordMode, cassette

__all__ = [
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "FakeBackend",
    "FunctionBackend",
    "RecordMode",
    "Reply",
    "SleepRecorder",
    "cassette",
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
