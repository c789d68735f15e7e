"""The OpenAI Responses wire format (``POST /v1/responses``), I/O-free.

Shared by the ``openai``/``azure`` backends and the ``rest`` backend's OpenAI dialect when
they run with ``api="responses"``: a :class:`~llmkit.types.ChatRequest` becomes a Responses
body, a ``response`` object becomes a :class:`~llmkit.types.ChatResponse`, and the typed SSE
events (``response.output_text.delta``, ``response.completed``, ...) become llmkit stream
events. The shapes mirror the official SDK's types (``openai/types/responses/``).

What differs from chat completions, and is easy to get wrong:

* system messages at the start become ``instructions``; the rest of the history becomes
  ``input`` items: messages, ``function_call`` items (``call_id`` is the tool call's id; the
  item ``id`` is a different ``fc_...`` value and is never sent back) and
  ``function_call_output`` items -- there is no ``tool`` role;
* tools are flat (``{"type": "function", "name", "parameters"}``), a JSON schema goes in
  ``text.format``, ``max_tokens`` is ``max_output_tokens`` and the effort is
  ``reasoning: {effort, summary}`` (a summary is the only reasoning text the API shows);
* streams have no ``[DONE]``: ``response.completed`` (or ``.incomplete`` / ``.failed``)
  ends them, and ``error`` / ``response.failed`` arrive as ordinary events which llmkit
  turns into typed errors;
* without server-side state (``store=False``) a reasoning model's encrypted reasoning items
  are kept on the assistant message's ``provider_data`` and sent back, each before the item
  it produced, so a multi-turn tool exchange works statelessly;
* content parts are ``input_text``, ``input_image`` (``image_url``: a URL or a ``data:``
  URL, and ``detail``, ``"auto"`` when not given) and ``input_file`` (``file_data`` as a
  ``data:`` URL with its ``filename``, or a ``file_id``). The API's message content takes
  no audio (``input_audio`` is a chat-completions part), so a backend on this API declares
  ``capabilities.audio`` off (:func:`responses_capabilities`) and an audio part is refused
  before anything is sent.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._http.decoders import SSEDecoder
from ..errors import (
    InvalidInputError,
    ProtocolError,
    ProviderError,
    UnsupportedFeatureError,
    error_from_status,
)
from ..types import (
    AudioPart,
    ChatRequest,
    ChatResponse,
    FilePart,
    FinishEvent,
    ImagePart,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .base import Capabilities

__all__ = [
    "PROVIDER_KEY",
    "ResponsesEventDecoder",
    "ResponsesSSE",
    "error_from_response_error",
    "input_items",
    "parse_response",
    "parse_response_usage",
    "responses_body",
    "responses_capabilities",
]

PROVIDER_KEY = "openai_responses"
"""The key of :attr:`Message.provider_data` this wire format writes and reads back."""

ENCRYPTED_REASONING = "reasoning.encrypted_content"

# Reasoning model families (a pattern, not a list of names, so it does not go stale): only
# these are asked for encrypted reasoning unprompted; other models answer such a request
# with a 400 ("Encrypted content is not supported with this model").
_REASONING_MODEL = re.compile(r"^(?:o\d|gpt-5|gpt-oss)", re.IGNORECASE)

# Error codes of ``response.failed`` / ``error`` events, as the HTTP status they stand for,
# so they map to the same llmkit errors (and the same retry decisions) as an HTTP reply.
_CODE_STATUS = {
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "server_error": 500,
    "internal_error": 500,
    "vector_store_timeout": 500,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "invalid_image": 400,
    "model_not_found": 404,
}

_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


# ---------------------------------------------------------------------------- requests

_NO_AUDIO = (
    "the Responses API takes no audio in messages (its content parts are input_text, "
    "input_image and input_file); use api='chat' with an audio model for audio parts"
)


def responses_capabilities(capabilities: Capabilities, api: str) -> Capabilities:
    """What a backend takes when its chat calls use ``api``: on the Responses API, no
    audio parts (the client then refuses them before sending)."""
    if api != "responses":
        return capabilities
    return dataclasses.replace(capabilities, audio=False)


def _part(part: Any) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, ImagePart):
        return {
            "type": "input_image",
            "image_url": part.image_url.url,
            "detail": part.image_url.detail or "auto",
        }
    if isinstance(part, AudioPart):
        raise UnsupportedFeatureError(_NO_AUDIO)
    if isinstance(part, FilePart):
        out: dict[str, Any] = {"type": "input_file"}
        out.update(part.file.model_dump(exclude_none=True))
        return out
    raise InvalidInputError(f"cannot send a {type(part).__name__} to the Responses API")


def _content(message: Message) -> str | list[dict[str, Any]]:
    if isinstance(message.content, list):
        return [_part(p) for p in message.content]
    return message.content or ""


def _assistant_items(message: Message) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    state = (message.provider_data or {}).get(PROVIDER_KEY) or {}
    # Only reasoning items that carry their encrypted content go back: a bare id refers to
    # server-side state that may not exist (store=False, another server, expired) and would
    # get the whole request a 400. Each precedes the items its response produced.
    for item in state.get("reasoning_items") or ():
        if isinstance(item, Mapping) and item.get("encrypted_content"):
            items.append(dict(item))
    text = message.text
    if text:
        part = {"type": "output_text", "text": text, "annotations": []}
        items.append({"type": "message", "role": "assistant", "content": [part]})
    for call in message.tool_calls or ():
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
            }
        )
    return items


def input_items(messages: list[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """``(instructions, input)`` for ``messages``: the leading system messages become the
    instructions, everything after them input items."""
    instructions: list[str] = []
    start = 0
    for message in messages:
        if message.role != "system":
            break
        instructions.append(message.text)
        start += 1
    items: list[dict[str, Any]] = []
    for message in messages[start:]:
        role = message.role
        if role == "assistant":
            items.extend(_assistant_items(message))
        elif role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": message.text,
                }
            )
        else:
            items.append({"type": "message", "role": role, "content": _content(message)})
    return ("\n\n".join(instructions) if instructions else None), items


def _text_format(response_format: Mapping[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = dict(response_format.get("json_schema") or {})
        out: dict[str, Any] = {"type": "json_schema", "name": spec.get("name") or "response"}
        out["schema"] = spec.get("schema") or {}
        if spec.get("strict") is not None:
            out["strict"] = spec["strict"]
        if spec.get("description"):
            out["description"] = spec["description"]
        return out
    if kind in ("json_object", "text"):
        return {"type": kind}
    raise InvalidInputError(f"response_format type {kind!r} has no Responses API form")


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, Mapping) and isinstance(choice.get("function"), Mapping):
        return {"type": "function", "name": choice["function"].get("name")}
    return choice


def responses_body(
    request: ChatRequest, *, model: str, stream: bool = False, min_output_tokens: int = 1
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/responses`` for ``request``.

    Raises :class:`UnsupportedFeatureError` for chat options the Responses API does not
    have (``stop``, ``seed``) and :class:`InvalidInputError` for a ``max_tokens`` below
    ``min_output_tokens`` (OpenAI's own floor is 16), before anything is sent.
    """
    instructions, items = input_items(request.messages)
    body: dict[str, Any] = {"model": model, "input": items}
    if len(items) == 1 and items[0].get("role") == "user" and type(items[0]["content"]) is str:
        # One user text is the API's plain-string input (the same thing to the model), and
        # the SDK validates a string in a quarter of the time it takes over an item list.
        body["input"] = items[0]["content"]
    if instructions is not None:
        body["instructions"] = instructions
    params = request.params
    for name in params.model_fields_set:
        value = getattr(params, name)
        if value is None:
            continue
        if name in ("temperature", "top_p"):
            body[name] = value
        elif name == "max_tokens":
            if value < min_output_tokens:
                raise InvalidInputError(
                    f"max_tokens={value} is below the Responses API's minimum of "
                    f"{min_output_tokens} (max_output_tokens; reasoning tokens count too)"
                )
            body["max_output_tokens"] = value
        elif name in ("stop", "seed"):
            raise UnsupportedFeatureError(
                f"the Responses API has no {name!r} option; leave it out or use api='chat'"
            )
        elif name == "tools":
            body["tools"] = [_flat_tool(tool.to_openai()) for tool in value]
        elif name == "tool_choice":
            body["tool_choice"] = _tool_choice(value)
        elif name == "response_format":
            body["text"] = {"format": _text_format(value)}
        elif name == "reasoning_effort":
            # The summary is the only reasoning text the API returns; without asking for
            # it, r.reasoning would always be None.
            body["reasoning"] = {"effort": value, "summary": "auto"}
    if stream:
        body["stream"] = True
    extra = request.extra
    if extra:
        for key, value in extra.items():
            if key in ("reasoning", "text") and isinstance(value, Mapping):
                body[key] = {**(body.get(key) or {}), **value}
            else:
                body[key] = value
    if _wants_encrypted_reasoning(body, request):
        include = list(body.get("include") or ())
        if ENCRYPTED_REASONING not in include:
            body["include"] = [*include, ENCRYPTED_REASONING]
    return body


