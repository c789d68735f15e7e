"""Helpers for the openai backend tests: bodies, SSE bytes, byte streams, sync/async calls."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx
import respx

from llmkit.types import ChatRequest, CompletionRequest, GenerationParams, Message

# Recognisable, so a leak anywhere is easy to spot; shaped like a real key so that the
# generic key patterns in llmkit.errors.redact would catch it too.
KEY = "sk-test-LLMKITFAKEKEY-0123456789abcdef"
BASE = "https://api.openai.com/v1"


def chat_request(text: str = "Hello", **params: Any) -> ChatRequest:
    extra = params.pop("extra", {})
    timeout = params.pop("timeout", None)
    req = ChatRequest(
        model=params.pop("model", "gpt-4o-mini"),
        messages=[Message.user(text)],
        params=GenerationParams(**params),
        extra=extra,
    )
    if timeout is not None:
        req.timeout = timeout
    return req


def completion_request(prompt: str = "Once upon", **params: Any) -> CompletionRequest:
    extra = params.pop("extra", {})
    return CompletionRequest(
        model="gpt-3.5-turbo-instruct",
        prompt=prompt,
        params=GenerationParams(**params),
        extra=extra,
    )


def completion_body(
    text: str | None = "Hi there!",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    usage: tuple[int, int] = (9, 3),
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        },
        "system_fingerprint": "fp_1",
    }


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` as OpenAI sends it."""
    out: dict[str, Any] = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        out["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return out


def sse(*items: dict[str, Any] | str, done: bool = True) -> bytes:
    """SSE bytes for the given chunks (dicts are JSON-encoded), then ``[DONE]``."""
    parts = [f"data: {json.dumps(i) if isinstance(i, dict) else i}\n\n" for i in items]
    if done:
        parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


def text_stream_chunks(words: Iterable[str] = ("Hi", " there", "!")) -> list[dict[str, Any]]:
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": w}) for w in words]
    chunks.append(chunk({}, finish_reason="stop"))
    chunks.append(chunk(None, usage=(9, 3)))
    return chunks


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in the given pieces; records whether it was closed.

    ``fail`` (an exception) is raised after the pieces, as a dropped connection would.
    """

    def __init__(self, pieces: Iterable[bytes], fail: BaseException | None = None) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.sent = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece
        if self.fail is not None:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.sent += 1
            yield piece
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(body: bytes | Pieces, status: int = 200, **headers: str) -> httpx.Response:
    stream = body if isinstance(body, Pieces) else Pieces([body])
    return httpx.Response(
        status,
        headers={"content-type": "text/event-stream", **headers},
        stream=stream,
    )


async def call(backend: Any, mode: str, request: Any) -> Any:
    """``chat`` (or ``complete`` for a CompletionRequest) in the given mode."""
    if isinstance(request, CompletionRequest):
        return backend.complete(request) if mode == "sync" else await backend.acomplete(request)
    return backend.chat(request) if mode == "sync" else await backend.achat(request)


async def collect(backend: Any, mode: str, request: ChatRequest) -> list[Any]:
    """All events of a stream in the given mode."""
    if mode == "sync":
        return list(backend.stream(request))
    return [event async for event in backend.astream(request)]


def sent_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)  # type: ignore[no-any-return]
