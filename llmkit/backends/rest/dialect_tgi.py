"""The Text Generation Inference dialect of the REST backend (I/O-free).

Chat goes to TGI's OpenAI-compatible ``/v1/chat/completions`` (TGI applies the model's own
chat template there), unless the user supplies ``template``: then the messages are rendered
to a prompt here and sent to the native ``/generate`` / ``/generate_stream``. Raw completion
always uses the native endpoints.

Native replies: ``{"generated_text", "details": {"finish_reason", "generated_tokens", ...}}``;
token counts also come as ``x-prompt-tokens`` / ``x-generated-tokens`` headers. Streams are
SSE events ``{"token": {"text", "special"}, "generated_text", "details"}`` without ``[DONE]``;
errors are ``{"error", "error_type"}``.

TGI has no reasoning switch and no reasoning parser: ``reasoning_effort`` raises
:class:`~llmkit.errors.UnsupportedFeatureError`, and reasoning is read from ``<think>`` tags
in the generated text (a prompt that ends inside an open ``<think>`` starts the reply there).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..._thinking import ThinkTagDecoder, opens_thinking, split_think
from ...errors import UnsupportedFeatureError, error_from_status
from ...types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    FinishEvent,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    Usage,
    UsageEvent,
    new_response_id,
)
from .._embeddings_wire import parse_tei_embed, tei_embed_body
from .dialect_openai import OpenAIDialect
from .wire import (
    BACKEND,
    Dialect,
    SSEParser,
    TemplateFn,
    WireCall,
    counted_usage,
    guard,
)

__all__ = ["TEMPLATES", "TGIDialect", "render_template"]

# Per-message format strings. The generation prompt is the part before "{content}" rendered
# for the assistant role, so one string describes both.
TEMPLATES = {
    "chatml": "<|im_start|>{role}\n{content}<|im_end|>\n",
    "llama3": "<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
}

_FINISH = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}

# TGI error_type → the HTTP status TGI itself uses for it.
_ERROR_STATUS = {"validation": 422, "overloaded": 429, "tokenizer": 422}


def render_template(template: str | TemplateFn, messages: list[Message]) -> str:
    """Render chat messages to one prompt with a preset name, a format string using
    ``{role}`` and ``{content}``, or a callable taking OpenAI-shaped message dicts."""
    if callable(template):
        return template([m.to_openai() for m in messages])
    for m in messages:
        if isinstance(m.content, list) and any(p.type != "text" for p in m.content):
            raise UnsupportedFeatureError(
                "rest (tgi dialect): a text template cannot carry images, audio or files; "
                "drop template= to use TGI's OpenAI-compatible chat API"
            )
    fmt = TEMPLATES.get(template, template)
    rendered = "".join(fmt.format(role=m.role, content=m.text) for m in messages)
    return rendered + fmt.split("{content}", 1)[0].format(role="assistant")


def _grammar(response_format: Mapping[str, Any]) -> dict[str, Any] | None:
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        return {"type": "json", "value": schema}
    if kind == "json_object":
        return {"type": "json", "value": {"type": "object"}}
    if kind in ("json", "regex"):  # already TGI's own grammar shape
        return dict(response_format)
    return None


def tgi_parameters(params: GenerationParams, extra: Mapping[str, Any]) -> dict[str, Any]:
    """llmkit's generation options as TGI ``parameters``; ``extra`` adds TGI-specific ones."""
    given = {k: v for k, v in params.given().items() if v is not None}
    if "tools" in given or "tool_choice" in given:
        raise UnsupportedFeatureError(
            "rest (tgi dialect with a template): tools need TGI's /v1/chat/completions; "
            "drop the 'template' option to use it"
        )
    out: dict[str, Any] = {"details": True}  # details carry the finish reason and token count
    if "max_tokens" in given:
        out["max_new_tokens"] = given["max_tokens"]
    if "temperature" in given:
        # TGI rejects temperature=0; greedy decoding is how it spells "deterministic".
        if given["temperature"] == 0:
            out["do_sample"] = False
        else:
            out["temperature"] = given["temperature"]
    if "top_p" in given and given["top_p"] < 1:  # TGI requires 0 < top_p < 1
        out["top_p"] = given["top_p"]
    if "stop" in given:
        out["stop"] = given["stop"]
    if "seed" in given:
        out["seed"] = given["seed"]
    if "response_format" in given:
        grammar = _grammar(given["response_format"])
        if grammar is not None:
            out["grammar"] = grammar
    nested = extra.get("parameters")
    out.update({k: v for k, v in extra.items() if k != "parameters"})
    if isinstance(nested, Mapping):
        out.update(nested)
    return out


def _error(obj: Mapping[str, Any]) -> Exception:
    status = _ERROR_STATUS.get(str(obj.get("error_type") or ""), 500)
    return error_from_status(status, dict(obj), backend=BACKEND)