def _flat_tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool["function"]
    out: dict[str, Any] = {"type": "function", "name": fn["name"]}
    out["parameters"] = fn.get("parameters") or {"type": "object", "properties": {}}
    if fn.get("description"):
        out["description"] = fn["description"]
    # The Responses API defaults strict to true, which rejects the loose schemas most
    # function signatures produce; llmkit sends what the tool says (false unless set).
    out["strict"] = bool(fn.get("strict"))
    return out


def _wants_encrypted_reasoning(body: Mapping[str, Any], request: ChatRequest) -> bool:
    """Stateless reasoning: ``store=False`` on a reasoning model (or with an effort set)."""
    if body.get("store") is not False:
        return False
    model = str(body.get("model") or "").rsplit("/", 1)[-1]
    return request.params.effort is not None or bool(_REASONING_MODEL.match(model))


# ---------------------------------------------------------------------------- replies


def parse_response_usage(data: Any) -> Usage | None:
    """A Responses ``usage`` object (``input_tokens``/``output_tokens``, reasoning included
    in the output) as :class:`Usage`; ``None`` when ``data`` is not one."""
    if not isinstance(data, Mapping):
        return None
    details = data.get("output_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
    prompt = int(data.get("input_tokens") or 0)
    completion = int(data.get("output_tokens") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(data.get("total_tokens") or prompt + completion),
        reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
    )


def error_from_response_error(
    error: Any,
    *,
    backend: str | None,
    model: str | None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """An ``error`` event or a failed response's ``error`` object as a typed llmkit error
    (``rate_limit_exceeded`` is a :class:`RateLimitError`, ``server_error`` a
    :class:`ServerError`, ... ; an unknown code is a retryable ServerError)."""
    if not isinstance(error, Mapping):
        error = {"message": str(error)}
    error = {k: v for k, v in error.items() if k not in ("sequence_number", "type")}
    code = str(error.get("code") or "")
    status = _CODE_STATUS.get(code, 500)
    return error_from_status(
        status, {"error": error}, backend=backend, model=model, secrets=secrets
    )


def _finish_reason(data: Mapping[str, Any], has_calls: bool) -> str:
    if data.get("status") == "incomplete":
        details = data.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, Mapping) else None
        return _INCOMPLETE.get(str(reason), "length")
    return "tool_calls" if has_calls else "stop"


def _kept_reasoning(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """What of a reasoning item goes back in a later turn (only with encrypted content)."""
    if not item.get("encrypted_content"):
        return None
    return {
        "type": "reasoning",
        "id": item.get("id"),
        "summary": list(item.get("summary") or []),
        "encrypted_content": item["encrypted_content"],
    }


def parse_response(data: Any, *, backend: str, model: str | None = None) -> ChatResponse:
    """A ``response`` object as a :class:`ChatResponse` (a failed one raises its error;
    a malformed one is a :class:`ProtocolError`)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(f"expected a JSON object, got {type(data).__name__}", backend=backend)
    if data.get("status") == "failed" or (data.get("error") and data.get("object") != "response"):
        raise error_from_response_error(data.get("error"), backend=backend, model=model)
    output = data.get("output")
    if not isinstance(output, list):
        raise ProtocolError("response has no 'output' list", backend=backend, model=model)
    texts: list[str] = []
    summaries: list[str] = []
    reasoning_texts: list[str] = []
    calls: list[ToolCall] = []
    kept: list[dict[str, Any]] = []
    try:
        for item in output:
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or ():
                    if part.get("type") == "output_text":
                        texts.append(part.get("text") or "")
                    elif part.get("type") == "refusal":
                        texts.append(part.get("refusal") or "")
            elif kind == "function_call":
                calls.append(
                    ToolCall(
                        id=str(item.get("call_id") or item.get("id") or ""),
                        name=str(item["name"]),
                        arguments=item.get("arguments") or "{}",
                    )
                )
            elif kind == "reasoning":
                summaries.extend(s.get("text") or "" for s in item.get("summary") or ())
                reasoning_texts.extend(c.get("text") or "" for c in item.get("content") or ())
                saved = _kept_reasoning(item)
                if saved is not None:
                    kept.append(saved)
            # Built-in tool calls (web search, ...) and future item types are not llmkit's.
    except (AttributeError, KeyError, TypeError) as exc:
        shown = json.dumps(output, default=str)[:200]
        raise ProtocolError(
            f"malformed output item in response: {shown!r} ({exc!r})", backend=backend
        ) from None
    text = "".join(texts)
    reasoning = "\n\n".join(s for s in summaries if s) or "".join(reasoning_texts) or None
    message = Message(
        role="assistant",
        content=text if (text or not calls) else None,
        tool_calls=calls or None,
        reasoning=reasoning,
        provider_data={PROVIDER_KEY: {"reasoning_items": kept}} if kept else None,
    )
    created = data.get("created_at")
    return ChatResponse(
        message=message,
        finish_reason=_finish_reason(data, bool(calls)),
        usage=parse_response_usage(data.get("usage")) or Usage(estimated=True),
        model=str(data.get("model") or model or ""),
        backend=backend,
        id=str(data.get("id") or ""),
        created=int(created) if isinstance(created, (int, float)) else int(time.time()),
        raw=data,
    )


# ---------------------------------------------------------------------------- streams


class ResponsesEventDecoder:
    """Decoded Responses stream events (dicts) in, llmkit events out.

    Text, reasoning-summary and function-call-argument deltas pass straight through; a
    function call's id and name come from its ``output_item.added``. The terminal event
    (``response.completed`` or ``response.incomplete``) gives usage, the finish reason and
    the response id, emitted by :meth:`finish`; ``error`` and ``response.failed`` raise.
    Event types llmkit has no use for are ignored, so new ones never break a stream.
    """

    def __init__(self, *, backend: str, model: str | None = None) -> None:
        self.backend = backend
        self.model = model
        self.id: str | None = None
        self.finished = False
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._calls: dict[int, int] = {}  # output_index -> llmkit tool-call index
        self._summaries = 0
        self._kept: list[dict[str, Any]] = []

    def feed(self, event: Any) -> list[StreamEvent]:
        # type() first: this runs once per token, and ABC isinstance checks are slow.
        if type(event) is not dict and not isinstance(event, Mapping):
            raise ProtocolError(
                f"stream event is not a JSON object: {str(event)[:200]!r}", backend=self.backend
            )
        kind = event.get("type")
        if kind == "response.output_text.delta":
            delta = event["delta"]
            return [TextDelta(delta=delta)] if delta else []
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(event.get("output_index", -1))
            if index is None or not event["delta"]:
                return []
            return [ToolCallDelta(index=index, arguments=event["delta"])]
        if kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            delta = event["delta"]
            return [ReasoningDelta(reasoning=delta)] if delta else []
        if kind == "response.reasoning_summary_part.added":
            # Summary parts are joined with a blank line, as parse_response joins them.
            self._summaries += 1
            return [ReasoningDelta(reasoning="\n\n")] if self._summaries > 1 else []
        if kind == "response.output_item.added":
            return self._item_added(event)
        if kind == "response.output_item.done":
            return self._item_done(event)
        if kind in ("response.completed", "response.incomplete"):
            self._terminal(event.get("response"))
            return []
        if kind in ("response.created", "response.in_progress"):
            self._meta(event.get("response"))
            return []
        if kind == "response.failed":
            response = event.get("response")
            error = response.get("error") if isinstance(response, Mapping) else None
            raise error_from_response_error(
                error or {"message": "the response failed"},
                backend=self.backend,
                model=self.model,
            )
        if kind == "error":
            raise error_from_response_error(event, backend=self.backend, model=self.model)
        return []

    def _item_added(self, event: Mapping[str, Any]) -> list[StreamEvent]:
        item = event.get("item")
        if not isinstance(item, Mapping) or item.get("type") != "function_call":
            return []
        index = self._calls[event.get("output_index", len(self._calls))] = len(self._calls)
        return [
            ToolCallDelta(
                index=index,
                id=item.get("call_id") or item.get("id"),
                name=item.get("name"),
                arguments=item.get("arguments") or "",
            )
        ]

    def _item_done(self, event: Mapping[str, Any]) -> list[StreamEvent]:
        item = event.get("item")
        if not isinstance(item, Mapping):
            return []
        if item.get("type") == "reasoning":
            # The encrypted content of output_item.added may be partial; .done has it whole.
            saved = _kept_reasoning(item)
            if saved is not None:
                self._kept.append(saved)
        elif item.get("type") == "function_call":
            output_index = event.get("output_index", -1)
            if output_index not in self._calls:  # a server that skipped output_item.added
                added = self._item_added(event)
                return added
        return []

    def _meta(self, response: Any) -> None:
        if isinstance(response, Mapping):
            if response.get("id"):
                self.id = str(response["id"])
            if response.get("model"):
                self.model = str(response["model"])

    def _terminal(self, response: Any) -> None:
        self.finished = True
        if not isinstance(response, Mapping):
            self.finish_reason = "tool_calls" if self._calls else "stop"
            return
        self._meta(response)
        self.finish_reason = _finish_reason(response, bool(self._calls))
        usage = parse_response_usage(response.get("usage"))
        if usage is not None:
            self.usage = usage

    def finish(self) -> list[StreamEvent]:
        """The closing events: usage (when the server sent any) then the finish event."""
        events: list[StreamEvent] = []
        if self.usage is not None:
            events.append(UsageEvent(usage=self.usage))
        kept = {PROVIDER_KEY: {"reasoning_items": self._kept}} if self._kept else None
        events.append(
            FinishEvent(
                finish_reason=self.finish_reason or ("tool_calls" if self._calls else "stop"),
                id=self.id,
                model=self.model,
                provider_data=kept,
            )
        )
        return events


class ResponsesSSE:
    """Bytes of a Responses stream in, llmkit events out: the shared SSE decoder plus
    :class:`ResponsesEventDecoder`. ``done`` turns true at the terminal event. An error event
    that follows other events in the same piece of bytes is raised on the next call, so the
    events the server sent before it are delivered first."""

    __slots__ = ("_pending", "_sse", "decoder")

    def __init__(self, *, backend: str, model: str | None = None) -> None:
        self._sse = SSEDecoder()
        self.decoder = ResponsesEventDecoder(backend=backend, model=model)
        self._pending: ProviderError | None = None

    @property
    def done(self) -> bool:
        return self.decoder.finished

    def feed(self, data: bytes) -> list[StreamEvent]:
        self._raise_pending()
        return self._decode(self._sse.feed(data))

    def flush(self) -> list[StreamEvent]:
        """What a body that ended without a blank line still held."""
        self._raise_pending()
        return self._decode(self._sse.flush())

    def _raise_pending(self) -> None:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error

    def _decode(self, sse_events: Iterable[Any]) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        decoder = self.decoder
        try:
            for sse in sse_events:
                if decoder.finished:
                    break
                text = sse.data
                if not text or text == "[DONE]":
                    continue
                events.extend(decoder.feed(sse.json(backend=decoder.backend)))
        except ProviderError as exc:
            if not events:
                raise
            self._pending = exc
        return events
