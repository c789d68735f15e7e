"""The server side of the Responses API, I/O-free: request bodies in, response objects and
the typed SSE event sequence out.

A request becomes llmkit messages and client keywords (any backend then answers it); the
backend's :class:`~llmkit.types.ChatResponse` or stream events become a ``response`` object
or the events the official SDK parses: ``response.created``, ``response.in_progress``, per
output item ``output_item.added`` → (``content_part.added`` →) deltas → ``.done`` events →
``output_item.done``, then ``response.completed`` (``response.incomplete`` when the reply
was cut by the token budget), each with a ``sequence_number`` counting from 0. Reasoning a
backend exposes is sent as a reasoning item's ``reasoning_text`` content (as vLLM does):
it is the model's own text, not an OpenAI summary.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import LLMError, ProviderError, RateLimitError
from ..types import (
    ChatResponse,
    Message,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from ._schemas import RequestError

__all__ = [
    "EventWriter",
    "ResponsesRequestBody",
    "input_messages",
    "new_id",
    "response_object",
    "stored_items",
]

logger = logging.getLogger("llmkit.server")

_encode = json.JSONEncoder(separators=(",", ":")).encode


def new_id(prefix: str) -> str:
    """An OpenAI-style id: ``resp_...``, ``msg_...``, ``fc_...``, ``rs_...``."""
    return f"{prefix}_{os.urandom(12).hex()}"


class ReasoningConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: str | None = None


class ResponsesRequestBody(BaseModel):
    """``POST /v1/responses``. Fields that do not change what llmkit generates (``metadata``,
    ``user``, ``include``, ``truncation``, ...) are accepted and ignored, as
    OpenAI-compatible servers usually do; ``metadata`` is echoed back."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: Union[str, list[dict[str, Any]]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Union[str, dict[str, Any], None] = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    reasoning: ReasoningConfig | None = None
    store: bool = True
    previous_response_id: str | None = None
    stream: bool = False
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    # Accepted and ignored (described so the schema covers what the official SDK sends).
    include: list[str] | None = None
    truncation: str | None = None
    user: str | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    def flat_tools(self) -> list[dict[str, Any]]:
        """The function tools, checked (a 400 names the bad one)."""
        out = []
        for index, tool in enumerate(self.tools or ()):
            param = f"tools[{index}]"
            if tool.get("type") != "function":
                raise RequestError(
                    f"tool type {tool.get('type')!r} is not supported by this server; only "
                    "function tools are",
                    param=f"{param}.type",
                    code="unsupported_tool",
                )
            name = tool.get("name")
            if not isinstance(name, str) or not name:
                raise RequestError(
                    "a function tool needs a 'name' (the Responses form is flat: "
                    "{'type': 'function', 'name': ..., 'parameters': {...}})",
                    param=f"{param}.name",
                )
            parameters = tool.get("parameters")
            if parameters is not None and not isinstance(parameters, Mapping):
                raise RequestError(
                    "'parameters' must be a JSON schema object", param=f"{param}.parameters"
                )
            out.append(tool)
        return out

    def generation_kwargs(self, max_tokens_cap: int | None) -> dict[str, Any]:
        """Keyword arguments for ``AsyncClient.chat``/``stream``."""
        kwargs: dict[str, Any] = {}
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        max_tokens = self.max_output_tokens
        if max_tokens_cap is not None:
            max_tokens = min(max_tokens or max_tokens_cap, max_tokens_cap)
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        tools = self.flat_tools()
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        k: t[k]
                        for k in ("name", "description", "parameters", "strict")
                        if t.get(k) is not None
                    },
                }
                for t in tools
            ]
        if self.tool_choice is not None:
            choice = self.tool_choice
            if isinstance(choice, Mapping) and choice.get("type") == "function":
                choice = {"type": "function", "function": {"name": choice.get("name")}}
            kwargs["tool_choice"] = choice
        fmt = (self.text or {}).get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
            kwargs["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif isinstance(fmt, Mapping) and fmt.get("type") == "json_object":
            kwargs["response_format"] = {"type": "json_object"}
        if self.reasoning is not None and self.reasoning.effort is not None:
            kwargs["reasoning_effort"] = self.reasoning.effort
        return kwargs


# ---------------------------------------------------------------------------- input


def _text_of(content: Any, param: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, Mapping))
    raise RequestError("expected text content", param=param)


