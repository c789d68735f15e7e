"""A hook that raises (issue 15, item 1: "hooks that raise").

``Hooks`` are documented as "must not raise"; one that does is the application's own bug, so
its exception reaches the caller unchanged (wrapping it would hide the application's own
exception type). What must hold is that the client survives it: the request slot is
released and the next call works."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmkit import AsyncClient, Client, Hooks
from llmkit.testing import FakeBackend


class HookBug(Exception):
    pass


class RaisesOnce:
    """A hook with a bug that shows once (then the application "fixed" it)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: Any) -> None:
        self.calls += 1
        if self.calls == 1:
            raise HookBug("the application's hook failed")


@pytest.mark.parametrize("hook", ["on_request", "on_response"])
def test_a_raising_hook_propagates_and_frees_the_slot(hook: str) -> None:
    fake = FakeBackend(["one", "two"])
    hooks = Hooks(**{hook: RaisesOnce()})
    with Client(backend=fake, hooks=hooks, max_concurrency=1) as client:
        with pytest.raises(HookBug):
            client.chat("q")
        assert client.chat("q").text in ("one", "two")  # the slot was released


@pytest.mark.parametrize("hook", ["on_request", "on_response"])
def test_a_raising_hook_propagates_and_frees_the_async_slot(hook: str) -> None:
    async def go() -> str:
        fake = FakeBackend(["one", "two"])
        async with AsyncClient(
            backend=fake, hooks=Hooks(**{hook: RaisesOnce()}), max_concurrency=1
        ) as client:
            with pytest.raises(HookBug):
                await client.chat("q")
            response = await asyncio.wait_for(client.chat("q"), 5)
            return response.text

    assert asyncio.run(go()) in ("one", "two")
