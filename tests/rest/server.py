"""A small OpenAI-compatible (plus TGI- and Ollama-native) server for end-to-end tests:
starlette served by uvicorn in a thread on 127.0.0.1, on a free port.

The reply echoes the last user message word by word. A last message of ``"drop"`` makes a
streamed reply break off after its first chunk (the app raises, uvicorn closes the
connection mid-body), which is what a crashed replica looks like to a client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


class Dropped(Exception):
    """Raised inside a streamed body to cut the connection."""


def _words(body: dict[str, Any]) -> list[str]:
    if "messages" in body:
        text = str(body["messages"][-1]["content"])
    else:
        text = str(body.get("prompt") or body.get("inputs") or "")
    words = f"echo: {text}".split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _usage(words: list[str]) -> dict[str, int]:
    return {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3 + len(words)}


class State:
    """What the server saw (for assertions)."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.bodies: list[dict[str, Any]] = []


def make_app(state: State | None = None) -> Starlette:
    state = state or State()

    async def record(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        state.headers.append(dict(request.headers))
        state.bodies.append(body)
        return body

    async def chat(request: Request) -> Response:
        body = await record(request)
        words = _words(body)
        model = str(body.get("model", "")) + "-served"  # servers echo the model with a suffix
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-e2e",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(words)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": _usage(words),
                }
            )
        drop = body["messages"][-1]["content"] == "drop"

        async def events() -> AsyncIterator[bytes]:
            for i, word in enumerate(words):
                chunk = {
                    "id": "chatcmpl-e2e",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
                }
                yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                if drop and i == 0:
                    raise Dropped("replica crashed mid-stream")
            last = {
                "id": "chatcmpl-e2e",
                "model": model,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            yield b"data: " + json.dumps(last).encode() + b"\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "id": "chatcmpl-e2e",
                    "model": model,
                    "choices": [],
                    "usage": _usage(words),
                }
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def generate(request: Request) -> Response:
        body = await record(request)
        words = _words(body)
        details = {"finish_reason": "eos_token", "generated_tokens": len(words), "input_length": 3}
        if request.url.path == "/generate":
            return JSONResponse({"generated_text": "".join(words), "details": details})

        async def events() -> AsyncIterator[bytes]:
            for i, word in enumerate(words):
                last = i == len(words) - 1
                event = {
                    "token": {"id": i, "text": word, "special": False},
                    "details": details if last else None,
                }
                yield b"data:" + json.dumps(event).encode() + b"\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def ollama_chat(request: Request) -> Response:
        body = await record(request)
        words = _words(body)
        final = {
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": len(words),
        }
        if not body.get("stream", True):
            return JSONResponse(
                {
                    "model": body["model"],
                    "message": {"role": "assistant", "content": "".join(words)},
                    **final,
                }
            )

        async def lines() -> AsyncIterator[bytes]:
            for word in words:
                yield (
                    json.dumps(
                        {
                            "model": body["model"],
                            "message": {"role": "assistant", "content": word},
                            "done": False,
                        }
                    ).encode()
                    + b"\n"
                )
            yield (
                json.dumps(
                    {
                        "model": body["model"],
                        "message": {"role": "assistant", "content": ""},
                        **final,
                    }
                ).encode()
                + b"\n"
            )

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def health(request: Request) -> Response:
        return Response(status_code=200)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "my-model", "object": "model"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/generate", generate, methods=["POST"]),
            Route("/generate_stream", generate, methods=["POST"]),
            Route("/api/chat", ollama_chat, methods=["POST"]),
            Route("/health", health),
            Route("/v1/models", models),
        ]
    )


class ServerThread:
    """Run an ASGI app with uvicorn on 127.0.0.1 (free port) in a thread; stop on exit."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, name="llmkit-test-server", daemon=True
        )
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the test server did not stop"
