"""The OpenAI dialect with ``api="responses"``: chat calls go to ``/v1/responses`` (I/O-free).

vLLM, ``llmkit serve`` and other OpenAI-compatible servers implement the Responses API next
to chat completions. The request and reply mapping is the shared
:mod:`llmkit.backends._responses_wire` code (the same as the ``openai`` SDK backend's);
raw completions and embeddings stay on their OpenAI-dialect endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...types import ChatRequest, ChatResponse, StreamEvent
from .._responses_wire import (
    ResponsesEventDecoder,
    parse_response,
    responses_body,
    responses_capabilities,
)
from .dialect_openai import OpenAIDialect
from .wire import BACKEND, SSEParser, WireCall, guard

__all__ = ["ResponsesDialect", "ResponsesStreamParser"]


class ResponsesStreamParser(SSEParser):
    """Typed Responses events → llmkit events; the terminal event (not ``[DONE]``) ends
    the reply, and a body that ends before it was cut off."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self._events = ResponsesEventDecoder(backend=BACKEND, model=model)

    def on_object(self, obj: Any, event: str) -> list[StreamEvent]:
        events = self._events.feed(obj)
        if self._events.finished:
            self.done = True  # the backend drains the rest and closes
        return events

    def closing(self) -> list[StreamEvent]:
        return self._events.finish()

    def complete(self) -> bool:
        return self._events.finished


class ResponsesDialect(OpenAIDialect):
    """``/v1/responses`` for chat; everything else as :class:`OpenAIDialect`."""

    # The Responses API's message content takes no audio (see _responses_wire).
    capabilities = responses_capabilities(OpenAIDialect.capabilities, "responses")

    def chat(self, request: ChatRequest, *, stream: bool) -> WireCall:
        model = request.model
        return WireCall(
            on="api",
            path="/responses",
            payload=responses_body(request, model=model, stream=stream),
            stream=stream,
            parse=self._parse_response,
            new_parser=lambda: ResponsesStreamParser(model),
        )

    def _parse_response(self, data: Any, headers: Mapping[str, str]) -> ChatResponse:
        response: ChatResponse = guard(
            "reply", data, parse_response, data, backend=self.options.spec
        )
        return response