class TGIStreamParser(SSEParser):
    """``/generate_stream`` events → llmkit events (the stream ends at EOF, no ``[DONE]``)."""

    def __init__(self, model: str, prompt_text: str, tags: ThinkTagDecoder | None = None) -> None:
        super().__init__()
        self._model = model
        self._prompt_text = prompt_text
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._tags = tags

    def on_object(self, obj: Any, event: str) -> list[StreamEvent]:
        if obj.get("error") is not None:
            raise _error(obj)
        events: list[StreamEvent] = []
        token = obj.get("token") or {}
        if token.get("text") and not token.get("special"):
            if self._tags is None:
                events.append(TextDelta(delta=token["text"]))
            else:
                events.extend(self._tags.feed(token["text"]))
        details = obj.get("details")
        if details:
            if self._tags is not None:
                events.extend(self._tags.flush())
            self._finish = _FINISH.get(str(details.get("finish_reason")), "stop")
            self._usage = counted_usage(
                details.get("input_length"), details.get("generated_tokens"), self._prompt_text
            )
            self.done = True  # the event with details is TGI's last
        return events

    def closing(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._usage is not None and not (self._usage.estimated and not self._usage.total_tokens):
            events.append(UsageEvent(usage=self._usage))
        events.append(FinishEvent(finish_reason=self._finish or "stop", model=self._model))
        return events


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class TGIDialect(Dialect):
    """TGI: native ``/generate`` with a user template or for completion, else its OpenAI API."""

    name = "tgi"
    # Vision through TGI's OpenAI-compatible chat API (not a text template); tools, audio and
    # file parts are not offered.
    capabilities = replace(OpenAIDialect.capabilities, tools=False, audio=False, files=False)

    def embed(self, request: EmbeddingRequest) -> WireCall:
        """Text Embeddings Inference's native ``/embed`` (a bare list of vectors back)."""
        return self._embed_call(request, "root", "/embed", tei_embed_body(request), parse_tei_embed)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._openai = OpenAIDialect(self.options)

    def chat(self, request: ChatRequest, *, stream: bool) -> WireCall:
        _no_effort(request.params)
        if self.options.template is None:
            return self._openai.chat(request, stream=stream)
        prompt = render_template(self.options.template, request.messages)
        return self._native(
            prompt, request.model, request.params, request.extra, stream=stream, chat=True
        )

    def complete(self, request: CompletionRequest, *, stream: bool) -> WireCall:
        _no_effort(request.params)
        return self._native(
            request.prompt, request.model, request.params, request.extra, stream=stream
        )

    def _inside(self, prompt: str) -> bool | None:
        """Where a chat reply to ``prompt`` starts: inside the reasoning (``True``), before
        it (``False``), or ``None`` when tags are not read."""
        tags = self.options.think_tags
        if tags == "off":
            return None
        return tags == "open" or opens_thinking(prompt)

    def _native(
        self,
        prompt: str,
        model: str,
        params: GenerationParams,
        extra: Mapping[str, Any],
        *,
        stream: bool,
        chat: bool = False,
    ) -> WireCall:
        payload = {"inputs": prompt, "parameters": tgi_parameters(params, extra)}
        spec = self.options.spec
        inside = self._inside(prompt) if chat else None

        def parse(data: Any, headers: Mapping[str, str]) -> ChatResponse:
            response: ChatResponse = guard(
                "reply", data, _parse_generate, data, headers, model, prompt, spec, inside
            )
            return response

        def new_parser() -> TGIStreamParser:
            tags = None if inside is None else ThinkTagDecoder(inside=inside)
            return TGIStreamParser(model, prompt, tags)

        return WireCall(
            on="root",
            path="/generate_stream" if stream else "/generate",
            payload=payload,
            stream=stream,
            parse=parse,
            new_parser=new_parser,
        )


def _no_effort(params: GenerationParams) -> None:
    if params.effort is not None:
        raise UnsupportedFeatureError(
            "rest (tgi dialect): TGI has no reasoning switch, so reasoning_effort cannot be "
            "honoured; drop it (reasoning in <think> tags is still read)"
        )


def _parse_generate(
    data: Any, headers: Mapping[str, str], model: str, prompt: str, spec: str, inside: bool | None
) -> ChatResponse:
    if isinstance(data, list):  # TGI's compatibility route answers with a one-element list
        data = data[0]
    if data.get("error") is not None:
        raise _error(data)
    text = data["generated_text"]
    if not isinstance(text, str):
        raise TypeError("generated_text is not a string")
    details = data.get("details") or {}
    prompt_tokens = _header_int(headers, "x-prompt-tokens")
    completion_tokens = details.get("generated_tokens")
    if completion_tokens is None:
        completion_tokens = _header_int(headers, "x-generated-tokens")
    reasoning = None
    if inside is not None:
        reasoning, text = split_think(text, inside=inside)
    return ChatResponse(
        message=Message(role="assistant", content=text, reasoning=reasoning),
        finish_reason=_FINISH.get(str(details.get("finish_reason")), "stop"),
        usage=counted_usage(prompt_tokens, completion_tokens, prompt),
        model=model,
        backend=spec,
        id=new_response_id(),
        created=int(time.time()),
        raw=data,
    )
