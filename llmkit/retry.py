"""Retries: the one owner of retrying in llmkit (the SDKs' own retries are switched off).

:class:`RetryPolicy` is a small, validated description; :meth:`RetryPolicy.retrying` and
:meth:`RetryPolicy.async_retrying` turn it into tenacity controllers. What retries: errors
whose ``retryable`` flag is set (429, 408, 409, 5xx, timeouts, connection failures) — never
other 4xx, never usage mistakes. Backoff is exponential with jitter and a cap; a provider's
``Retry-After`` is honoured up to ``max_retry_after``; no attempt starts (and no sleep is
begun) that would end past the deadline.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ._lazy import async_sleep
from .errors import CircuitOpenError, LLMError

if TYPE_CHECKING:
    import tenacity

__all__ = ["NO_RETRY", "RetryPolicy", "RetryState"]

logger = logging.getLogger("llmkit.retry")


@dataclass
class _Timing:
    sleep: Callable[[float], None] = time.sleep
    async_sleep: Callable[[float], Awaitable[None]] = async_sleep
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)


class RetryPolicy(BaseModel):
    """How failed calls are retried.

    Args:
        max_attempts: attempts in all, the first included (1 = no retries).
        initial_backoff: seconds before the first retry.
        max_backoff: cap on any single backoff.
        multiplier: growth factor between retries.
        jitter: fraction of each backoff that is randomised (0 = none, 1 = full jitter).
        deadline: seconds after which no new attempt starts (``None``: bounded by the
            call's total timeout only).
        max_retry_after: cap on a provider-requested ``Retry-After`` pause.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=3, ge=1, le=100)
    initial_backoff: float = Field(default=0.5, ge=0)
    max_backoff: float = Field(default=8.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1)
    jitter: float = Field(default=0.25, ge=0, le=1)
    deadline: float | None = Field(default=None, gt=0)
    max_retry_after: float = Field(default=60.0, ge=0)

    # Injectable for tests and for deterministic behaviour: no real sleeping needed.
    _timing: _Timing = PrivateAttr(default_factory=lambda: _Timing())

    def with_clock(
        self,
        *,
        sleep: Callable[[float], None] | None = None,
        async_sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
    ) -> RetryPolicy:
        """A copy of this policy that sleeps, reads time and draws jitter through the given
        functions (tests use a fake clock so nothing really sleeps)."""
        copy = self.model_copy()
        current = self._timing
        copy._timing = _Timing(
            sleep=sleep or current.sleep,
            async_sleep=async_sleep or current.async_sleep,
            clock=clock or current.clock,
            rng=rng or current.rng,
        )
        return copy

    def __eq__(self, other: object) -> bool:
        # Policies are equal when their settings are; the injected clock is not a setting.
        if not isinstance(other, RetryPolicy):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(tuple(self.model_dump().items()))

    @property
    def clock(self) -> Callable[[], float]:
        """The clock deadlines given to :meth:`retrying` are measured on."""
        return self._timing.clock

    def backoff(self, retry_number: int, error: BaseException | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based) after ``error``."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return float(min(retry_after, self.max_retry_after))
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry_number - 1))
        # Jitter shortens the wait by up to `jitter` of it, so clients don't retry in lockstep.
        return base * (1.0 - self.jitter * self._timing.rng.random())

    def sleep(self, seconds: float) -> None:
        """Sleep between attempts (through the injected clock, see :meth:`with_clock`)."""
        self._timing.sleep(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """:meth:`sleep` for asyncio."""
        await self._timing.async_sleep(seconds)

    @staticmethod
    def is_retryable(error: BaseException) -> bool:
        # An open circuit falls back at once: retrying the same backend cannot help.
        return (
            isinstance(error, LLMError)
            and error.retryable
            and not isinstance(error, CircuitOpenError)
        )

    def _controller_kwargs(
        self, deadline: float | None, on_retry: Callable[[Any], None] | None
    ) -> dict[str, Any]:
        effective = deadline
        if self.deadline is not None:
            own = self._timing.clock() + self.deadline
            effective = own if effective is None else min(effective, own)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.backoff(state.attempt_number, error)

        def stop(state: tenacity.RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            if effective is not None:
                # Do not sleep into (or past) the deadline only to fail there.
                upcoming = state.upcoming_sleep or 0.0
                if self._timing.clock() + upcoming >= effective:
                    return True
            return False

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            logger.info(
                "retrying after %s (attempt %d of %d, waiting %.2fs)",
                type(error).__name__,
                state.attempt_number,
                self.max_attempts,
                state.upcoming_sleep,
            )
            if on_retry is not None:
                on_retry(state)

        # Imported here, not at module level: only a call's first retry needs tenacity.
        import tenacity

        return {
            "stop": stop,
            "wait": wait,
            "retry": tenacity.retry_if_exception(self.is_retryable),
            "reraise": True,
            "before_sleep": before_sleep,
        }

    def retrying(
        self, *, deadline: float | None = None, on_retry: Callable[[Any], None] | None = None
    ) -> tenacity.Retrying:
        """A tenacity controller for sync code; ``deadline`` is absolute (this policy's clock)."""
        import tenacity

        return tenacity.Retrying(
            sleep=self._timing.sleep, **self._controller_kwargs(deadline, on_retry)
        )

    def async_retrying(
        self, *, deadline: float | None = None, on_retry: Callable[[Any], None] | None = None
    ) -> tenacity.AsyncRetrying:
        """A tenacity controller for async code; ``deadline`` is absolute (this policy's clock)."""
        import tenacity

        return tenacity.AsyncRetrying(
            sleep=self._timing.async_sleep, **self._controller_kwargs(deadline, on_retry)
        )


NO_RETRY = RetryPolicy(max_attempts=1)


class RetryState:
    """The retries of one call on one backend, decided by tenacity without tenacity's loop.

    The strategies are those of the controller :meth:`RetryPolicy.retrying` builds (its
    ``retry``, ``wait``, ``stop`` and ``before_sleep``), applied to a
    ``tenacity.RetryCallState`` in the order tenacity's own loop applies them; the attempts
    and the sleeping are the caller's (the client's call plan and its sync and async
    drivers), so one decision serves both.
    """

    __slots__ = ("_controller", "_state")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        deadline: float | None = None,
        on_retry: Callable[[Any], None] | None = None,
    ) -> None:
        import tenacity

        self._controller = policy.retrying(deadline=deadline, on_retry=on_retry)
        self._state = tenacity.RetryCallState(self._controller, None, (), {})

    def after(self, error: BaseException) -> float | None:
        """Attempt ``state.attempt_number`` failed with ``error``: the seconds to wait before
        the next attempt, or ``None`` when there is none (not retryable, attempts or
        deadline spent)."""
        controller, state = self._controller, self._state
        state.set_exception((type(error), error, error.__traceback__))
        if not controller.retry(state):
            return None
        state.upcoming_sleep = sleep = controller.wait(state)
        if controller.stop(state):
            return None
        if controller.before_sleep is not None:
            controller.before_sleep(state)
        state.idle_for += sleep
        state.prepare_for_next_attempt()
        return sleep
