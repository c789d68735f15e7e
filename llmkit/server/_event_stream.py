"""A server-sent-events response that stops its generation when the client goes away.

Starlette's ``StreamingResponse`` would do most of this, but this response also guarantees
its ``on_close`` callback runs -- shielded from cancellation -- however the response ends:
finished, client disconnected, server shutting down, or never started. That callback closes
the :class:`~llmkit.AsyncStream` (which closes the backend stream and so stops a local
generation or releases an upstream connection) and gives the generation slot back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = ["DONE", "SSEResponse", "sse_event"]

DONE = b"data: [DONE]\n\n"


def sse_event(data: dict[str, Any]) -> bytes:
    """One ``data: {json}`` event."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class SSEResponse(Response):
    """Streams ``events`` (already framed bytes) as ``text/event-stream``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        on_close: Callable[[bool], Awaitable[None]],
        headers: dict[str, str] | None = None,
    ) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers(
            {"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = finished = False
        try:
            async with anyio.create_task_group() as group:

                async def watch_disconnect() -> None:
                    nonlocal disconnected, finished
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            # After the last chunk the server reports the (then normal) end.
                            disconnected = not finished
                            group.cancel_scope.cancel()
                            return

                group.start_soon(watch_disconnect)
                try:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": self.status_code,
                            "headers": self.raw_headers,
                        }
                    )
                    async for chunk in self.events:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    finished = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:
                    disconnected = True  # ASGI 2.4 servers raise on send after a disconnect
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                aclose = getattr(self.events, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except RuntimeError:
                        pass  # still running after a cancellation: the loop finalises it
                await self.on_close(disconnected)
