"""Responses API payloads shaped like OpenAI's (checked against the SDK's own types in
test_kit_shapes): reply objects, output items and the full SSE event sequence."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx

MODEL = "gpt-5-2025-08-07"


def message_item(text: str, id: str = "msg_1") -> dict[str, Any]:
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def call_item(
    name: str, arguments: str, call_id: str = "call_1", id: str = "fc_1"
) -> dict[str, Any]:
    return {
        "id": id,
        "type": "function_call",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def reasoning_item(
    summary: Sequence[str] = (), encrypted: str | None = None, id: str = "rs_1"
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": id,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": s} for s in summary],
    }
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def response_obj(
    output: list[dict[str, Any]],
    *,
    status: str = "completed",
    usage: tuple[int, int, int] = (9, 3, 0),
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
    id: str = "resp_abc",
    model: str = MODEL,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": None
        if status == "in_progress"
        else {
            "input_tokens": usage[0],
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage[1],
            "output_tokens_details": {"reasoning_tokens": usage[2]},
            "total_tokens": usage[0] + usage[1],
        },
    }


def _split(text: str, pieces: int) -> list[str]:
    if pieces <= 1 or len(text) <= 1:
        return [text]
    size = max(1, len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


def stream_events(
    output: list[dict[str, Any]],
    *,
    pieces: int = 3,
    status: str = "completed",
    incomplete: str | None = None,
    usage: tuple[int, int, int] = (9, 3, 0),
    terminal: bool = True,
) -> list[dict[str, Any]]:
    """The event sequence OpenAI sends for a reply whose output is ``output``."""
    events: list[dict[str, Any]] = []
    start = response_obj([], status="in_progress")
    events.append({"type": "response.created", "response": start})
    events.append({"type": "response.in_progress", "response": start})
    for index, item in enumerate(output):
        kind = item["type"]
        base = {"item_id": item["id"], "output_index": index}
        if kind == "message":
            text = item["content"][0]["text"]
            added = {**item, "status": "in_progress", "content": []}
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(
                {"type": "response.content_part.added", **base, "content_index": 0, "part": part}
            )
            for piece in _split(text, pieces):
                events.append(
                    {
                        "type": "response.output_text.delta",
                        **base,
                        "content_index": 0,
                        "delta": piece,
                        "logprobs": [],
                    }
                )
            events.append(
                {
                    "type": "response.output_text.done",
                    **base,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }
            )
            events.append(
                {
                    "type": "response.content_part.done",
                    **base,
                    "content_index": 0,
                    "part": {**part, "text": text},
                }
            )
        elif kind == "reasoning":
            added = {**item, "summary": []}
            added.pop("encrypted_content", None)
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            for j, summary in enumerate(item["summary"]):
                part = {"type": "summary_text", "text": ""}
                events.append(
                    {
                        "type": "response.reasoning_summary_part.added",
                        **base,
                        "summary_index": j,
                        "part": part,
                    }
                )
                for piece in _split(summary["text"], pieces):
                    events.append(
                        {
                            "type": "response.reasoning_summary_text.delta",
                            **base,
                            "summary_index": j,
                            "delta": piece,
                        }
                    )
                events.append(
                    {
                        "type": "response.reasoning_summary_text.done",
                        **base,
                        "summary_index": j,
                        "text": summary["text"],
                    }
                )
                events.append(
                    {
                        "type": "response.reasoning_summary_part.done",
                        **base,
                        "summary_index": j,
                        "part": summary,
                    }
                )
        elif kind == "function_call":
            added = {**item, "arguments": "", "status": "in_progress"}
            events.append(
                {"type": "response.output_item.added", "output_index": index, "item": added}
            )
            for piece in _split(item["arguments"], pieces):
                events.append(
                    {"type": "response.function_call_arguments.delta", **base, "delta": piece}
                )
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    "arguments": item["arguments"],
                    "name": item["name"],
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    if terminal:
        final = response_obj(output, status=status, incomplete=incomplete, usage=usage)
        kind = "response.completed" if status == "completed" else f"response.{status}"
        events.append({"type": kind, "response": final})
    return numbered(events)


def numbered(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**e, "sequence_number": i} for i, e in enumerate(events)]


def sse(events: list[dict[str, Any]]) -> bytes:
    """``event:`` and ``data:`` lines, no ``[DONE]`` (as OpenAI sends Responses streams)."""
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def failed_event(code: str, message: str, seq: int = 2) -> dict[str, Any]:
    error = {"code": code, "message": message}
    return {
        "type": "response.failed",
        "response": response_obj([], status="failed", error=error),
        "sequence_number": seq,
    }


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body in the given pieces; ``fail`` is raised after them (a dropped connection)."""

    def __init__(self, pieces: Sequence[bytes], fail: Exception | None = None) -> None:
        self.pieces = list(pieces)
        self.fail = fail
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fail is not None:
            raise self.fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail is not None:
            raise self.fail

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(
    body: bytes | Sequence[bytes], *, fail: Exception | None = None, **headers: str
) -> httpx.Response:
    pieces = [body] if isinstance(body, bytes) else list(body)
    return httpx.Response(
        200,
        headers={"content-type": "text/event-stream", **headers},
        stream=Pieces(pieces, fail),
    )
