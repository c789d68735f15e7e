"""I/O-free incremental decoders for Server-Sent Events and newline-delimited JSON.

Both take bytes in whatever pieces the network delivers (a line may be split anywhere, even
inside a multi-byte character) and give back complete items. They do no I/O, so the sync and
async shells of every backend share them, and tests can feed them byte by byte.
"""

from __future__ import annotations

import codecs
import json
from typing import Any, NamedTuple

from ..errors import ProtocolError

__all__ = ["NDJSONDecoder", "SSEDecoder", "ServerSentEvent"]


class ServerSentEvent(NamedTuple):
    """One dispatched SSE event (https://html.spec.whatwg.org/multipage/server-sent-events.html).

    A named tuple: immutable, and cheap to build once per token."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self, *, backend: str | None = None) -> Any:
        try:
            return json.loads(self.data)
        except json.JSONDecodeError:
            raise ProtocolError(
                f"malformed JSON in server-sent event: {_trim(self.data)!r}", backend=backend
            ) from None


def _trim(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _LineSplitter:
    """Bytes in, complete lines out; CR, LF and CRLF all end a line (a CRLF split across
    two pieces is one line end)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = False  # the decoder holds the start of a character
        self._buffer = ""
        self._pending_cr = False
        self._at_start = True

    def feed(self, data: bytes) -> list[str]:
        if self._partial:
            text = self._decode(data)
        else:
            try:  # the usual piece: whole characters, decoded without the incremental state
                text = data.decode()
            except UnicodeDecodeError:  # a character split across pieces, or invalid bytes
                text = self._decode(data)
        if not text:
            return []
        if self._at_start:
            self._at_start = False
            if text.startswith("\ufeff"):  # a UTF-8 byte-order mark is not part of the stream
                text = text[1:]
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        buffer = self._buffer + text
        # Only CR, LF and CRLF end a line. str.splitlines() would also split on U+2028, U+0085,
        # form feeds, ... which JSON allows unescaped inside strings.
        if "\r" in buffer:
            self._pending_cr = buffer.endswith("\r")
            buffer = buffer.replace("\r\n", "\n").replace("\r", "\n")
        lines = buffer.split("\n")
        self._buffer = lines.pop()
        return lines

    def _decode(self, data: bytes) -> str:
        text = self._decoder.decode(data)
        self._partial = bool(self._decoder.getstate()[0])
        return text

    def flush(self) -> list[str]:
        rest = self._buffer + self._decoder.decode(b"", final=True)
        self._buffer = ""
        self._pending_cr = False
        return [rest] if rest else []


class SSEDecoder:
    """Incremental SSE decoder: ``feed(bytes) -> [ServerSentEvent]``, then ``flush()`` at EOF."""

    def __init__(self) -> None:
        self._lines = _LineSplitter()
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        for line in self._lines.feed(data):
            # The two lines of every token event, inlined (same rules as in _line).
            if line.startswith("data: "):
                self._data.append(line[6:])
                continue
            if line.startswith("data:"):
                self._data.append(line[5:])
                continue
            if not line and self._data:
                events.append(
                    ServerSentEvent(
                        "\n".join(self._data), self._event or "message", self._id, self._retry
                    )
                )
                self._data, self._event, self._retry = [], None, None
                continue
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def flush(self) -> list[ServerSentEvent]:
        """Dispatch what is left at end of input (servers that end without a blank line)."""
        events: list[ServerSentEvent] = []
        for line in self._lines.flush():
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._line("")
        if event is not None:
            events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                # The spec dispatches nothing for a block without data (e.g. "event: ping"),
                # and resets the event type.
                self._event, self._retry = None, None
                return None
            event = ServerSentEvent(
                data="\n".join(self._data),
                event=self._event or "message",
                id=self._id,
                retry=self._retry,
            )
            self._data, self._event, self._retry = [], None, None
            return event
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        # other field names are ignored, as the spec says
        return None


class NDJSONDecoder:
    """Incremental newline-delimited JSON decoder (Ollama's native streaming format)."""

    def __init__(self, *, backend: str | None = None) -> None:
        self._lines = _LineSplitter()
        self._backend = backend

    def feed(self, data: bytes) -> list[Any]:
        return [self._parse(line) for line in self._lines.feed(data) if line.strip()]

    def flush(self) -> list[Any]:
        return [self._parse(line) for line in self._lines.flush() if line.strip()]

    def _parse(self, line: str) -> Any:
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise ProtocolError(
                f"malformed JSON line in NDJSON stream: {_trim(line.strip())!r}",
                backend=self._backend,
            ) from None
