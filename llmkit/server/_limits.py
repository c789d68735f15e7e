"""Backpressure: a bounded number of generations in flight plus a bounded queue.

A request beyond both bounds is refused at once (the server answers 429 with
``Retry-After``) instead of piling up in memory; a queued request that waits longer than
``queue_timeout`` is refused the same way. Slots are handed directly from a finishing
request to the oldest waiter, so the queue is first come, first served.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["ConcurrencyLimiter", "Overloaded"]


class Overloaded(Exception):
    """No slot is free and the queue is full (or the wait in the queue ran out)."""


class ConcurrencyLimiter:
    """At most ``max_in_flight`` holders at a time, at most ``max_queue`` waiting."""

    def __init__(self, max_in_flight: int, max_queue: int, queue_timeout: float | None) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if max_queue < 0:
            raise ValueError("max_queue must be 0 or more")
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def queued(self) -> int:
        """How many requests wait for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room; else raise :class:`Overloaded`."""
        if self.in_flight < self.max_in_flight and not self.queued:
            self.in_flight += 1
            return
        if self.queued >= self.max_queue:
            raise Overloaded(
                f"server is busy: {self.in_flight} generation(s) in flight and "
                f"{self.queued} queued; retry later"
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.queue_timeout)
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over just as we gave up: pass it on
            else:
                waiter.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            if isinstance(exc, asyncio.TimeoutError):
                raise Overloaded(
                    f"server is busy: no generation slot freed up within {self.queue_timeout:g}s; "
                    "retry later"
                ) from None
            raise

    def release(self) -> None:
        """Give a slot back: to the oldest waiter if there is one, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves on; in_flight is unchanged
                return
        self.in_flight = max(0, self.in_flight - 1)
