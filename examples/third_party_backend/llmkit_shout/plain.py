"""The same contract without :class:`~llmkit.backends.base.BaseBackend`: ``whisper`` answers
with the last user message in lower case.

This is the whole required part of the protocol (:class:`llmkit.backends.base.Backend`):
``name``, ``model``, ``capabilities``, ``spec``, ``chat`` / ``achat``, ``stream`` / ``astream``
and ``close`` / ``aclose``. It declares no optional ability: its ``capabilities`` leave
``completion`` and ``embeddings`` off, so the client refuses ``complete()`` and ``embed()``
with ``UnsupportedFeatureError`` before calling it, and it has no ``server_url``, so spans
name no server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

from llmkit import ChatResponse, Message
from llmkit.backends.base import Capabilities
from llmkit.errors import ConfigError
from llmkit.types import ChatRequest, FinishEvent, StreamEvent, TextDelta

__all__ = ["WhisperBackend"]


class WhisperBackend:
    name: ClassVar[str] = "whisper"
    capabilities = Capabilities(streaming=True)

    def __init__(self, model: str, **options: Any) -> None:
        if options:
            raise ConfigError(f"whisper: unknown option(s) {', '.join(map(repr, options))}")
        self.model = model

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.model}"

    def _answer(self, request: ChatRequest) -> str:
        return request.messages[-1].text.lower()

    def chat(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(message=Message.assistant(self._answer(request)), model=self.model)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        return self.chat(request)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        for word in self._answer(request).split():
            yield TextDelta(delta=word + " ")
        yield FinishEvent(finish_reason="stop", model=self.model)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        for event in self.stream(request):
            await asyncio.sleep(0)
            yield event

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass
