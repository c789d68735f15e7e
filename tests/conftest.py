"""Shared fixtures: a driver that runs the same scenario through Client and AsyncClient."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from llmkit import AsyncClient, ChatResponse, Client

# Unexpected skips fail the run; slow tests keep their own time limits (see the module).
pytest_plugins = ["suite_guard"]


class Driver:
    """Runs one client operation in sync or async mode with identical arguments, so every
    behavioural test asserts the same thing of both clients."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def _run(
        self,
        client_kwargs: dict[str, Any],
        sync_op: Callable[[Client], Any],
        async_op: Callable[[AsyncClient], Any],
    ) -> Any:
        if not self.is_async:
            with Client(**client_kwargs) as client:
                return sync_op(client)

        async def go() -> Any:
            async with AsyncClient(**client_kwargs) as client:
                return await async_op(client)

        return asyncio.run(go())

    def chat(self, client_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> ChatResponse:
        return self._run(
            client_kwargs, lambda c: c.chat(*args, **kwargs), lambda c: c.chat(*args, **kwargs)
        )

    def complete(self, client_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> ChatResponse:
        return self._run(
            client_kwargs,
            lambda c: c.complete(*args, **kwargs),
            lambda c: c.complete(*args, **kwargs),
        )

    def run_tools(self, client_kwargs: dict[str, Any], *args: Any, **kwargs: Any) -> ChatResponse:
        return self._run(
            client_kwargs,
            lambda c: c.run_tools(*args, **kwargs),
            lambda c: c.run_tools(*args, **kwargs),
        )

    def stream(
        self,
        client_kwargs: dict[str, Any],
        *args: Any,
        stop_after: int | None = None,
        **kwargs: Any,
    ) -> tuple[list[Any], ChatResponse]:
        """Iterate a stream (optionally leaving after ``stop_after`` events); return the
        events seen and ``stream.response``."""
        return self._stream("stream", client_kwargs, args, stop_after, kwargs)

    def stream_complete(
        self,
        client_kwargs: dict[str, Any],
        *args: Any,
        stop_after: int | None = None,
        **kwargs: Any,
    ) -> tuple[list[Any], ChatResponse]:
        """:meth:`stream` for ``stream_complete()`` (a raw prompt)."""
        return self._stream("stream_complete", client_kwargs, args, stop_after, kwargs)

    def _stream(
        self,
        method: str,
        client_kwargs: dict[str, Any],
        args: tuple[Any, ...],
        stop_after: int | None,
        kwargs: dict[str, Any],
    ) -> tuple[list[Any], ChatResponse]:
        def sync_op(client: Client) -> Any:
            events = []
            with getattr(client, method)(*args, **kwargs) as stream:
                for event in stream:
                    events.append(event)
                    if stop_after is not None and len(events) >= stop_after:
                        break
            return events, stream.response

        async def async_op(client: AsyncClient) -> Any:
            events = []
            async with getattr(client, method)(*args, **kwargs) as stream:
                async for event in stream:
                    events.append(event)
                    if stop_after is not None and len(events) >= stop_after:
                        break
            return events, stream.response

        return self._run(client_kwargs, sync_op, async_op)  # type: ignore[no-any-return]


@pytest.fixture(params=["sync", "async"])
def driver(request: pytest.FixtureRequest) -> Driver:
    return Driver(request.param)
