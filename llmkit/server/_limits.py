"""Backpressure: a bounded number of generations in flight plus a bounded queue.

The slots themselves are the client's :class:`~llmkit._slots.AsyncSlots` (first come, first
served; a slot goes straight from a finishing request to the oldest waiter; one timer for
all queue deadlines). This module adds what a server needs on top: a request beyond both
bounds is refused at once (the server answers 429 with ``Retry-After``) instead of piling
up in memory, and so is a queued request still waiting after ``queue_timeout``.
"""

from __future__ import annotations

import asyncio
import time

from .._slots import AsyncSlots

__all__ = ["GenerationSlots", "Overloaded"]


class Overloaded(Exception):
    """No slot is free and the queue is full (or the wait in the queue ran out)."""


class GenerationSlots:
    """At most ``max_in_flight`` holders at a time, at most ``max_queue`` waiting."""

    def __init__(self, max_in_flight: int, max_queue: int, queue_timeout: float | None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must be 0 or more")
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        # Made on first use: AsyncSlots binds to the running loop, which the app is built
        # before (uvicorn starts its loop later, in its own thread for run_in_thread); made
        # again when an idle app is served from another loop (one test client after another).
        self._slots: AsyncSlots | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def in_flight(self) -> int:
        """How many requests hold a slot."""
        return 0 if self._slots is None else self.max_in_flight - self._slots.free

    @property
    def queued(self) -> int:
        """How many requests wait for a slot."""
        return 0 if self._slots is None else self._slots.waiting

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room; else raise :class:`Overloaded`."""
        slots, loop = self._slots, asyncio.get_running_loop()
        if slots is None or (loop is not self._loop and slots.free == self.max_in_flight):
            slots, self._loop = AsyncSlots(self.max_in_flight), loop
            self._slots = slots
        # AsyncSlots keeps no queue while a slot is free, so `waiting` (a count over the
        # queue) is only paid for when every slot is taken.
        if slots.free == 0 and slots.waiting >= self.max_queue:
            raise Overloaded(
                f"server is busy: {self.max_in_flight} generation(s) in flight and "
                f"{self.max_queue} queued; retry later"
            )
        timeout = self.queue_timeout
        # With a slot free, acquire() takes it without looking at the deadline.
        deadline = float("inf") if timeout is None or slots.free else time.monotonic() + timeout
        waiter = slots.acquire(deadline)
        if waiter is None:
            return
        try:
            handed_over = await waiter
        except BaseException:
            slots.abandon(waiter)
            raise
        if not handed_over:
            raise Overloaded(
                f"server is busy: no generation slot freed up within {timeout:g}s; retry later"
            )

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one, else to the pool."""
        if self._slots is not None:
            self._slots.release()
