"""The request slots of an :class:`~llmkit.AsyncClient` (its ``max_concurrency`` cap).

``asyncio.Semaphore`` under ``asyncio.timeout`` would do, but a burst of a thousand calls
queued behind the cap would then hold a thousand timer handles, timeout objects and
``acquire()`` coroutines. Here a queued call holds one future and one deque entry; the
deadlines of all waiters share a single timer, which only fires when one of them runs out.
Slots are handed over first-in first-out, directly from the call that frees one.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["AsyncSlots"]


class AsyncSlots:
    """``size`` slots for one event loop, with a deadline per waiter.

    ``clock`` is the clock the deadlines are on (``time.monotonic``, as the client's call
    deadlines are); a test passes the event loop's own clock to move time forward itself.
    """

    __slots__ = ("_clock", "_free", "_loop", "_timer", "_timer_at", "_waiters")

    def __init__(self, size: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        import asyncio  # here, not at the top: `import llmkit` leaves asyncio unimported

        self._free = size
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        # (future, deadline on ``clock``); a future that is already done (cancelled, or
        # timed out) is skipped when its turn comes.
        self._waiters: deque[tuple[asyncio.Future[bool], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    @property
    def free(self) -> int:
        """Slots not held by any call."""
        return self._free

    @property
    def waiting(self) -> int:
        """Calls queued for a slot."""
        return sum(1 for waiter, _ in self._waiters if not waiter.done())

    def acquire(self, deadline: float) -> asyncio.Future[bool] | None:
        """Take a slot now (``None``), or queue for one: the future resolves to ``True``
        when a slot is handed over, ``False`` when ``deadline`` (on the slots' clock,
        ``time.monotonic()`` by default) passes first. A plain function rather than a
        coroutine, so a queued call holds no extra frame; a caller cancelled while it waits
        passes the future to :meth:`abandon`."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return None
        waiter: asyncio.Future[bool] = self._loop.create_future()
        if deadline <= self._clock():
            waiter.set_result(False)
            return waiter
        self._waiters.append((waiter, deadline))
        if deadline < self._timer_at:
            self._arm(deadline)
        return waiter

    def abandon(self, waiter: asyncio.Future[bool]) -> None:
        """The caller stopped waiting (cancelled): a slot handed over meanwhile goes on to
        the next waiter; a queued waiter is skipped when its turn comes."""
        if waiter.done() and not waiter.cancelled() and waiter.result():
            self.release()
        else:
            waiter.cancel()

    def release(self) -> None:
        """Give a slot back: to the longest waiter, or to the free pool."""
        waiters = self._waiters
        while waiters:
            waiter, _ = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._free += 1

    def _arm(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(
            self._loop.time() + max(0.0, deadline - self._clock()), self._expire
        )

    def _expire(self) -> None:
        """The timer: fail the waiters whose deadline has passed, re-arm for the next one."""
        self._timer, self._timer_at = None, float("inf")
        now = self._clock()
        earliest = float("inf")
        for waiter, deadline in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_result(False)
            elif deadline < earliest:
                earliest = deadline
        if earliest != float("inf"):
            self._arm(earliest)
