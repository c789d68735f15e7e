"""Server-sent events: the framing, and a response that stops its generation when it ends.

:class:`EventStreamResponse` is Starlette's ``StreamingResponse`` (which sends the events
and, under ASGI 2.3 servers such as uvicorn, cancels the sending when the client
disconnects) plus one guarantee: its ``on_close`` callback runs, shielded from
cancellation, however the response ends -- finished, client disconnected, server shutting
down, or never started. That callback closes the :class:`~llmkit.AsyncStream` (which closes
the backend stream and so stops a local generation or releases an upstream connection) and
gives the generation slot back.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["DONE", "EventStreamResponse", "sse_event"]

DONE = b"data: [DONE]\n\n"

_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

# One encoder for every event: json.dumps(data, separators=...) builds a new JSONEncoder on
# each call, which cost more than a chunk's own encoding.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def sse_event(data: dict[str, Any]) -> bytes:
    """One ``data: {json}`` event."""
    return f"data: {_encode(data)}\n\n".encode()


class EventStreamResponse(StreamingResponse):
    """Streams ``events`` (already framed bytes) as ``text/event-stream``; then, always,
    closes them and awaits ``on_close(disconnected)``."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        on_close: Callable[[bool], Awaitable[None]],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(events, headers={**_HEADERS, **(headers or {})})
        self._events = events
        self._on_close = on_close
        # Set once the last event went out: a disconnect after it is the normal end.
        self._finished = False

    async def stream_response(self, send: Send) -> None:
        # Starlette's loop, minus its per-chunk str/bytes check (these events are always
        # bytes: it measurably slowed a 20-chunk stream), and marking the end.
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async for chunk in self._events:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self._finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        disconnected = False
        try:
            await super().__call__(scope, receive, send)
            # Returning early without an error: the disconnect listener ended the response.
            disconnected = not self._finished
        except ClientDisconnect:
            disconnected = True  # an ASGI 2.4 server raised OSError on a send
        finally:
            # Shielded: a cancelled response (shutdown) must still stop its generation.
            with anyio.CancelScope(shield=True):
                aclose = getattr(self._events, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except RuntimeError:
                        pass  # still running after a cancellation: the loop finalises it
                await self._on_close(disconnected)
