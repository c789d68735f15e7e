"""The OpenAI-compatible dialect of the REST backend (I/O-free).

vLLM, llama.cpp server, Ollama's ``/v1``, ``transformers serve`` and ``llmkit serve`` all
speak this wire format; they differ only in where they live. Payload building and parsing
are the shared :mod:`llmkit.backends._openai_wire` code; this module adds the endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...types import ChatRequest, ChatResponse, CompletionRequest, EmbeddingRequest
from .._embeddings_wire import openai_embedding_body, parse_openai_embeddings
from .._openai_wire import (
    StreamDecoder,
    ThinkTags,
    chat_payload,
    completion_payload,
    error_in_payload,
    parse_chat_completion,
    parse_completion,
)
from ..base import Capabilities
from .wire import BACKEND, Dialect, ParseFn, WireCall, guard

__all__ = ["OpenAIDialect", "OpenAIStreamParser"]


class OpenAIStreamParser(StreamDecoder):
    """``chat.completion.chunk`` (or streamed ``text_completion``) events → llmkit events:
    the shared :class:`~llmkit.backends._openai_wire.StreamDecoder`, labelled ``rest``."""

    __slots__ = ()

    def __init__(self, model: str, think_tags: ThinkTags = "auto") -> None:
        super().__init__(backend=BACKEND, model=model, think_tags=think_tags)


def _schema_as_json_object(payload: dict[str, Any]) -> None:
    """``json_schema`` response formats in the ``{"type": "json_object", "schema": ...}``
    form that llama-cpp-python's server takes."""
    fmt = payload.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        payload["response_format"] = {"type": "json_object", "schema": schema}


class OpenAIDialect(Dialect):
    """``/v1/chat/completions``, ``/v1/completions`` on the replica's API base."""

    name = "openai"
    # Everything the OpenAI API has. Content parts travel as OpenAI parts; whether the served
    # model reads them is the server's to say (a 400 comes back as BadRequestError).
    capabilities = Capabilities.every()

    def embed(self, request: EmbeddingRequest) -> WireCall:
        """``/v1/embeddings`` (vLLM, llama.cpp, Ollama's /v1, TEI's OpenAI route, llmkit serve)."""
        body = openai_embedding_body(request, request.model)
        return self._embed_call(request, "api", "/embeddings", body, parse_openai_embeddings)

    def chat(self, request: ChatRequest, *, stream: bool) -> WireCall:
        payload = chat_payload(request, stream=stream, include_usage=self.options.stream_usage)
        if self.options.schema_format == "json_object":
            _schema_as_json_object(payload)
        tags = self.options.think_tags
        return _call("/chat/completions", payload, stream, self._parse_chat, request.model, tags)

    def complete(self, request: CompletionRequest, *, stream: bool) -> WireCall:
        payload = completion_payload(
            request, stream=stream, include_usage=self.options.stream_usage
        )
        return _call("/completions", payload, stream, self._parse_completion, request.model)

    def _parse_chat(self, data: Any, headers: Mapping[str, str]) -> ChatResponse:
        _check(data)
        # backend= is the spec recorded on the response; errors raised with it are relabelled
        # "rest" by the backend shell.
        response: ChatResponse = guard(
            "reply",
            data,
            parse_chat_completion,
            data,
            backend=self.options.spec,
            think_tags=self.options.think_tags,
        )
        return response

    def _parse_completion(self, data: Any, headers: Mapping[str, str]) -> ChatResponse:
        _check(data)
        response: ChatResponse = guard(
            "reply", data, parse_completion, data, backend=self.options.spec
        )
        return response


def _call(
    path: str,
    payload: dict[str, Any],
    stream: bool,
    parse: ParseFn,
    model: str,
    think_tags: ThinkTags = "off",
) -> WireCall:
    """A call to ``path`` on the API base; a streamed reply is read by the shared decoder."""
    return WireCall(
        on="api",
        path=path,
        payload=payload,
        stream=stream,
        parse=parse,
        new_parser=lambda: OpenAIStreamParser(model, think_tags),
    )


def _check(data: Any) -> None:
    """Raise the error object a server sent with a 200 status instead of a reply."""
    if type(data) is dict and "choices" in data:
        return  # the usual reply: skip the slower general check
    error = error_in_payload(data, backend=BACKEND, model=None)
    if error is not None:
        raise error
