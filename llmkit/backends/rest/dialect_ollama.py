"""The Ollama-native dialect of the REST backend (I/O-free).

``/api/chat`` and ``/api/generate``, streamed as newline-delimited JSON: every line is
``{"message": {"content": ...}, "done": false}`` (``"response"`` for generate) and the last
one has ``"done": true``, ``done_reason`` and the token counts ``prompt_eval_count`` /
``eval_count``. llmkit's options map to Ollama ``options`` (``max_tokens`` → ``num_predict``,
``temperature``, ``top_p``, ``stop``, ``seed``); ``keep_alive`` and ``format`` are top-level.

Reasoning: ``reasoning_effort`` becomes Ollama's ``think`` -- ``"none"`` is ``false``, other
levels ``true``, or the level itself for models that take named levels (``think_levels=True``,
gpt-oss: ``"low"``/``"medium"``/``"high"``; they cannot think ``"none"`` or ``"minimal"``).
The reasoning comes back in ``message.thinking`` (``thinking`` for generate), or as
``<think>`` tags in the content from servers that do not separate it. An assistant message's
reasoning is sent back as its ``thinking``: Ollama accepts it on every turn and the model's
template decides what to render.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from ..._thinking import ThinkTagDecoder, split_think
from ...errors import UnsupportedFeatureError, error_from_status
from ...types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    FinishEvent,
    GenerationParams,
    ImagePart,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
    new_response_id,
)
from .._embeddings_wire import ollama_embed_body, parse_ollama_embed
from .dialect_openai import OpenAIDialect
from .wire import BACKEND, Dialect, NDJSONParser, WireCall, counted_usage, guard

__all__ = ["OllamaDialect", "ollama_payload"]

# Request fields Ollama reads at the top level; any other key in request.extra is a model
# option (num_ctx, top_k, repeat_penalty, mirostat, ...) and goes under "options".
_TOP_LEVEL = frozenset(
    {"format", "keep_alive", "think", "raw", "template", "system", "context", "images", "suffix"}
)
_FINISH = {"stop": "stop", "length": "length"}


def _message(message: Message) -> dict[str, Any]:
    if message.tool_calls:
        raise UnsupportedFeatureError("rest (ollama dialect): tool calls need the openai dialect")
    out: dict[str, Any] = {"role": message.role, "content": message.text}
    if message.reasoning:
        out["thinking"] = message.reasoning
    images = []
    if isinstance(message.content, list):
        for part in message.content:
            if isinstance(part, ImagePart):
                url = part.image_url.url
                if not url.startswith("data:") or "," not in url:
                    raise UnsupportedFeatureError(
                        "rest (ollama dialect): images must be data: URIs (base64); "
                        "Ollama does not fetch URLs"
                    )
                images.append(url.split(",", 1)[1])
            elif not isinstance(part, TextPart):
                raise UnsupportedFeatureError(
                    f"rest (ollama dialect): {part.type} parts are not supported; Ollama's "
                    "native API takes text and images"
                )
    if images:
        out["images"] = images
    return out


def ollama_payload(
    params: GenerationParams,
    extra: Mapping[str, Any],
    *,
    stream: bool,
    keep_alive: str | float | None,
    think_levels: bool = False,
) -> dict[str, Any]:
    """The option and top-level fields of an Ollama request (without model and input)."""
    given = {k: v for k, v in params.given().items() if v is not None}
    if "tools" in given or "tool_choice" in given:
        raise UnsupportedFeatureError("rest (ollama dialect): tools need the openai dialect")
    payload: dict[str, Any] = {"stream": stream}
    if "reasoning_effort" in given:
        payload["think"] = think_value(given.pop("reasoning_effort"), levels=think_levels)
    options: dict[str, Any] = {}
    if "max_tokens" in given:
        options["num_predict"] = given["max_tokens"]
    for name in ("temperature", "top_p", "stop", "seed"):
        if name in given:
            options[name] = given[name]
    fmt = given.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        payload["format"] = (fmt.get("json_schema") or {}).get("schema") or "json"
    elif fmt.get("type") == "json_object":
        payload["format"] = "json"
    if keep_alive is not None:
        payload["keep_alive"] = keep_alive
    for key, value in extra.items():
        if key == "options" and isinstance(value, Mapping):
            options.update(value)
        elif key in _TOP_LEVEL:
            payload[key] = value
        else:
            options[key] = value
    if options:
        payload["options"] = options
    return payload


def think_value(effort: str, *, levels: bool) -> bool | str:
    """Ollama's ``think`` for a ``reasoning_effort``; raises for a level the model's kind of
    switch cannot express."""
    if not levels:
        return effort != "none"
    if effort in ("low", "medium", "high"):
        return effort
    raise UnsupportedFeatureError(
        f"rest (ollama dialect): reasoning_effort={effort!r} cannot be honoured by a model "
        "with named thinking levels (think_levels=True takes 'low', 'medium' or 'high')"
    )


def _created(data: Mapping[str, Any]) -> int:
    stamp = data.get("created_at")
    if isinstance(stamp, str):
        try:
            # Ollama sends nanoseconds and a zone; 3.10's fromisoformat takes neither, and
            # whole seconds are all ChatResponse.created keeps.
            return int(datetime.fromisoformat(stamp[:19]).replace(tzinfo=timezone.utc).timestamp())
        except ValueError:
            pass
    return int(time.time())


def _usage(data: Mapping[str, Any], prompt_text: str) -> Usage:
    return counted_usage(data.get("prompt_eval_count"), data.get("eval_count"), prompt_text)


def _check(data: Any) -> None:
    if isinstance(data, Mapping) and data.get("error") is not None:
        # Ollama reports failures as {"error": "..."}, also as a line of a 200 stream.
        raise error_from_status(500, dict(data), backend=BACKEND)


class OllamaStreamParser(NDJSONParser):
    """NDJSON lines of ``/api/chat`` (``field="message"``) or ``/api/generate`` → events."""

    def __init__(self, model: str, prompt_text: str, *, chat: bool) -> None:
        super().__init__()
        self._model = model
        self._prompt_text = prompt_text
        self._chat = chat
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._tags: ThinkTagDecoder | None = ThinkTagDecoder() if chat else None

    def on_object(self, obj: Any) -> list[StreamEvent]:
        _check(obj)
        source = (obj.get("message") or {}) if self._chat else obj
        text = source.get("content") if self._chat else obj.get("response")
        events: list[StreamEvent] = []
        thinking = source.get("thinking")
        if thinking:
            if self._tags is not None:  # the server separates reasoning itself
                events.extend(self._tags.flush())
                self._tags = None
            events.append(ReasoningDelta(reasoning=thinking))
        if text:
            if self._tags is None:
                events.append(TextDelta(delta=text))
            else:
                events.extend(self._tags.feed(text))
                if self._tags.passthrough:
                    self._tags = None
        if obj.get("model"):
            self._model = str(obj["model"])
        if obj.get("done"):
            if self._tags is not None:
                events.extend(self._tags.flush())
                self._tags = None
            self.done = True
            self._finish = _FINISH.get(obj.get("done_reason") or "stop", "stop")
            usage = _usage(obj, self._prompt_text)
            if usage.total_tokens:
                self._usage = usage
        return events

    def closing(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._usage is not None:
            events.append(UsageEvent(usage=self._usage))
        events.append(FinishEvent(finish_reason=self._finish or "stop", model=self._model))
        return events


class OllamaDialect(Dialect):
    """Ollama's native API on the replica's server root."""

    name = "ollama"
    # The OpenAI-compatible API's, less tools (they need the openai dialect) and audio and
    # file parts.
    capabilities = replace(OpenAIDialect.capabilities, tools=False, audio=False, files=False)

    def embed(self, request: EmbeddingRequest) -> WireCall:
        """``/api/embed``: ``{"model", "input": [...]}`` in, ``{"embeddings": [...]}`` out."""
        body = ollama_embed_body(request, request.model)
        return self._embed_call(request, "root", "/api/embed", body, parse_ollama_embed)

    def chat(self, request: ChatRequest, *, stream: bool) -> WireCall:
        payload = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            **ollama_payload(
                request.params,
                request.extra,
                stream=stream,
                keep_alive=self.options.keep_alive,
                think_levels=self.options.think_levels,
            ),
        }
        return self._call("/api/chat", payload, request.model, request.prompt_text(), stream)

    def complete(self, request: CompletionRequest, *, stream: bool) -> WireCall:
        payload = {
            "model": request.model,
            "prompt": request.prompt,
            **ollama_payload(
                request.params,
                request.extra,
                stream=stream,
                keep_alive=self.options.keep_alive,
                think_levels=self.options.think_levels,
            ),
        }
        return self._call("/api/generate", payload, request.model, request.prompt, stream)

    def _call(
        self, path: str, payload: dict[str, Any], model: str, prompt_text: str, stream: bool
    ) -> WireCall:
        chat = path == "/api/chat"
        spec = self.options.spec

        def parse(data: Any, headers: Mapping[str, str]) -> ChatResponse:
            response: ChatResponse = guard(
                "reply", data, _parse, data, model, prompt_text, spec, chat
            )
            return response

        return WireCall(
            on="root",
            path=path,
            payload=payload,
            stream=stream,
            parse=parse,
            new_parser=lambda: OllamaStreamParser(model, prompt_text, chat=chat),
        )


def _parse(data: Any, model: str, prompt_text: str, spec: str, chat: bool) -> ChatResponse:
    _check(data)
    source = data["message"] if chat else data
    text = source.get("content") if chat else data["response"]
    if not isinstance(text, str):
        raise TypeError("the reply has no text")
    reasoning = source.get("thinking") or None
    if reasoning is None and chat:
        reasoning, text = split_think(text)
    return ChatResponse(
        message=Message(role="assistant", content=text, reasoning=reasoning),
        finish_reason=_FINISH.get(data.get("done_reason") or "stop", "stop"),
        usage=_usage(data, prompt_text),
        model=str(data.get("model") or model),
        backend=spec,
        id=new_response_id(),
        created=_created(data),
        raw=data,
    )
