"""``api="responses"`` for the ``openai`` and ``azure`` backends (I/O-free parts).

The SDK backends keep their I/O shells (raw and streaming responses, budgets, the one error
mapping); with ``api="responses"`` they build the request with
:func:`~llmkit.backends._responses_wire.responses_body`, read the reply with
:func:`~llmkit.backends._responses_wire.parse_response` and decode the stream with the state
below, which has the same surface as the chat path's stream state.
"""

from __future__ import annotations

import time

from ..errors import ConnectionError, TimeoutError
from ..streaming import with_request_id
from ..types import StreamEvent
from ._responses_wire import ResponsesSSE

__all__ = ["ResponsesStreamState"]


class ResponsesStreamState:
    """SSE bytes of ``POST /responses`` in, llmkit events out; shared by the sync and async
    stream shells of the SDK backends (the twin of their chat-completions state)."""

    __slots__ = ("_stream", "deadline", "request_id")

    def __init__(self, backend: str, model: str, deadline: float | None) -> None:
        self._stream = ResponsesSSE(backend=backend, model=model)
        self.deadline = deadline
        self.request_id: str | None = None

    @property
    def done(self) -> bool:
        """True once the terminal event (``response.completed``/``.incomplete``) arrived."""
        return self._stream.done

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.deadline is not None and time.monotonic() > self.deadline:
            decoder = self._stream.decoder
            raise TimeoutError(
                "total timeout: the stream outlived the call's deadline",
                backend=decoder.backend,
                model=decoder.model,
            )
        return self._stream.feed(data)

    def end(self) -> list[StreamEvent]:
        """The closing events, once the body ended; a body without a terminal event was
        cut off and raises :class:`~llmkit.errors.ConnectionError`."""
        events = [] if self.done else self._stream.flush()
        decoder = self._stream.decoder
        if not decoder.finished:
            raise ConnectionError(
                "the stream ended before the reply was complete (no response.completed)",
                backend=decoder.backend,
                model=decoder.model,
                request_id=self.request_id,
            )
        return events + with_request_id(decoder.finish(), self.request_id)
