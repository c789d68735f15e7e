"""A small, fast OpenAI-compatible mock server on 127.0.0.1 (stdlib asyncio, no dependencies).

Serves ``POST /v1/chat/completions`` (plain JSON, or SSE when the body says ``"stream": true``:
N content chunks, a finish chunk, a usage chunk when ``stream_options.include_usage`` is set,
then ``[DONE]``), ``POST /v1/completions`` and ``POST /v1/responses`` (a ``response`` object,
or the Responses event sequence with N ``response.output_text.delta`` events). Replies are pre-rendered and cached, so the
server costs next to nothing per request and a benchmark measures the client.

Per request knobs (header or query parameter):
    ``x-mock-chunks`` / ``?chunks=N``  content chunks in a streamed reply (default: the server's)
    ``x-mock-status`` / ``?status=N``  answer with this HTTP error status and an OpenAI error body

Use it from Python (a subprocess by default, so the server never competes with the client
for the GIL; ``in_thread=True`` runs it on a thread of the caller's process instead)::

    from mock_server import MockServer
    with MockServer(chunks=100) as url:       # url == "http://127.0.0.1:PORT/v1"
        ...

or from a shell: ``python benchmarks/mock_server.py --port 8000 --chunks 100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["MockServer", "serve"]

CREATED = 1_700_000_000
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _head(status: int, content_type: str, extra: str = "") -> bytes:
    reason = _REASONS.get(status, "Status")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
        f"x-request-id: req_mock\r\n{extra}"
    ).encode()


def _with_length(status: int, content_type: str, body: bytes, extra: str = "") -> bytes:
    return (
        _head(status, content_type, extra) + f"content-length: {len(body)}\r\n\r\n".encode() + body
    )


class _Replies:
    """Pre-rendered replies, cached by shape."""

    def __init__(self, chunk_text: str) -> None:
        self.chunk_text = chunk_text
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def chat(self, model: str, n: int) -> bytes:
        key = ("chat", model, n)
        if key not in self._cache:
            body = {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": CREATED,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": self.chunk_text * n,
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n},
            }
            self._cache[key] = _with_length(200, "application/json", _json(body))
        return self._cache[key]

    def chat_stream(self, model: str, n: int, usage: bool) -> bytes:
        key = ("chat-stream", model, n, usage)
        if key not in self._cache:
            base = {
                "id": "chatcmpl-mock",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_mock",
            }

            def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
                return {
                    **base,
                    "choices": [
                        {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                    ],
                }

            events = [choice({"role": "assistant", "content": "", "refusal": None})]
            events += [choice({"content": self.chunk_text}) for _ in range(n)]
            events.append(choice({}, "stop"))
            if usage:
                events.append(
                    {
                        **base,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": 10,
                            "completion_tokens": n,
                            "total_tokens": 10 + n,
                        },
                    }
                )
            self._cache[key] = self._sse([b"data: " + _json(e) for e in events])
        return self._cache[key]

    def completion(self, model: str, n: int, stream: bool) -> bytes:
        key = ("completion", model, n, stream)
        if key not in self._cache:
            base = {
                "id": "cmpl-mock",
                "object": "text_completion",
                "created": CREATED,
                "model": model,
            }
            if not stream:
                body = {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "text": self.chunk_text * n,
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n},
                }
                self._cache[key] = _with_length(200, "application/json", _json(body))
            else:
                events = [
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "text": self.chunk_text,
                                "finish_reason": None,
                                "logprobs": None,
                            }
                        ],
                    }
                    for _ in range(n)
                ]
                events.append(
                    {
                        **base,
                        "choices": [
                            {"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}
                        ],
                    }
                )
                self._cache[key] = self._sse([b"data: " + _json(e) for e in events])
        return self._cache[key]

    def responses(self, model: str, n: int, stream: bool) -> bytes:
        """The Responses API: one message item of N chunks, as a reply or as events."""
        key = ("responses", model, n, stream)
        if key not in self._cache:
            text = self.chunk_text * n
            part = {"type": "output_text", "text": text, "annotations": []}
            item = {"id": "msg_mock", "type": "message", "role": "assistant"}
            done = {**item, "status": "completed", "content": [part]}
            usage = {
                "input_tokens": 10,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": n,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 10 + n,
            }
            reply = {
                "id": "resp_mock",
                "object": "response",
                "created_at": CREATED,
                "status": "completed",
                "model": model,
                "output": [done],
                "parallel_tool_calls": True,
                "tool_choice": "auto",
                "tools": [],
                "usage": usage,
            }
            if not stream:
                self._cache[key] = _with_length(200, "application/json", _json(reply))
            else:
                at = {"item_id": "msg_mock", "output_index": 0, "content_index": 0}
                start = {**reply, "status": "in_progress", "output": [], "usage": None}
                events: list[dict[str, Any]] = [
                    {"type": "response.created", "response": start},
                    {"type": "response.in_progress", "response": start},
                    {
                        "type": "response.output_item.added",
                        "output_index": 0,
                        "item": {**item, "status": "in_progress", "content": []},
                    },
                    {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
                ]
                events += [
                    {
                        "type": "response.output_text.delta",
                        **at,
                        "delta": self.chunk_text,
                        "logprobs": [],
                    }
                    for _ in range(n)
                ]
                events += [
                    {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
                    {"type": "response.content_part.done", **at, "part": part},
                    {"type": "response.output_item.done", "output_index": 0, "item": done},
                    {"type": "response.completed", "response": reply},
                ]
                datas = [
                    b"event: "
                    + e["type"].encode()
                    + b"\ndata: "
                    + _json({**e, "sequence_number": i})
                    for i, e in enumerate(events)
                ]
                self._cache[key] = self._sse(datas, done_marker=False)
        return self._cache[key]

    @staticmethod
    def _sse(datas: list[bytes], done_marker: bool = True) -> bytes:
        # One HTTP chunk per SSE event, as OpenAI frames them, all written at once.
        parts = [_head(200, "text/event-stream", "transfer-encoding: chunked\r\n") + b"\r\n"]
        for data in [*datas, b"data: [DONE]"] if done_marker else datas:
            event = data + b"\n\n"
            parts.append(f"{len(event):x}\r\n".encode() + event + b"\r\n")
        parts.append(b"0\r\n\r\n")
        return b"".join(parts)

    def embeddings(self, model: str, payload: dict[str, Any]) -> bytes:
        """One 384-dimension vector per input, as the float32 base64 the SDK asks for (or
        floats); the same bytes per input, so the server's cost stays flat."""
        texts = payload.get("input") or [""]
        texts = [texts] if isinstance(texts, str) else texts
        vector = self._vector_b64 if payload.get("encoding_format") == "base64" else self._vector
        data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(len(texts))]
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": 8 * len(texts), "total_tokens": 8 * len(texts)},
        }
        return _with_length(200, "application/json", _json(body))

    _vector = [round(0.001 * i, 3) for i in range(384)]
    _vector_b64 = base64.b64encode(struct.pack("<384f", *_vector)).decode("ascii")

    def error(self, status: int) -> bytes:
        body = {
            "error": {
                "message": f"mock error {status}",
                "type": "mock_error",
                "code": None,
                "param": None,
            }
        }
        extra = "retry-after: 0\r\n" if status == 429 else ""
        return _with_length(status, "application/json", _json(body), extra)


