"""Time budgets for a call: connect, first token, idle gap between stream chunks, total."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from .errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT", "Timeout", "TimeoutInput"]


@dataclass(frozen=True)
class Timeout:
    """Per-phase time budgets, in seconds.

    Args:
        connect: to open a connection (HTTP backends) or load nothing (local ones).
        first_token: from sending the request until a stream's first event arrives; for a
            non-streamed call, the longest the server may stay silent while the answer is
            read.
        idle: the longest gap allowed between two events of a stream (from asking for the
            next one); a stalled stream fails with :class:`llmkit.errors.TimeoutError` after it.
        total: the whole call, retries and fallbacks included.

    A plain number passed where a timeout is expected bounds every phase: ``timeout=5``
    means ``Timeout(connect=5, first_token=5, idle=5, total=5)``. There is no infinite
    default anywhere; pass ``math.inf`` explicitly to disable a phase.
    """

    connect: float = 10.0
    first_token: float = 120.0
    idle: float = 60.0
    total: float = 600.0

    def __post_init__(self) -> None:
        for name in ("connect", "first_token", "idle", "total"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or value <= 0
                or math.isnan(value)
            ):
                raise ConfigError(
                    f"Timeout.{name} must be a positive number of seconds, got {value!r}"
                )

    @classmethod
    def coerce(cls, value: Any) -> Timeout:
        """Accept a :class:`Timeout`, a number of seconds, or a mapping of phase → seconds."""
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
            return cls(connect=v, first_token=v, idle=v, total=v)
        if isinstance(value, dict):
            unknown = set(value) - {"connect", "first_token", "idle", "total"}
            if unknown:
                raise ConfigError(
                    f"unknown timeout phase(s) {sorted(unknown)}; allowed: connect, first_token, idle, total"
                )
            return cls(**value)
        raise ConfigError(
            f"timeout must be a number of seconds or llmkit.Timeout(...), got {type(value).__name__} {value!r}"
        )

    @property
    def read(self) -> float:
        """The per-read budget for an HTTP transport: the larger of first-token and idle."""
        return max(self.first_token, self.idle)


TimeoutInput = Union[Timeout, float, int, dict[str, float]]

DEFAULT_TIMEOUT = Timeout()
