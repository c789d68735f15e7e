"""The in-memory store of /v1/responses: bounded in entries and bytes, with an expiry."""

from __future__ import annotations

import pytest

from llmkit.server import ResponseStore
from llmkit.server._responses_store import StoredResponse
from llmkit.types import Message


def entry(rid: str, text: str = "x") -> StoredResponse:
    return StoredResponse(
        response={"id": rid, "output": text}, input_items=[], conversation=[Message.user(text)]
    )


def test_entries_are_bounded_least_recently_used_first() -> None:
    store = ResponseStore(max_entries=2)
    store.put(entry("a"))
    store.put(entry("b"))
    assert store.get("a") is not None  # a is now the most recently used
    store.put(entry("c"))
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    assert len(store) == 2


def test_bytes_are_bounded() -> None:
    store = ResponseStore(max_bytes=600)
    store.put(entry("a", "x" * 150))
    store.put(entry("b", "y" * 150))
    assert store.get("a") is None and store.get("b") is not None
    assert store.bytes <= 600
    assert not store.put(entry("huge", "z" * 1000))  # alone over the limit: not kept
    assert store.get("huge") is None and store.get("b") is not None


def test_entries_expire() -> None:
    now = [0.0]
    store = ResponseStore(ttl=10, clock=lambda: now[0])
    store.put(entry("a"))
    now[0] = 9.0
    assert store.get("a") is not None
    now[0] = 10.5
    assert store.get("a") is None and len(store) == 0 and store.bytes == 0


def test_delete() -> None:
    store = ResponseStore()
    store.put(entry("a"))
    assert store.delete("a") and not store.delete("a") and store.bytes == 0


@pytest.mark.parametrize("bad", [{"max_entries": 0}, {"max_bytes": 0}, {"ttl": 0}])
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ResponseStore(**bad)  # type: ignore[arg-type]
