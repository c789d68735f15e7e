"""Where the REST backend connects: replica URLs, balancing, cool-downs (I/O-free).

A :class:`ReplicaSet` holds one :class:`Replica` per ``base_url``. For every call the backend
asks it for a replica (:meth:`ReplicaSet.acquire`), reports how the attempt went
(:meth:`ReplicaSet.failed` / :meth:`ReplicaSet.succeeded`) and gives the replica back
(:meth:`ReplicaSet.release`). Nothing here does I/O, so the sync and async shells share it,
and tests drive it with a fake clock.

URL rule (documented for users in :class:`~llmkit.backends.rest.RestSettings`): a
``base_url`` whose last path segment is a version (``v1``, ``v2``, ``v1beta``) is the
OpenAI-compatible API base and the server root is the URL without that segment; any other
``base_url`` is the server root and the API base is ``<root>/v1``. So
``http://host:8000`` and ``http://host:8000/v1`` reach the same endpoints.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

__all__ = ["Balance", "Replica", "ReplicaHealth", "ReplicaSet", "split_base_url"]

Balance = Literal["round_robin", "least_in_flight"]

_VERSION_SEGMENT = re.compile(r"^v\d+[a-z0-9]*$")


def split_base_url(base_url: str) -> tuple[str, str]:
    """``(server root, OpenAI API base)`` for a user-supplied ``base_url`` (see module doc)."""
    url = base_url.strip().rstrip("/")
    head, _, last = url.rpartition("/")
    if "://" in head and _VERSION_SEGMENT.match(last):
        return head, url
    return url, url + "/v1"


def _display(url: str) -> str:
    """The URL without credentials, for logs, health reports and error messages."""
    try:
        parsed = httpx.URL(url)
    except Exception:  # pragma: no cover - validated earlier
        return url
    if parsed.userinfo:
        return str(parsed.copy_with(username=None, password=None))
    return url


@dataclass(eq=False)
class Replica:
    """One server behind the backend and its live state."""

    root: str
    api: str
    in_flight: int = 0
    cooldown_until: float = 0.0
    failures: int = 0
    display: str = field(default="")

    @classmethod
    def from_url(cls, base_url: str) -> Replica:
        root, api = split_base_url(base_url)
        return cls(root=root, api=api, display=_display(root))


@dataclass(frozen=True)
class ReplicaHealth:
    """The result of probing one replica with :meth:`RestBackend.health`.

    Attributes:
        url: the replica's server root (credentials removed).
        healthy: whether a probe answered 2xx.
        endpoint: the path that decided (``/health`` or the models list), when one answered.
        status_code: that probe's HTTP status, when there was one.
        latency_s: how long the deciding probe took.
        error: why the replica is unhealthy (connection error, status), else ``None``.
        cooling_down: whether calls currently skip this replica after a failure.
        in_flight: requests the backend has open on this replica right now.
    """

    url: str
    healthy: bool
    endpoint: str | None = None
    status_code: int | None = None
    latency_s: float | None = None
    error: str | None = None
    cooling_down: bool = False
    in_flight: int = 0


class ReplicaSet:
    """Balancing and cool-down state for the replicas of one backend (thread-safe).

    ``balance="round_robin"`` rotates through the replicas; ``"least_in_flight"`` picks the
    replica with the fewest open requests (ties broken by rotation, so an idle cluster still
    spreads sequential calls). A replica that failed is skipped for ``cooldown`` seconds; when
    every candidate is cooling down, the one that recovers first is tried anyway: trying a
    maybe-broken server beats failing without trying.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        balance: Balance = "round_robin",
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = [Replica.from_url(u) for u in urls]
        self.balance = balance
        self.cooldown = cooldown
        self.clock = clock
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.replicas)

    def acquire(self, exclude: Sequence[Replica] = ()) -> Replica | None:
        """Pick a replica not in ``exclude`` and count a request on it (``None``: none left)."""
        with self._lock:
            n = len(self.replicas)
            if n == 1:  # the common deployment: nothing to choose
                only = self.replicas[0]
                if only in exclude:
                    return None
                only.in_flight += 1
                return only
            start = self._next
            ordered = [self.replicas[(start + i) % n] for i in range(n)]
            candidates = [r for r in ordered if r not in exclude]
            if not candidates:
                return None
            now = self.clock()
            ready = [r for r in candidates if r.cooldown_until <= now]
            if not ready:
                chosen = min(candidates, key=lambda r: r.cooldown_until)
            elif self.balance == "least_in_flight":
                # min() keeps the first of equals: the rotation order breaks ties.
                chosen = min(ready, key=lambda r: r.in_flight)
            else:
                chosen = ready[0]
            self._next = (self.replicas.index(chosen) + 1) % n
            chosen.in_flight += 1
            return chosen

    def release(self, replica: Replica) -> None:
        """The request on ``replica`` is over (whatever its outcome)."""
        with self._lock:
            replica.in_flight = max(0, replica.in_flight - 1)

    def failed(self, replica: Replica) -> None:
        """``replica`` failed with a connection error or a 5xx: skip it for the cool-down."""
        with self._lock:
            replica.failures += 1
            replica.cooldown_until = self.clock() + self.cooldown

    def succeeded(self, replica: Replica) -> None:
        """``replica`` answered: it is back in rotation at once."""
        if replica.failures or replica.cooldown_until:
            with self._lock:
                replica.failures = 0
                replica.cooldown_until = 0.0

    def cooling_down(self, replica: Replica) -> bool:
        return replica.cooldown_until > self.clock()
