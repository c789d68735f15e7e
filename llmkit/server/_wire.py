"""What the server sends, in OpenAI's wire shapes: the server turns every llmkit
:class:`~llmkit.ChatResponse` and stream event into an OpenAI-shaped dict through this
module, and nowhere else. The chat shapes delegate to the converters the rest of llmkit
uses (``ChatResponse.to_openai``, ``streaming.to_openai_chunk``), so a field added there
(``reasoning_content``, say) reaches the server's replies too; the text-completion shapes
exist only here.

Plain dicts, not the pydantic models of :mod:`._schemas`: building and validating a model
per stream chunk would cost more than the JSON encoding itself. The models describe these
dicts for ``/openapi.json``, and the tests validate real replies against them, so the two
cannot drift apart unnoticed.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..streaming import to_openai_chunk
from ..types import ChatResponse, FinishEvent, UsageEvent

__all__ = [
    "chat_chunk",
    "chat_completion",
    "chat_finish_chunk",
    "chat_usage_chunk",
    "completion_id",
    "text_completion",
    "text_completion_chunk",
    "text_completion_usage_chunk",
    "usage",
]


def usage(response: ChatResponse) -> dict[str, int]:
    """The ``usage`` object of a reply."""
    counts = response.usage
    return {
        "prompt_tokens": counts.prompt_tokens,
        "completion_tokens": counts.completion_tokens,
        "total_tokens": counts.total_tokens,
    }


# ---------------------------------------------------------------------------- chat


def chat_completion(response: ChatResponse, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object answering as ``model`` (the served name)."""
    payload = response.to_openai()
    payload["model"] = model
    return payload


# One ``chat.completion.chunk`` for a stream event (``first`` adds the role):
# chat_chunk(event, id=, model=, created=, first=). The shared converter itself, not a
# wrapper around it: this runs once per streamed token.
chat_chunk = to_openai_chunk


def chat_finish_chunk(
    response: ChatResponse, *, id: str, model: str, created: int, first: bool
) -> dict[str, Any]:
    """The closing chunk with the finish reason, for a backend stream that sent none."""
    end = FinishEvent(finish_reason=response.finish_reason)
    return to_openai_chunk(end, id=id, model=model, created=created, first=first)


def chat_usage_chunk(
    response: ChatResponse, *, id: str, model: str, created: int
) -> dict[str, Any]:
    """The last chunk of a stream with ``stream_options.include_usage``: empty ``choices``."""
    return to_openai_chunk(UsageEvent(usage=response.usage), id=id, model=model, created=created)


# ---------------------------------------------------------------------------- text completion


def completion_id() -> str:
    """A new ``cmpl-...`` id."""
    return "cmpl-" + uuid.uuid4().hex[:24]


def text_completion(response: ChatResponse, model: str) -> dict[str, Any]:
    """A ``text_completion`` object answering as ``model``."""
    return {
        "id": completion_id(),
        "object": "text_completion",
        "created": response.created,
        "model": model,
        "choices": [
            {
                "text": response.text,
                "index": 0,
                "logprobs": None,
                "finish_reason": response.finish_reason,
            }
        ],
        "usage": usage(response),
    }


def text_completion_chunk(
    chunk_id: str, created: int, model: str, text: str, finish_reason: str | None = None
) -> dict[str, Any]:
    """One streamed ``text_completion`` chunk."""
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
    }


def text_completion_usage_chunk(
    response: ChatResponse, chunk_id: str, created: int, model: str
) -> dict[str, Any]:
    """The usage chunk that ends a text-completion stream (empty ``choices``)."""
    return {
        **text_completion_chunk(chunk_id, created, model, ""),
        "choices": [],
        "usage": usage(response),
    }
