"""The in-memory store of ``/v1/responses`` (``store: true``): bounded and expiring.

A stored entry is what later requests need: the response object (``GET``), its input items
(``GET .../input_items``) and the conversation so far as llmkit messages (what
``previous_response_id`` continues). The store holds at most ``max_entries`` entries and
``max_bytes`` of their JSON; the least recently used entries go first, and an entry older
than ``ttl`` seconds is gone (OpenAI keeps responses for 30 days; a local server's memory
is the scarcer resource, so the defaults are an hour and 64 MiB).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..types import Message

__all__ = ["ResponseStore", "StoredResponse"]


@dataclass
class StoredResponse:
    """One stored response and what continuing it needs."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    conversation: list[Message]
    """The messages of the whole conversation up to and including this response's output
    (instructions excluded: as on OpenAI, they do not carry over)."""
    size: int = 0
    expires: float = field(default=0.0, repr=False)


class ResponseStore:
    """An LRU map of response id → :class:`StoredResponse`, bounded in entries and bytes,
    with a time-to-live. Safe to share between threads."""

    def __init__(
        self,
        *,
        max_entries: int = 1000,
        max_bytes: int = 64 * 1024 * 1024,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or ttl <= 0:
            raise ValueError("max_entries, max_bytes and ttl must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, StoredResponse] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    @property
    def bytes(self) -> int:
        """The JSON size of what is stored now."""
        return self._bytes

    def put(self, entry: StoredResponse) -> bool:
        """Store ``entry`` under its response id; ``False`` when it alone is over
        ``max_bytes`` (it is then not kept)."""
        entry.size = _size(entry)
        if entry.size > self.max_bytes:
            return False
        key = str(entry.response["id"])
        with self._lock:
            self._expire()
            self._drop(key)
            entry.expires = self._clock() + self.ttl
            self._entries[key] = entry
            self._bytes += entry.size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
        return True

    def get(self, response_id: str) -> StoredResponse | None:
        """The entry, or ``None`` when unknown, evicted or expired."""
        with self._lock:
            self._expire()
            entry = self._entries.get(response_id)
            if entry is not None:
                self._entries.move_to_end(response_id)  # recently used
            return entry

    def delete(self, response_id: str) -> bool:
        """Remove an entry; whether there was one."""
        with self._lock:
            self._expire()
            return self._drop(response_id)

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        return True

    def _expire(self) -> None:
        now = self._clock()
        # Entries are renewed on write only, so insertion order is not expiry order after a
        # get() moved one to the end; a full scan is cheap at these sizes.
        for key in [k for k, e in self._entries.items() if e.expires <= now]:
            self._drop(key)


def _size(entry: StoredResponse) -> int:
    conversation = [m.model_dump(exclude_none=True) for m in entry.conversation]
    return len(json.dumps([entry.response, entry.input_items, conversation], default=str))
