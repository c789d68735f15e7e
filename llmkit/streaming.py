"""Stream events, I/O-free: accumulation into a response, and OpenAI chunks out of events.

:class:`StreamAccumulator` turns a sequence of events into the same
:class:`~llmkit.types.ChatResponse` a non-streamed call returns; the client's stream objects
(:class:`~llmkit.Stream` and :class:`~llmkit.AsyncStream`, in :mod:`llmkit._client.streams`)
feed it as events pass through to the caller, so ``stream.response`` is always the
accumulation of exactly what the caller saw. :func:`to_openai_chunk`,
:func:`events_to_openai_chunks` and :func:`with_request_id` go the other way, from events to
OpenAI ``chat.completion.chunk`` objects (for ``llmkit serve``). Decoding a byte stream
(SSE, NDJSON) into events is the backends' job, over :mod:`llmkit._http.decoders`.
"""

from __future__ import annotations

import time
from typing import Any

from .types import (
    ChatResponse,
    FinishEvent,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
    new_response_id,
)

__all__ = ["StreamAccumulator", "events_to_openai_chunks", "to_openai_chunk", "with_request_id"]


class StreamAccumulator:
    """Collects stream events into a :class:`ChatResponse`.

    Text deltas are concatenated, and so are reasoning deltas; tool-call deltas are grouped by ``index`` (the first delta
    of a call brings ``id`` and ``name``, later ones append argument fragments); the last
    usage event wins; the finish event gives the finish reason, id, model and request id.
    """

    def __init__(self, *, model: str = "", backend: str = "") -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.id: str | None = None
        self.request_id: str | None = None
        self.provider_data: dict[str, Any] | None = None
        self.model = model
        self.backend = backend

    def add(self, event: Any) -> None:
        kind = event.type
        if kind == "text":
            self._text.append(event.delta)
        elif kind == "reasoning":
            self._reasoning.append(event.reasoning)
        elif kind == "tool_call":
            call = self._calls.setdefault(event.index, {"id": None, "name": None, "arguments": []})
            if event.id:
                call["id"] = event.id
            if event.name and not call["name"]:
                # OpenAI sends the name once; servers that repeat it must not double it.
                call["name"] = event.name
            if event.arguments:
                call["arguments"].append(event.arguments)
        elif kind == "usage":
            self.usage = event.usage
        elif kind == "finish":
            self.finish_reason = event.finish_reason
            if event.id:
                self.id = event.id
            if event.model:
                self.model = event.model
            if event.request_id:
                self.request_id = event.request_id
            if event.provider_data:
                self.provider_data = event.provider_data

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str | None:
        """The reasoning so far (``None`` when no reasoning arrived)."""
        return "".join(self._reasoning) or None

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=call["id"] or f"call_{index}",
                name=call["name"] or "",
                arguments="".join(call["arguments"]) or "{}",
            )
            for index, call in sorted(self._calls.items())
        ]

    def response(self, *, prompt_text: str = "") -> ChatResponse:
        """The accumulated response; usage is estimated (and flagged) if none arrived."""
        calls = self.tool_calls()
        text = self.text
        message = Message(
            role="assistant",
            content=text if (text or not calls) else None,
            tool_calls=calls or None,
            reasoning=self.reasoning,
            provider_data=self.provider_data,
        )
        usage = self.usage or Usage.estimate(
            prompt_text, (self.reasoning or "") + text + "".join(c.arguments for c in calls)
        )
        finish = self.finish_reason or ("tool_calls" if calls else "stop")
        return ChatResponse(
            message=message,
            finish_reason=finish,
            usage=usage,
            model=self.model,
            backend=self.backend,
            id=self.id or new_response_id(),
            request_id=self.request_id,
        )


def with_request_id(events: list[StreamEvent], request_id: str | None) -> list[StreamEvent]:
    """``events`` with ``request_id`` set on their :class:`FinishEvent`.

    HTTP backends read the provider's request id from the response headers when a stream
    opens and hand it to the client on the closing event, which stream parsers (that never
    see headers) build.
    """
    if request_id is not None:
        for event in events:
            if isinstance(event, FinishEvent):
                event.request_id = request_id
    return events


def to_openai_chunk(
    event: Any, *, id: str, model: str, created: int | None = None, first: bool = False
) -> dict[str, Any]:
    """One event as an OpenAI ``chat.completion.chunk`` dict."""
    created = int(time.time()) if created is None else created
    base: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
    }
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    finish_reason = None
    if isinstance(event, TextDelta):
        delta["content"] = event.delta
    elif isinstance(event, ReasoningDelta):
        # The field DeepSeek, vLLM and llama.cpp stream reasoning in.
        delta["reasoning_content"] = event.reasoning
    elif isinstance(event, ToolCallDelta):
        call: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
        if event.id:
            call["id"] = event.id
            call["type"] = "function"
        if event.name:
            call["function"]["name"] = event.name
        delta["tool_calls"] = [call]
    elif isinstance(event, UsageEvent):
        base["choices"] = []
        base["usage"] = event.usage.to_openai()
        return base
    elif isinstance(event, FinishEvent):
        finish_reason = event.finish_reason
    base["choices"] = [
        {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    ]
    return base


def events_to_openai_chunks(
    events: list[Any],
    *,
    id: str,
    model: str,
    created: int | None = None,
    include_usage: bool = True,
) -> list[dict[str, Any]]:
    """A whole event sequence as chunks, in the order OpenAI sends them (usage last)."""
    chunks = []
    usage_events = []
    for i, event in enumerate(events):
        if isinstance(event, UsageEvent):
            usage_events.append(event)
            continue
        chunks.append(to_openai_chunk(event, id=id, model=model, created=created, first=i == 0))
    if include_usage:
        chunks.extend(to_openai_chunk(e, id=id, model=model, created=created) for e in usage_events)
    return chunks
