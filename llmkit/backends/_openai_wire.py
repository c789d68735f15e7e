"""The OpenAI chat-completions wire format, I/O-free.

Shared by every backend that talks this format (the ``openai`` SDK backend and the ``rest``
backend's OpenAI-compatible dialect): building request payloads, reading replies, turning
``chat.completion.chunk`` dicts into llmkit stream events (:class:`ChunkDecoder`) and the
bytes of a streamed reply into those events (:class:`StreamDecoder`). Tolerant of the deviations real
servers show (usage on the last content chunk, missing ``[DONE]``, bare-UUID ids, error
objects inside a 200 stream).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .._http.decoders import ServerSentEvent, SSEDecoder
from .._thinking import ThinkTagDecoder, split_think
from ..errors import (
    ConnectionError,
    ProtocolError,
    ProviderError,
    ServerError,
    UnsupportedFeatureError,
    error_from_status,
    redact,
)
from ..types import (
    REASONING_FIELDS,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    FinishEvent,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
    new_response_id,
)

__all__ = [
    "ChunkDecoder",
    "StreamDecoder",
    "ThinkTags",
    "chat_payload",
    "completion_payload",
    "error_in_payload",
    "parse_chat_completion",
    "parse_completion",
    "parse_usage",
    "wire_messages",
]

ThinkTags = Literal["auto", "open", "off"]
"""How ``<think>`` tags in the content are read: ``"auto"`` takes a reply that starts with
``<think>`` as reasoning up to ``</think>``; ``"open"`` starts inside the reasoning (the
server's chat template opened the tag, so the reply only has ``</think>``); ``"off"`` leaves
the content alone."""


def wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The messages as OpenAI message dicts, with reasoning sent back only where providers
    need it.

    An assistant message's reasoning goes back when the message called tools in the current
    turn (after the last user message): DeepSeek's thinking mode requires it there for the
    tool-call exchange to continue, and rejects it (400) on earlier turns; OpenAI itself
    never returns reasoning text, and other compatible servers ignore the field. It travels
    in the field the server sent it in (``reasoning_content`` by default), with OpenRouter's
    ``reasoning_details`` when the reply had them.
    """
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    out = []
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.tool_calls and index > last_user:
            state = (message.provider_data or {}).get("openai") or {}
            field = state.get("reasoning_field")
            item = message.to_openai(
                reasoning_field=field if field in REASONING_FIELDS else "reasoning_content"
            )
            if state.get("reasoning_details"):
                item["reasoning_details"] = state["reasoning_details"]
            out.append(item)
        else:
            out.append(message.to_openai())
    return out


def chat_payload(
    request: ChatRequest, *, stream: bool = False, include_usage: bool = True
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/chat/completions`` for ``request``."""
    payload: dict[str, Any] = {
        "model": request.model,
        "messages": wire_messages(request.messages),
    }
    payload.update(request.params.given())
    return _finish_payload(payload, request.extra, stream, include_usage)


def completion_payload(
    request: CompletionRequest, *, stream: bool = False, include_usage: bool = True
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/completions`` for ``request``."""
    payload: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    given = request.params.given()
    if given.pop("reasoning_effort", None) is not None:
        raise UnsupportedFeatureError(
            "reasoning_effort applies to chat; /v1/completions takes no reasoning setting"
        )
    for unsupported in ("tools", "tool_choice", "response_format"):
        given.pop(unsupported, None)
    payload.update(given)
    return _finish_payload(payload, request.extra, stream, include_usage)


def _finish_payload(
    payload: dict[str, Any], extra: Mapping[str, Any], stream: bool, include_usage: bool
) -> dict[str, Any]:
    if stream:
        payload["stream"] = True
        if include_usage:
            payload["stream_options"] = {"include_usage": True}
    # Pass-through options last: they are the caller's explicit escape hatch.
    payload.update(extra)
    return payload


def parse_usage(data: Any) -> Usage | None:
    """An OpenAI ``usage`` object, reasoning tokens included (``None`` if not one)."""
    return Usage.from_openai(data)


def error_in_payload(
    data: Any,
    *,
    backend: str | None,
    model: str | None,
    secrets: Iterable[str | None] = (),
) -> ProviderError | None:
    """An error object sent where a reply was expected (e.g. inside a 200 stream).

    Provider text is redacted (``secrets`` plus anything shaped like a key) before it goes
    into the error: some servers echo the caller's key back in error messages.
    """
    # Some servers put "error": null on ordinary chunks; only a real error object counts.
    if not isinstance(data, Mapping) or data.get("error") is None or "choices" in data:
        return None
    error = data["error"]
    status = None
    if isinstance(error, Mapping):
        code = error.get("code")
        status = code if isinstance(code, int) else None
        if status is None and isinstance(error.get("status"), int):
            status = error["status"]
    secrets = list(secrets)
    if status is None or status < 400:
        body = json.loads(redact(json.dumps(dict(data), default=str), secrets))
        return ServerError(
            redact(f"error inside the stream: {_message(error)}", secrets),
            backend=backend,
            model=model,
            body=body,
        )
    return error_from_status(status, dict(data), backend=backend, model=model, secrets=secrets)


def _message(error: Any) -> str:
    if isinstance(error, Mapping):
        return str(error.get("message") or error)
    return str(error)


# The message keys of a plain text reply: anything else (tool calls, reasoning fields, ...)
# takes ChatResponse.from_openai's general path.
_PLAIN_KEYS = frozenset(
    ("role", "content", "refusal", "tool_calls", "function_call", "audio", "annotations")
)


def parse_chat_completion(
    data: Any, *, backend: str, think_tags: ThinkTags = "auto"
) -> ChatResponse:
    """A ``chat.completion`` dict as a :class:`ChatResponse` (``ProtocolError`` if malformed).

    Reasoning comes from ``reasoning_content`` or ``reasoning``; without either, from
    ``<think>`` tags in the content (per ``think_tags``)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", backend=backend)
    choices = data.get("choices")
    choice: Any = choices[0] if type(choices) is list and choices else None
    raw: Any = choice.get("message") if type(choice) is dict else None
    if type(raw) is dict and _plain_text(raw, think_tags):
        # The usual reply: the response the general path gives, built directly (this runs
        # once per call, and the general path costs a third of a bare HTTP call's CPU).
        return _response(data, choice, Message(role="assistant", content=raw["content"]), backend)
    response = ChatResponse.from_openai(data, backend=backend)
    message = response.message
    content = message.content
    if message.reasoning is None and think_tags != "off" and isinstance(content, str):
        reasoning, text = split_think(content, inside=think_tags == "open")
        if reasoning is not None or text != message.content:
            message.reasoning = reasoning
            message.content = text if (text or not message.tool_calls) else None
    return response


def parse_completion(data: Any, *, backend: str) -> ChatResponse:
    """A ``text_completion`` dict (``/v1/completions``) as a :class:`ChatResponse`."""
    if not isinstance(data, Mapping) or not data.get("choices"):
        raise ProtocolError("completion reply has no 'choices'", backend=backend)
    choice = data["choices"][0]
    message = Message(role="assistant", content=str(choice.get("text") or ""))
    return _response(data, choice, message, backend)


def _plain_text(raw: dict[str, Any], think_tags: ThinkTags) -> bool:
    """Whether a reply's message is plain assistant text: no tool calls, no reasoning
    fields, no name, and no ``<think>`` tags to look for."""
    content = raw.get("content")
    return (
        type(content) is str
        and raw.get("role", "assistant") == "assistant"
        and not raw.get("tool_calls")
        and _PLAIN_KEYS.issuperset(raw)
        and (think_tags == "off" or (think_tags == "auto" and not content.lstrip().startswith("<")))
    )


def _response(
    data: Mapping[str, Any], choice: Mapping[str, Any], message: Message, backend: str
) -> ChatResponse:
    return ChatResponse(
        message=message,
        finish_reason=choice.get("finish_reason") or "stop",
        usage=parse_usage(data.get("usage")) or Usage(estimated=True),
        model=str(data.get("model") or ""),
        backend=backend,
        id=str(data.get("id") or new_response_id()),
        created=int(data.get("created") or time.time()),
        raw=data,
    )


class ChunkDecoder:
    """Turns ``chat.completion.chunk`` (or streamed ``text_completion``) dicts into events.

    The finish reason is held back and emitted as the final :class:`FinishEvent` by
    :meth:`finish`, after any usage, so every stream ends the same way whatever order the
    server sent them in. Reasoning arrives as ``reasoning_content`` or ``reasoning`` deltas,
    or inline as ``<think>`` tags in the content (read per ``think_tags`` until the server
    sends a reasoning field or the content turns out to be plain text).
    """

    def __init__(
        self, *, backend: str, model: str | None = None, think_tags: ThinkTags = "auto"
    ) -> None:
        self.backend = backend
        self.model = model
        self.id: str | None = None
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._tags: ThinkTagDecoder | None = (
            None if think_tags == "off" else ThinkTagDecoder(inside=think_tags == "open")
        )

    def feed(self, chunk: Any) -> list[StreamEvent]:
        # type() checks first: this runs once per token, and ABC isinstance checks are slow.
        if type(chunk) is not dict and not isinstance(chunk, Mapping):
            raise ProtocolError(
                f"stream chunk is not a JSON object: {str(chunk)[:200]!r}", backend=self.backend
            )
        if chunk.get("error") is not None:
            error = error_in_payload(chunk, backend=self.backend, model=self.model)
            if error is not None:
                raise error
        if self.id is None and chunk.get("id"):
            self.id = str(chunk["id"])
        model = chunk.get("model")
        if model and model != self.model:
            self.model = str(model)
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta is None and "text" in choice:  # streamed /v1/completions
                if choice["text"]:
                    events.append(TextDelta(delta=choice["text"]))
            elif delta:
                # Membership tests first: this runs once per token, most deltas hold none.
                if "reasoning_content" in delta or "reasoning" in delta:
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                    if reasoning:
                        if self._tags is not None:  # the server parses reasoning itself
                            events.extend(self._tags.flush())
                            self._tags = None
                        events.append(ReasoningDelta(reasoning=reasoning))
                content = delta.get("content")
                if content:
                    tags = self._tags
                    if tags is None:
                        events.append(TextDelta(delta=content))
                    else:
                        events.extend(tags.feed(content))
                        if tags.passthrough:
                            self._tags = None
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    events.append(
                        ToolCallDelta(
                            index=call.get("index") or 0,  # some servers omit it or send null
                            id=call.get("id"),
                            name=fn.get("name"),
                            arguments=fn.get("arguments") or "",
                        )
                    )
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        # Usage may come on its own chunk (choices == []) or on the last content chunk.
        if chunk.get("usage") is not None:
            usage = parse_usage(chunk["usage"])
            if usage is not None:
                self.usage = usage
        return events

    def finish(self) -> list[StreamEvent]:
        """The closing events: usage (when the server sent any) then the finish event."""
        events: list[StreamEvent] = []
        if self._tags is not None:
            events.extend(self._tags.flush())
            self._tags = None
        if self.usage is not None:
            events.append(UsageEvent(usage=self.usage))
        events.append(
            FinishEvent(finish_reason=self.finish_reason or "stop", id=self.id, model=self.model)
        )
        return events


_PARSE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _trim(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


class StreamDecoder:
    """The bytes of a streamed reply (server-sent ``chat.completion.chunk`` or
    ``text_completion`` objects) in, llmkit events out: the one stream parser of every
    backend that speaks this format.

    ``data: [DONE]`` ends the reply; servers that skip it still end with a finish reason,
    which is enough, while a body that ends with neither was cut off
    (:class:`~llmkit.errors.ConnectionError` from :meth:`finish`). ``event: error`` and error
    objects inside the 200 stream raise the mapped error, after the events that arrived
    before it in the same read have been delivered. A chunk of an unexpected shape is a
    :class:`~llmkit.errors.ProtocolError` quoting it.
    """

    __slots__ = ("_pending", "_sse", "chunks", "done")

    def __init__(
        self, *, backend: str, model: str | None = None, think_tags: ThinkTags = "auto"
    ) -> None:
        self._sse = SSEDecoder()
        self.chunks = ChunkDecoder(backend=backend, model=model, think_tags=think_tags)
        self.done = False
        self._pending: ProviderError | None = None

    def feed(self, data: bytes) -> list[StreamEvent]:
        """The events completed by ``data``; sets ``done`` at ``[DONE]``."""
        if self._pending is not None:
            self._raise_pending()
        events: list[StreamEvent] = []
        chunks = self.chunks
        try:
            for sse in self._sse.feed(data):
                if self.done:
                    break
                text = sse.data
                if text[:1] != "{" or sse.event != "message":
                    events.extend(self._event(sse))
                    continue
                # The event of every token, inline: this runs once per token.
                try:
                    chunk = json.loads(text)
                except ValueError:
                    chunk = sse.json(backend=chunks.backend)  # raises, quoting the data
                try:
                    events.extend(chunks.feed(chunk))
                except ProviderError:
                    raise
                except _PARSE_ERRORS as exc:
                    raise _unexpected_chunk(text, exc, chunks.backend) from exc
        except ProviderError as exc:
            if not events:
                raise
            self._pending = exc  # deliver what came before the error first
        return events

    def complete(self) -> bool:
        """Whether the server marked the end of the reply (``[DONE]`` or a finish reason)."""
        return self.done or self.chunks.finish_reason is not None

    def finish(self) -> list[StreamEvent]:
        """At the end of the body: what is left, then the closing usage and finish events."""
        self._raise_pending()
        events: list[StreamEvent] = []
        if not self.done:
            for sse in self._sse.flush():
                if self.done:
                    break
                events.extend(self._event(sse))
        if not self.complete():
            raise ConnectionError(
                "the stream ended before the reply was complete (no end-of-reply marker)",
                backend=self.chunks.backend,
                model=self.chunks.model,
            )
        return events + self.chunks.finish()

    def _raise_pending(self) -> None:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error

    def _event(self, sse: ServerSentEvent) -> list[StreamEvent]:
        data = sse.data
        if data.lstrip().startswith("[DONE]"):
            self.done = True
            return []
        if not data.strip():
            return []  # an event without data (keep-alive)
        backend = self.chunks.backend
        chunk = sse.json(backend=backend)
        if sse.event == "error":
            # llama.cpp and others send "event: error" with a payload of their own shape.
            payload = chunk if isinstance(chunk, Mapping) and "error" in chunk else {"error": chunk}
            raise error_in_payload(
                payload, backend=backend, model=self.chunks.model
            ) or ServerError(
                f"error event inside the stream: {chunk!r}"[:300], backend=backend, body=chunk
            )
        try:
            return self.chunks.feed(chunk)
        except ProviderError:
            raise
        except _PARSE_ERRORS as exc:
            raise _unexpected_chunk(data, exc, backend) from exc


def _unexpected_chunk(data: str, exc: Exception, backend: str) -> ProtocolError:
    return ProtocolError(
        f"unexpected stream chunk: {_trim(data)!r} ({type(exc).__name__}: {_trim(str(exc), 120)})",
        backend=backend,
    )
