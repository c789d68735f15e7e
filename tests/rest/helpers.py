"""Helpers for the REST backend tests: byte streams for respx, request builders, and one
driver that runs each scenario through the sync and the async path of the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

from llmkit.backends.rest import RestBackend
from llmkit.timeouts import Timeout
from llmkit.types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    GenerationParams,
    normalize_messages,
)

FAKE_KEY = "sk-test-FAKEKEY-0123456789abcdef"


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in the given pieces, optionally failing before piece
    ``fail_at`` with ``error`` (a dropped connection)."""

    def __init__(
        self,
        pieces: Sequence[bytes],
        *,
        error: Exception | None = None,
        fail_at: int | None = None,
    ) -> None:
        self.pieces = list(pieces)
        self.error = error
        self.fail_at = len(self.pieces) if fail_at is None and error else fail_at
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for i, piece in enumerate(self.pieces):
            if self.error is not None and i == self.fail_at:
                raise self.error
            yield piece
        if self.error is not None and self.fail_at == len(self.pieces):
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def split_at(payload: bytes, position: int) -> list[bytes]:
    return [payload[:position], payload[position:]]


def streamed(
    pieces: Sequence[bytes] | bytes,
    *,
    status: int = 200,
    content_type: str = "text/event-stream",
    error: Exception | None = None,
    fail_at: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(pieces, bytes):
        pieces = [pieces]
    return httpx.Response(
        status,
        headers={"content-type": content_type, **(headers or {})},
        stream=Pieces(pieces, error=error, fail_at=fail_at),
    )


def chat_request(
    messages: Any = "Hi",
    *,
    model: str = "my-model",
    extra: dict[str, Any] | None = None,
    timeout: Timeout | None = None,
    deadline: float | None = None,
    **params: Any,
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=normalize_messages(messages),
        params=GenerationParams(**params),
        extra=extra or {},
        timeout=timeout or Timeout(),
        deadline=deadline,
    )


def completion_request(
    prompt: str = "Once upon",
    *,
    model: str = "my-model",
    extra: dict[str, Any] | None = None,
    **params: Any,
) -> CompletionRequest:
    return CompletionRequest(
        model=model, prompt=prompt, params=GenerationParams(**params), extra=extra or {}
    )


class Mode:
    """Runs a backend operation through the sync or the async path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    async def chat(self, backend: RestBackend, request: ChatRequest) -> ChatResponse:
        if self.name == "sync":
            return backend.chat(request)
        return await backend.achat(request)

    async def complete(self, backend: RestBackend, request: CompletionRequest) -> ChatResponse:
        if self.name == "sync":
            return backend.complete(request)
        return await backend.acomplete(request)

    async def stream(
        self,
        backend: RestBackend,
        request: ChatRequest | CompletionRequest,
        *,
        limit: int | None = None,
    ) -> list[Any]:
        """The events of a stream (all, or the first ``limit``; the stream is then closed);
        a :class:`CompletionRequest` goes to ``stream_complete`` / ``astream_complete``."""
        events: list[Any] = []
        if self.name == "sync":
            if isinstance(request, CompletionRequest):
                gen = backend.stream_complete(request)
            else:
                gen = backend.stream(request)
            try:
                for event in gen:
                    events.append(event)
                    if limit is not None and len(events) >= limit:
                        break
            finally:
                gen.close()  # type: ignore[attr-defined]
            return events
        if isinstance(request, CompletionRequest):
            agen = backend.astream_complete(request)
        else:
            agen = backend.astream(request)
        try:
            async for event in agen:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    break
        finally:
            await agen.aclose()  # type: ignore[attr-defined]
        return events

    async def health(self, backend: RestBackend) -> list[Any]:
        if self.name == "sync":
            return backend.health(timeout=2.0)
        return await backend.ahealth(timeout=2.0)


def texts(events: Sequence[Any]) -> str:
    return "".join(e.text for e in events)


def kinds(events: Sequence[Any]) -> list[str]:
    return [e.type for e in events]
