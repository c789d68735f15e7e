"""What the REST dialects share (I/O-free): the description of one HTTP exchange, stream
parsers over the SSE/NDJSON decoders, and small helpers.

A dialect ("how to talk") turns a request into a :class:`WireCall`: which path on which base
of a replica, the JSON body, how to parse a JSON reply and how to parse a stream.
The backend shell ("where to connect") picks the replica, does the I/O and maps transport
failures; it never looks inside a payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ..._http.decoders import NDJSONDecoder, ServerSentEvent, SSEDecoder
from ...errors import ConnectionError, ProtocolError, ProviderError, UnsupportedFeatureError
from ...types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
    Usage,
    estimate_tokens,
)
from ..base import Capabilities
from .replicas import Replica

__all__ = [
    "BACKEND",
    "Dialect",
    "NDJSONParser",
    "SSEParser",
    "StreamParser",
    "WireCall",
    "WireOptions",
    "counted_usage",
    "guard",
    "not_streamed",
    "trim",
]

BACKEND = "rest"

TemplateFn = Callable[[list[dict[str, Any]]], str]


def trim(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, for error messages that quote a payload."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def counted_usage(prompt: Any, completion: Any, prompt_text: str) -> Usage:
    """Usage from the counts a server reported; ``estimated`` when any count is missing.

    With neither count the result is the empty ``Usage(estimated=True)`` the client fills
    in; with only the completion count, the prompt side is estimated here (and flagged).
    """
    if not isinstance(completion, int):
        return Usage(estimated=True)
    if not isinstance(prompt, int):
        return Usage(
            prompt_tokens=estimate_tokens(prompt_text), completion_tokens=completion, estimated=True
        )
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


_PARSE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


def _unexpected(what: str, payload: Any, exc: Exception) -> ProtocolError:
    shown = payload if isinstance(payload, str) else json.dumps(payload, default=str)
    return ProtocolError(
        f"unexpected {what}: {trim(shown)!r} ({type(exc).__name__}: {trim(str(exc), 120)})",
        backend=BACKEND,
    )


def _cut_short() -> ConnectionError:
    return ConnectionError(
        "the stream ended before the reply was complete (no end-of-reply marker)",
        backend=BACKEND,
    )


def guard(what: str, payload: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; unexpected shapes become :class:`ProtocolError` quoting the
    payload (a parser that trips over a wrong type must not escape as an AttributeError)."""
    try:
        return fn(*args, **kwargs)
    except ProviderError:
        raise
    except _PARSE_ERRORS as exc:
        raise _unexpected(what, payload, exc) from exc


@dataclass(frozen=True)
class WireOptions:
    """The settings a dialect reads (a subset of the backend's settings)."""

    spec: str
    stream_usage: bool = True
    template: str | TemplateFn | None = None
    keep_alive: str | float | None = None
    think_tags: Literal["auto", "open", "off"] = "auto"
    think_levels: bool = False
    schema_format: Literal["json_schema", "json_object"] = "json_schema"


class StreamParser(Protocol):
    """Bytes of a streamed reply in, llmkit events out."""

    done: bool

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Events completed by ``data``; sets ``done`` once the server marked the end."""
        ...

    def finish(self) -> list[StreamEvent]:
        """At end of input: what is left, then the closing usage and finish events.

        Raises :class:`~llmkit.errors.ConnectionError` when the body ended before the
        dialect's end marker: a proxy giving up on a slow upstream may end the HTTP body
        cleanly, and a cut reply must not pass for a finished one."""
        ...


# A parsed reply: a ChatResponse for chat and completion calls, an EmbeddingResponse for
# embedding calls (the backend shell only reads its request_id).
ParseFn = Callable[[Any, Mapping[str, str]], "ChatResponse | EmbeddingResponse"]


@dataclass(slots=True)  # not frozen: built once per call, and frozen init costs a microsecond
class WireCall:
    """One HTTP exchange, described without doing it.

    ``on`` says which base of a replica ``path`` is relative to: the server root (native
    endpoints, ``/health``) or the OpenAI-compatible API base (``.../v1``).
    """

    on: Literal["root", "api"]
    path: str
    payload: dict[str, Any]  # the JSON body (httpx encodes it, as for any json= request)
    stream: bool
    parse: ParseFn
    new_parser: Callable[[], StreamParser]

    def url(self, replica: Replica) -> str:
        return (replica.api if self.on == "api" else replica.root) + self.path


class Dialect:
    """How to talk to one family of servers. Subclasses implement :meth:`chat` and
    :meth:`complete`; they hold no connection state."""

    name: str = ""
    capabilities: Capabilities = Capabilities()

    def __init__(self, options: WireOptions) -> None:
        self.options = options

    def chat(self, request: ChatRequest, *, stream: bool) -> WireCall:
        raise NotImplementedError

    def complete(self, request: CompletionRequest, *, stream: bool) -> WireCall:
        raise NotImplementedError

    def embed(self, request: EmbeddingRequest) -> WireCall:
        raise UnsupportedFeatureError(f"the {self.name} dialect cannot embed text")

    def _embed_call(
        self,
        request: EmbeddingRequest,
        on: Literal["root", "api"],
        path: str,
        payload: Any,
        parse: Callable[..., EmbeddingResponse],
    ) -> WireCall:
        """An embedding call (never streamed): ``parse(data, request, backend=, model=)``
        reads the reply of whichever embedding API the dialect speaks."""
        model, spec = request.model, self.options.spec
        return WireCall(
            on=on,
            path=path,
            payload=payload,
            stream=False,
            parse=lambda data, headers: parse(data, request, backend=spec, model=model),
            new_parser=not_streamed,
        )


def not_streamed() -> StreamParser:
    """The ``new_parser`` of a call that is never streamed (embeddings)."""
    raise AssertionError("this call has no streamed form")


class _ObjectStream:
    """A stream of JSON objects decoded from the body (``_decoder``: SSE or NDJSON); the
    subclass's ``_handle`` turns the decoded items into events."""

    def __init__(self, decoder: SSEDecoder | NDJSONDecoder) -> None:
        self.done = False
        self._decoder = decoder

    def feed(self, data: bytes) -> list[StreamEvent]:
        return self._handle(self._decoder.feed(data))

    def finish(self) -> list[StreamEvent]:
        events = [] if self.done else self._handle(self._decoder.flush())
        if not self.complete():
            raise _cut_short()
        return events + self.closing()

    def _handle(self, items: Iterable[Any]) -> list[StreamEvent]:
        raise NotImplementedError

    def closing(self) -> list[StreamEvent]:
        raise NotImplementedError

    def complete(self) -> bool:
        """Whether the server marked the end of the reply (``[DONE]`` or its own marker)."""
        return self.done


class SSEParser(_ObjectStream):
    """Server-sent events of JSON objects; subclasses handle one decoded object at a time."""

    def __init__(self) -> None:
        super().__init__(SSEDecoder())

    def _handle(self, sse_events: Iterable[ServerSentEvent]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for sse in sse_events:
            if self.done:
                break
            data = sse.data
            if data == "[DONE]" or data.strip() == "[DONE]":
                self.done = True
                break
            try:
                obj = json.loads(data)
            except json.JSONDecodeError:
                if not data.strip():
                    continue  # an event without data (keep-alive)
                raise ProtocolError(
                    f"malformed JSON in server-sent event: {trim(data)!r}", backend=BACKEND
                ) from None
            try:  # inline rather than guard(): this runs once per token
                out.extend(self.on_object(obj, sse.event))
            except _PARSE_ERRORS as exc:
                raise _unexpected("stream chunk", data, exc) from exc
        return out

    def on_object(self, obj: Any, event: str) -> list[StreamEvent]:
        raise NotImplementedError


class NDJSONParser(_ObjectStream):
    """Newline-delimited JSON objects; subclasses handle one object at a time."""

    def __init__(self) -> None:
        super().__init__(NDJSONDecoder(backend=BACKEND))

    def _handle(self, objects: Iterable[Any]) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for obj in objects:
            if self.done:
                break
            try:
                out.extend(self.on_object(obj))
            except _PARSE_ERRORS as exc:
                raise _unexpected("stream line", obj, exc) from exc
        return out

    def on_object(self, obj: Any) -> list[StreamEvent]:
        raise NotImplementedError
