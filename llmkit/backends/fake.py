"""Scripted backends for tests: :class:`FakeBackend` and :class:`FunctionBackend`.

Both are real backends (they implement the whole protocol, sync and async, streaming
included), so an application under test runs through the real client, retry, fallback,
streaming and structured-output code; only the model is replaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from ..errors import ConfigError, LLMError, TimeoutError, UnsupportedFeatureError
from ..types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    FinishEvent,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
    estimate_tokens,
)
from .base import BaseBackend, Capabilities

__all__ = ["FakeBackend", "FunctionBackend", "Reply"]


@dataclass
class Reply:
    """One scripted answer.

    Args:
        text: the assistant's text.
        tool_calls: tool calls to return (``ToolCall`` objects or OpenAI-shaped dicts).
        chunks: how to split ``text`` into stream deltas (default: word by word).
        finish_reason: default ``"stop"`` (``"tool_calls"`` when there are tool calls).
        usage: token counts to report; ``None`` reports none (the client estimates).
        delay: seconds to wait before answering (streams: before the first event).
        chunk_delay: seconds to wait between stream events (to simulate a stalled stream).
        fail_after: for streams, raise this error after that many events.
        error: the error raised by ``fail_after``.
        reasoning: the model's reasoning, streamed before the text (word by word).
    """

    text: str = ""
    tool_calls: Sequence[Any] = ()
    chunks: Sequence[str] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    fail_after: int | None = None
    error: LLMError | None = None
    reasoning: str | None = None
    _calls: list[ToolCall] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._calls = [
            tc if isinstance(tc, ToolCall) else ToolCall.model_validate(tc)
            for tc in self.tool_calls
        ]

    def response(self, model: str, backend: str) -> ChatResponse:
        return ChatResponse(
            message=Message(
                role="assistant",
                content=self.text if (self.text or not self._calls) else None,
                tool_calls=self._calls or None,
                reasoning=self.reasoning or None,
            ),
            finish_reason=self.finish_reason or ("tool_calls" if self._calls else "stop"),
            usage=self.usage or Usage(estimated=True),
            model=model,
            backend=backend,
        )

    def events(self, model: str) -> list[StreamEvent]:
        pieces = list(self.chunks) if self.chunks is not None else _words(self.text)
        events: list[StreamEvent] = [
            ReasoningDelta(reasoning=p) for p in _words(self.reasoning or "")
        ]
        events += [TextDelta(delta=p) for p in pieces if p]
        for index, call in enumerate(self._calls):
            # Arguments arrive in fragments, as real providers send them.
            args = call.arguments
            half = len(args) // 2
            events.append(
                ToolCallDelta(index=index, id=call.id, name=call.name, arguments=args[:half])
            )
            if args[half:]:
                events.append(ToolCallDelta(index=index, arguments=args[half:]))
        if self.usage is not None:
            events.append(UsageEvent(usage=self.usage))
        events.append(
            FinishEvent(
                finish_reason=self.finish_reason or ("tool_calls" if self._calls else "stop"),
                model=model,
            )
        )
        return events


def _words(text: str) -> list[str]:
    out, current = [], ""
    for ch in text:
        current += ch
        if ch == " ":
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


ScriptItem = Union[str, Reply, ChatResponse, LLMError, Callable[[Any], Any]]


class FakeBackend(BaseBackend):
    """A backend that answers from a script and records every request.

    >>> fake = FakeBackend(["Hello!", RateLimitError("slow down", retry_after=1), "Again"])
    >>> client = Client(backend=fake)

    Each call takes the next item: a ``str`` (the reply text), a :class:`Reply` (text, tool
    calls, stream chunks, delays, mid-stream failures), a ``ChatResponse``, an
    :class:`~llmkit.errors.LLMError` instance (raised), or a callable ``request -> item``.
    When the script runs out the last item repeats; with no script the backend echoes the
    last user message. ``requests`` holds every request received, in order.

    ``embed()`` answers deterministic unit vectors of ``embedding_dimensions`` (the same text
    always gets the same vector, different texts different ones), after raising the errors
    of ``embedding_failures`` one per call; ``embed_requests`` records those calls.

    ``reasoning_efforts`` limits the ``reasoning_effort`` values it accepts (default: all),
    so an application's handling of :class:`~llmkit.errors.UnsupportedFeatureError` can be
    tested; a refused request is not recorded and takes no script item.
    """

    name: ClassVar[str] = "fake"
    capabilities = Capabilities(
        streaming=True, tools=True, structured_output=False, completion=True, embeddings=True
    )

    def __init__(
        self,
        replies: Sequence[ScriptItem] | ScriptItem | None = None,
        *,
        model: str = "fake-model",
        capabilities: Capabilities | None = None,
        sleep: Callable[[float], None] = time.sleep,
        embedding_dimensions: int = 8,
        embedding_failures: Sequence[LLMError] = (),
        reasoning_efforts: Sequence[str] | None = None,
    ) -> None:
        super().__init__(model)
        self.embedding_dimensions = embedding_dimensions
        self._embedding_failures = list(embedding_failures)
        self.embed_requests: list[EmbeddingRequest] = []
        self.reasoning_efforts = None if reasoning_efforts is None else frozenset(reasoning_efforts)
        if replies is None:
            self._script: list[ScriptItem] = []
        elif isinstance(replies, (list, tuple)):
            self._script = list(replies)
        else:
            self._script = [replies]  # type: ignore[list-item]
        if capabilities is not None:
            self.capabilities = capabilities
        self._sleep = sleep
        self._lock = threading.Lock()
        self._position = 0
        self.requests: list[ChatRequest | CompletionRequest] = []
        self.closed_streams = 0
        self.closed = False

    def _next(self, request: ChatRequest | CompletionRequest) -> Reply | ChatResponse:
        effort = request.params.effort
        if (
            effort is not None
            and self.reasoning_efforts is not None
            and effort not in self.reasoning_efforts
        ):
            raise UnsupportedFeatureError(
                f"{self.spec}: reasoning_effort={effort!r} is not supported "
                f"(accepted: {', '.join(sorted(self.reasoning_efforts)) or 'none'})"
            )
        with self._lock:
            self.requests.append(request)
            if not self._script:
                item: ScriptItem = _echo(request)
            else:
                item = self._script[min(self._position, len(self._script) - 1)]
                self._position += 1
        if callable(item) and not isinstance(item, (LLMError, Reply, ChatResponse)):
            item = item(request)
        if isinstance(item, LLMError):
            raise item
        if isinstance(item, str):
            return Reply(text=item)
        if isinstance(item, (Reply, ChatResponse)):
            return item
        raise ConfigError(f"FakeBackend cannot use script item {item!r}")

    def _wait(
        self,
        seconds: float,
        request: ChatRequest | CompletionRequest,
        budget: float,
        phase: str = "first-token",
    ) -> None:
        if seconds <= 0:
            return
        if seconds > budget:
            # Simulate a transport's timeout firing: wait out the budget, then fail with the
            # budget named as the real backends name it, so a test can tell which one the
            # client handed down.
            self._sleep(budget)
            what = "no token" if phase == "first-token" else "no new event"
            raise TimeoutError(
                f"{phase} timeout: {what} within {budget:g}s (fake backend stalled)",
                backend=self.name,
                model=self.model,
            )
        self._sleep(seconds)

    def chat(self, request: ChatRequest | CompletionRequest) -> ChatResponse:
        item = self._next(request)
        if isinstance(item, ChatResponse):
            return item.model_copy(deep=True)
        self._wait(item.delay, request, request.timeout.first_token)
        return item.response(self.model, self.spec)

    def complete(self, request: CompletionRequest) -> ChatResponse:
        """The next script item, exactly as :meth:`chat` answers it."""
        return self.chat(request)

    def _events(self, request: ChatRequest | CompletionRequest) -> tuple[Reply, list[StreamEvent]]:
        item = self._next(request)
        if isinstance(item, ChatResponse):
            reply = Reply(
                text=item.text,
                tool_calls=item.tool_calls,
                finish_reason=item.finish_reason,
                usage=None if item.usage.estimated else item.usage,
                reasoning=item.reasoning,
            )
            return reply, reply.events(item.model or self.model)
        return item, item.events(self.model)

    def stream(self, request: ChatRequest | CompletionRequest) -> Iterator[StreamEvent]:
        reply, events = self._events(request)
        try:
            self._wait(reply.delay, request, request.timeout.first_token)
            for index, event in enumerate(events):
                if reply.fail_after is not None and index == reply.fail_after:
                    raise reply.error or LLMError("scripted failure")
                if index:
                    self._wait(reply.chunk_delay, request, request.timeout.idle, "idle")
                yield event
        finally:
            self.closed_streams += 1

    async def achat(self, request: ChatRequest | CompletionRequest) -> ChatResponse:
        item = self._next(request)
        if isinstance(item, ChatResponse):
            return item.model_copy(deep=True)
        if item.delay:
            await asyncio.sleep(item.delay)
        return item.response(self.model, self.spec)

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        return await self.achat(request)

    async def astream(self, request: ChatRequest | CompletionRequest) -> AsyncIterator[StreamEvent]:
        # Real sleeps here: the async client's budgets (asyncio.wait_for) are what is tested.
        reply, events = self._events(request)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            for index, event in enumerate(events):
                if reply.fail_after is not None and index == reply.fail_after:
                    raise reply.error or LLMError("scripted failure")
                if index and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                yield event
        finally:
            self.closed_streams += 1

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """The next script item as a stream, exactly as :meth:`stream` scripts it."""
        return self.stream(request)

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        return self.astream(request)

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        with self._lock:
            self.embed_requests.append(request)
            failure = self._embedding_failures.pop(0) if self._embedding_failures else None
        if failure is not None:
            raise failure
        dimensions = request.dimensions or self.embedding_dimensions
        return EmbeddingResponse(
            vectors=[fake_vector(text, dimensions) for text in request.inputs],
            model=self.model,
            backend=self.spec,
            usage=Usage(prompt_tokens=sum(estimate_tokens(t) for t in request.inputs)),
        )

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        return self.embed(request)

    def close(self) -> None:
        self.closed = True


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on ``text`` (SHA-256 based, so stable across runs)."""
    raw: list[float] = []
    counter = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    values = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _echo(request: ChatRequest | CompletionRequest) -> str:
    if isinstance(request, CompletionRequest):
        return request.prompt
    users = [m for m in request.messages if m.role == "user"]
    return users[-1].text if users else ""


class FunctionBackend(FakeBackend):
    """A backend whose every answer comes from ``function(request)``, which returns any
    script item (a ``str``, :class:`Reply`, ``ChatResponse``, or raises an error)."""

    name: ClassVar[str] = "function"

    def __init__(
        self,
        function: Callable[[ChatRequest | CompletionRequest], Any],
        *,
        model: str = "function-model",
        **kwargs: Any,
    ) -> None:
        super().__init__([function], model=model, **kwargs)


def from_spec(model: str, **options: Any) -> FakeBackend:
    """What ``Client("fake:MODEL", replies=[...])`` builds (no replies: echo)."""
    return FakeBackend(model=model, **options)
