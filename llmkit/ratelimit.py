"""A client-side rate limiter: requests per minute and tokens per minute.

One :class:`RateLimit` is shared by every call of a client (sync and async, all threads and
tasks). It uses token buckets with *reservations*: each attempt reserves one request and its
estimated prompt tokens and waits until the buckets cover them, so concurrent callers queue
in order instead of stampeding when capacity frees up. Completion tokens are charged when the
response arrives, which delays later calls if replies are long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ._lazy import async_sleep
from .errors import ConfigError

__all__ = ["RateLimit"]


class _Bucket:
    def __init__(self, per_minute: float, now: float) -> None:
        self.capacity = per_minute
        self.rate = per_minute / 60.0
        self.level = per_minute
        self.updated = now

    def reserve(self, amount: float, now: float) -> float:
        """Take ``amount`` (going negative if need be); seconds until it is covered."""
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        self.level -= min(amount, self.capacity)  # one huge call must not block forever
        return 0.0 if self.level >= 0 else -self.level / self.rate

    def charge(self, amount: float, now: float) -> None:
        self.reserve(amount, now)


@dataclass
class RateLimit:
    """Limits for one client. ``None`` leaves that dimension unlimited."""

    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[None]] = field(default=async_sleep, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _requests: _Bucket | None = field(default=None, init=False, repr=False)
    _tokens: _Bucket | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"RateLimit.{name} must be positive, got {value!r}")
        now = self.clock()
        if self.requests_per_minute:
            self._requests = _Bucket(self.requests_per_minute, now)
        if self.tokens_per_minute:
            self._tokens = _Bucket(self.tokens_per_minute, now)

    def reserve(self, prompt_tokens: int) -> float:
        """Reserve one request and ``prompt_tokens``; the seconds to wait before sending."""
        with self._lock:
            now = self.clock()
            wait = 0.0
            if self._requests is not None:
                wait = max(wait, self._requests.reserve(1, now))
            if self._tokens is not None:
                wait = max(wait, self._tokens.reserve(prompt_tokens, now))
            return wait

    def charge(self, completion_tokens: int) -> None:
        """Count the tokens of a reply against the tokens-per-minute budget."""
        if self._tokens is not None and completion_tokens:
            with self._lock:
                self._tokens.charge(completion_tokens, self.clock())
