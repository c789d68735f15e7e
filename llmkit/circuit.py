"""A circuit breaker per backend: stop sending to a backend that keeps failing.

After ``failure_threshold`` consecutive retryable failures the circuit *opens*: calls skip
that backend (falling back at once, or failing fast with a retryable ``ServerError``) for
``cooldown`` seconds. Then one probe is let through (*half-open*): success closes the
circuit, failure opens it again. Non-retryable errors (a 400, a bad key) say nothing about
the backend's health and do not count.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["CircuitBreaker"]


@dataclass
class CircuitBreaker:
    """Per-backend breaker settings and state (the client copies it for each backend)."""

    failure_threshold: int = 5
    cooldown: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    _opened_at: float | None = field(default=None, init=False, repr=False)
    _probing: bool = field(default=False, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        from .errors import ConfigError

        if self.failure_threshold < 1 or self.cooldown < 0:
            raise ConfigError(
                f"CircuitBreaker needs failure_threshold >= 1 and cooldown >= 0, got "
                f"{self.failure_threshold} and {self.cooldown}"
            )

    def fresh(self) -> CircuitBreaker:
        """A closed breaker with the same settings."""
        return CircuitBreaker(self.failure_threshold, self.cooldown, self.clock)

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self.clock() - self._opened_at < self.cooldown:
                return "open"
            return "half-open"

    def allow(self) -> bool:
        """Whether a request may go to the backend now (claims the probe when half-open)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self.clock() - self._opened_at < self.cooldown or self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.failure_threshold:
                self._opened_at = self.clock()
            self._probing = False