def _part(part: Any, param: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": str(part.get("text") or "")}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image" and part.get("image_url"):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("auto", "low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_audio" and isinstance(part.get("input_audio"), Mapping):
        return {"type": "input_audio", "input_audio": dict(part["input_audio"])}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
        return {"type": "file", "file": file}
    raise RequestError(
        f"content part type {kind!r} is not supported by this server",
        param=param,
        code="unsupported_content",
    )


def _message(item: Mapping[str, Any], param: str) -> Message:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise RequestError(f"invalid role {role!r} in an input message", param=f"{param}.role")
    content = item.get("content")
    if isinstance(content, list):
        parts = [_part(p, f"{param}.content[{i}]") for i, p in enumerate(content)]
        if role in ("assistant", "system", "developer"):
            content = "".join(p.get("text", "") for p in parts)
        else:
            content = parts
    elif not isinstance(content, str):
        raise RequestError(
            "a message needs 'content' (a string or a list of parts)", param=f"{param}.content"
        )
    try:
        return Message.model_validate({"role": role, "content": content})
    except ValidationError as exc:
        raise RequestError(
            f"invalid input message: {exc.errors()[0]['msg']}", param=param
        ) from None


def input_messages(raw: Union[str, list[dict[str, Any]]]) -> list[Message]:
    """The request's ``input`` as llmkit messages: messages as they are, ``function_call``
    items as tool calls on an assistant message (consecutive ones share it), and
    ``function_call_output`` items as tool messages. Reasoning items are accepted and left
    out: the backends behind this server take no opaque reasoning state."""
    if isinstance(raw, str):
        return [Message.user(raw)]
    out: list[Message] = []
    for index, item in enumerate(raw):
        param = f"input[{index}]"
        if not isinstance(item, Mapping):
            raise RequestError("an input item must be an object", param=param)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, param))
        elif kind == "function_call":
            if not item.get("call_id") or not item.get("name"):
                raise RequestError("a function_call item needs 'call_id' and 'name'", param=param)
            call = ToolCall(
                id=str(item["call_id"]),
                name=str(item["name"]),
                arguments=item.get("arguments") or "{}",
            )
            last = out[-1] if out else None
            if (
                last is not None
                and last.role == "assistant"
                and (last.tool_calls or not last.content)
            ):
                last.tool_calls = [*(last.tool_calls or []), call]
            elif last is not None and last.role == "assistant":
                last.tool_calls = [call]
            else:
                out.append(Message(role="assistant", tool_calls=[call]))
        elif kind == "function_call_output":
            if not item.get("call_id"):
                raise RequestError(
                    "a function_call_output item needs 'call_id'", param=f"{param}.call_id"
                )
            output = _text_of(item.get("output", ""), f"{param}.output")
            out.append(Message.tool(output, tool_call_id=str(item["call_id"])))
        elif kind == "reasoning":
            continue
        else:
            raise RequestError(
                f"input item type {kind!r} is not supported by this server (supported: message, "
                "function_call, function_call_output, reasoning)",
                param=f"{param}.type",
                code="unsupported_input_item",
            )
    if not out:
        raise RequestError("'input' has no message to answer", param="input")
    return out