async def _handle(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    replies: _Replies,
    default_chunks: int,
) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
            url = urlsplit(target)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            writer.write(_route(method, url.path, query, headers, body, replies, default_chunks))
            if headers.get("connection", "").lower() == "close":
                await writer.drain()
                return
            await writer.drain()
    finally:
        writer.close()


def _route(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    replies: _Replies,
    default_chunks: int,
) -> bytes:
    status = int(headers.get("x-mock-status") or query.get("status") or 200)
    if status >= 400:
        return replies.error(status)
    if method != "POST" or not path.endswith(
        ("/chat/completions", "/completions", "/responses", "/embeddings")
    ):
        return replies.error(404)
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return replies.error(400)
    n = int(headers.get("x-mock-chunks") or query.get("chunks") or default_chunks)
    model = str(payload.get("model") or "mock")
    stream = bool(payload.get("stream"))
    if path.endswith("/responses"):
        return replies.responses(model, n, stream)
    if path.endswith("/embeddings"):
        return replies.embeddings(model, payload)
    if path.endswith("/chat/completions"):
        if stream:
            usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            return replies.chat_stream(model, n, usage)
        return replies.chat(model, n)
    return replies.completion(model, n, stream)


async def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    chunks: int = 20,
    chunk_text: str = "tok ",
    ready: Any = None,
) -> None:
    """Run the server until cancelled; ``ready(port)`` is called once it listens."""
    replies = _Replies(chunk_text)
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, replies, chunks), host, port, limit=1 << 20
    )
    bound = server.sockets[0].getsockname()[1]
    if ready is not None:
        ready(bound)
    async with server:
        await server.serve_forever()


class MockServer:
    """Start the mock server for a ``with`` block; entering gives its base URL (``.../v1``).

    Args:
        chunks: content chunks in a streamed reply (per request: ``x-mock-chunks``).
        chunk_text: the text of each chunk.
        in_thread: run on a background thread of this process instead of a subprocess.
    """

    def __init__(
        self,
        *,
        chunks: int = 20,
        chunk_text: str = "tok ",
        host: str = "127.0.0.1",
        port: int = 0,
        in_thread: bool = False,
    ) -> None:
        self.chunks, self.chunk_text, self.host, self.port = chunks, chunk_text, host, port
        self.in_thread = in_thread
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> str:
        if self.in_thread:
            started = threading.Event()

            def ready(port: int) -> None:
                self.port = port
                started.set()

            def run() -> None:
                loop = asyncio.new_event_loop()
                self._loop = loop
                self._task = loop.create_task(
                    serve(
                        self.host,
                        self.port,
                        chunks=self.chunks,
                        chunk_text=self.chunk_text,
                        ready=ready,
                    )
                )
                try:
                    loop.run_until_complete(self._task)
                except asyncio.CancelledError:
                    pass
                finally:
                    loop.close()

            self._thread = threading.Thread(target=run, name="mock-openai-server", daemon=True)
            self._thread.start()
            if not started.wait(10):
                raise RuntimeError("mock server did not start")
            return self.url
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--chunks",
            str(self.chunks),
            "--chunk-text",
            self.chunk_text,
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"mock server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self.url

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._thread is not None and self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-text", default="tok ")
    args = parser.parse_args()

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    try:
        asyncio.run(
            serve(args.host, args.port, chunks=args.chunks, chunk_text=args.chunk_text, ready=ready)
        )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