def stored_items(raw: Union[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The input items as ``GET /v1/responses/{id}/input_items`` lists them (with ids)."""
    items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
    out = []
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            content = item.get("content")
            role = item.get("role")
            text_type = "output_text" if role == "assistant" else "input_text"
            if isinstance(content, str):
                content = [{"type": text_type, "text": content}]
            out.append(
                {
                    "id": new_id("msg"),
                    "type": "message",
                    "role": role,
                    "status": "completed",
                    "content": content,
                }
            )
        elif kind == "function_call":
            out.append({**item, "id": item.get("id") or new_id("fc"), "status": "completed"})
        elif kind == "function_call_output":
            out.append({**item, "id": item.get("id") or new_id("fco"), "status": "completed"})
    return out


# ---------------------------------------------------------------------------- output


def _usage(response: ChatResponse) -> dict[str, Any]:
    u = response.usage
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens or 0},
        "total_tokens": u.total_tokens or u.prompt_tokens + u.completion_tokens,
    }


def _text_part(kind: str, text: str) -> dict[str, Any]:
    """The one content part of a message (``output_text``) or reasoning item."""
    if kind == "message":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "reasoning_text", "text": text}


# The text events of each kind of content item: their name prefix, and the fields only the
# message's events carry.
_TEXT_EVENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "message": ("response.output_text", {"logprobs": []}),
    "reasoning": ("response.reasoning_text", {}),
}


def _content_item(kind: str, id: str, text: str, status: str = "completed") -> dict[str, Any]:
    """A message or reasoning item; one being streamed (``in_progress``, no text yet) has no
    content part until it is done."""
    content = [_text_part(kind, text)] if text or status == "completed" else []
    if kind == "message":
        return {
            "id": id,
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }
    return {"id": id, "type": "reasoning", "summary": [], "content": content, "status": status}


def _call_item(id: str, call: ToolCall, status: str = "completed") -> dict[str, Any]:
    return {
        "id": id,
        "type": "function_call",
        "call_id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "status": status,
    }


def output_items(response: ChatResponse) -> list[dict[str, Any]]:
    """A reply's output items: reasoning, then the message, then the function calls."""
    items = []
    if response.reasoning:
        items.append(_content_item("reasoning", new_id("rs"), response.reasoning))
    if response.text or not response.tool_calls:
        items.append(_content_item("message", new_id("msg"), response.text))
    items.extend(_call_item(new_id("fc"), call) for call in response.tool_calls)
    return items


def response_object(
    body: ResponsesRequestBody,
    *,
    id: str,
    model: str,
    created: int,
    response: ChatResponse | None = None,
    output: list[dict[str, Any]] | None = None,
    status: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object: in progress (no ``response``), finished, or failed."""
    incomplete = None
    if response is not None and status is None:
        if response.finish_reason == "length":
            status, incomplete = "incomplete", {"reason": "max_output_tokens"}
        elif response.finish_reason == "content_filter":
            status, incomplete = "incomplete", {"reason": "content_filter"}
        else:
            status = "completed"
        if output is None:
            output = output_items(response)
    effort = body.reasoning.effort if body.reasoning else None
    return {
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status or "in_progress",
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "metadata": body.metadata or {},
        "model": model,
        "output": output or [],
        "parallel_tool_calls": body.parallel_tool_calls
        if body.parallel_tool_calls is not None
        else True,
        "previous_response_id": body.previous_response_id,
        "reasoning": {
            "effort": effort,
            "summary": body.reasoning.summary if body.reasoning else None,
        },
        "store": body.store,
        "temperature": body.temperature if body.temperature is not None else 1.0,
        "text": body.text or {"format": {"type": "text"}},
        "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
        "tools": [{**t, "strict": bool(t.get("strict"))} for t in body.flat_tools()],
        "top_p": body.top_p if body.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": _usage(response) if response is not None else None,
        "user": None,
    }


def error_object(exc: BaseException) -> dict[str, Any]:
    """A failed response's ``error``: the codes the Responses API uses (and llmkit's client
    maps back to the same error classes)."""
    if isinstance(exc, RateLimitError):
        code = "rate_limit_exceeded"
    elif (
        isinstance(exc, ProviderError)
        and exc.status_code is not None
        and 400 <= exc.status_code < 500
    ):
        code = "invalid_prompt"
    else:
        code = "server_error"
    message = (
        exc.message
        if isinstance(exc, ProviderError)
        else str(exc)
        if isinstance(exc, LLMError)
        else "internal server error"
    )
    return {"code": code, "message": message}


# ---------------------------------------------------------------------------- streams


@dataclass
class _Call:
    item: dict[str, Any]
    index: int  # output_index
    parts: list[str] = field(default_factory=list)
    done: bool = False


class EventWriter:
    """llmkit stream events in, Responses SSE events (bytes) out, numbered from 0.

    One text or reasoning item is open at a time; a delta of another kind closes it (and any
    open function calls) with its ``.done`` events, so every item the SDK sees added is also
    done. Function calls stay open together until then, so the fragments of parallel calls
    may interleave, each with its own ``output_index``.
    """

    def __init__(self, body: ResponsesRequestBody, *, id: str, model: str, created: int) -> None:
        self.body = body
        self.id, self.model, self.created = id, model, created
        self.output: list[dict[str, Any]] = []
        self._seq = 0
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._text: list[str] = []
        self._calls: dict[int, _Call] = {}  # llmkit tool-call index -> its item

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encode(data).encode() + b"\n\n"

    def _response(self, **state: Any) -> dict[str, Any]:
        """This stream's ``response`` object in the given state."""
        return response_object(
            self.body, id=self.id, model=self.model, created=self.created, **state
        )

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        obj = self._response()
        return self._event("response.created", response=obj) + self._event(
            "response.in_progress", response=obj
        )

    def feed(self, event: Any) -> bytes:
        if isinstance(event, TextDelta):
            return self._delta("message", event.delta) if event.delta else b""
        if isinstance(event, ReasoningDelta):
            return self._delta("reasoning", event.reasoning) if event.reasoning else b""
        if isinstance(event, ToolCallDelta):
            return self._tool(event)
        return b""  # usage and finish come with the final response

    def _open_item(self, kind: str) -> bytes:
        out = self._close()
        index = len(self.output)
        item = _content_item(kind, new_id("msg" if kind == "message" else "rs"), "", "in_progress")
        self.output.append(item)
        self._open, self._text = item, []
        out += self._event("response.output_item.added", output_index=index, item=item)
        out += self._event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part=_text_part(kind, ""),
        )
        return out

    def _delta(self, kind: str, delta: str) -> bytes:
        out = b""
        if self._open is None or self._open["type"] != kind:
            out = self._open_item(kind)
        self._text.append(delta)
        item, index = self._open, len(self.output) - 1
        assert item is not None
        prefix, extra = _TEXT_EVENTS[kind]
        return out + self._event(
            f"{prefix}.delta",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            delta=delta,
            **extra,
        )

    def _tool(self, event: ToolCallDelta) -> bytes:
        out = b""
        call = self._calls.get(event.index)
        if call is None:
            out = self._close_content()  # other calls stay open: their fragments may interleave
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "call_id": event.id or new_id("call"),
                "name": event.name or "",
                "arguments": "",
                "status": "in_progress",
            }
            call = self._calls[event.index] = _Call(item, len(self.output))
            self.output.append(item)
            out += self._event(
                "response.output_item.added", output_index=call.index, item=dict(item)
            )
        elif call.done:
            # Text came between this call's fragments: its item was already done and the
            # protocol cannot reopen it.
            logger.warning("responses: dropped a late tool-call fragment %r", event.arguments)
            return b""
        if event.arguments:
            call.parts.append(event.arguments)
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=call.item["id"],
                output_index=call.index,
                delta=event.arguments,
            )
        return out

    def _close(self) -> bytes:
        """Close every open item: the text or reasoning item, then the calls in order."""
        out = self._close_content()
        for call in self._calls.values():
            if call.done:
                continue
            call.done = True
            item = call.item
            item["status"] = "completed"
            item["arguments"] = "".join(call.parts) or "{}"
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=call.index,
                arguments=item["arguments"],
                name=item["name"],
            )
            out += self._event("response.output_item.done", output_index=call.index, item=item)
        return out

    def _close_content(self) -> bytes:
        item, self._open = self._open, None
        if item is None:
            return b""
        index = self.output.index(item)
        text = "".join(self._text)
        item["status"] = "completed"
        part = _text_part(item["type"], text)
        item["content"] = [part]
        prefix, extra = _TEXT_EVENTS[item["type"]]
        out = self._event(
            f"{prefix}.done",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            text=text,
            **extra,
        )
        out += self._event(
            "response.content_part.done",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part=part,
        )
        return out + self._event("response.output_item.done", output_index=index, item=item)

    def finish(self, response: ChatResponse) -> tuple[bytes, dict[str, Any]]:
        """The closing events and the final response object."""
        out = self._close()
        if not self.output:  # an empty reply still has its (empty) message
            out += self._open_item("message") + self._close()
        obj = self._response(response=response, output=self.output)
        kind = "response.completed" if obj["status"] == "completed" else "response.incomplete"
        return out + self._event(kind, response=obj), obj

    def failed(self, exc: BaseException) -> bytes:
        """``response.failed`` for an error after the stream started."""
        out = self._close()
        obj = self._response(output=self.output, status="failed", error=error_object(exc))
        return out + self._event("response.failed", response=obj)


def created_now() -> int:
    return int(time.time())
