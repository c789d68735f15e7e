"""A fault-injecting HTTP server for the chaos suite: raw asyncio streams on 127.0.0.1.

Frameworks always answer with well-formed HTTP; a real outage does not. This server writes
its replies byte by byte by hand, so it can also reset the connection, hang up without a
reply, send a truncated body, send malformed JSON / SSE / NDJSON, stall before the first byte
or in the middle of a stream, and trickle a reply slower than any timeout.

It speaks three dialects, picked by the path:

- OpenAI-compatible ``POST .../v1/chat/completions`` and ``POST .../v1/completions`` (JSON,
  or SSE ``chat.completion.chunk`` / ``text_completion`` chunks when ``"stream": true``);
- TGI native ``POST .../generate`` and ``POST .../generate_stream`` (SSE without ``[DONE]``);
- Ollama native ``POST .../api/chat`` and ``POST .../api/generate`` (JSON, or NDJSON lines
  when ``"stream": true``).

**Scenario control by path.** Every URL starts with a scenario name:
``http://127.0.0.1:PORT/<scenario>/v1/chat/completions``. A test registers a
:class:`Scenario` under a fresh name and gets back its base URL, so tests never interfere, and
two replicas of one "cluster" are simply two scenarios on the same server. A scenario decides
one :class:`Fault` per request: a script of faults consumed in order (``[fail, fail]`` then the
default ``ok``), or a function of the request (the load test's mix).

**Request log.** Every request is recorded (scenario, path, prompt, fault applied, connection
id), so tests assert attempt counts; :attr:`FaultServer.open_connections` says how many TCP
connections are open right now (the leak check of the load test).

Every reply echoes the prompt (``"echo: <last user message>"``), so a caller can check that
each answer belongs to its own request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultServer", "RequestRecord", "Scenario"]

FaultKind = Literal[
    "ok",  # a normal reply (streamed when the request asks for it)
    "status",  # an HTTP error status with the dialect's error body (+ Retry-After)
    "reset",  # read the request, then RST the connection: no status line at all
    "hangup",  # read the request, then close cleanly (FIN) without a reply
    "garbage",  # bytes that are not HTTP
    "truncated",  # a body cut short (content-length, or chunked after ``after``), then FIN
    "malformed",  # 200 with a body that is not valid JSON / SSE / NDJSON
    "drop",  # a streamed reply that stops (RST) after ``after`` chunks
    "cut",  # a streamed reply whose HTTP body ends properly after ``after`` chunks (no end event)
    "stall",  # wait ``seconds`` before the first byte (or until the client hangs up)
    "stall_mid",  # stream ``after`` chunks, then stall ``seconds``, then finish
    "trickle",  # a plain reply whose body arrives one byte every ``seconds``
    "trickle_head",  # a reply whose status line and headers arrive one byte every ``seconds``
    "drip",  # a streamed reply with a pause of ``seconds`` before each event
    "keepalive",  # a stream that sends only SSE comments, one every ``seconds``, never an event
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Fault:
    """What the server does with one request. Build them with the class methods."""

    kind: FaultKind = "ok"
    status: int = 200
    retry_after: str | None = None
    after: int = 0
    seconds: float = 0.0

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def error(cls, status: int, retry_after: float | str | None = None) -> Fault:
        ra = None if retry_after is None else str(retry_after)
        return cls("status", status=status, retry_after=ra)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def hangup(cls) -> Fault:
        return cls("hangup")

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")

    @classmethod
    def truncated(cls, after: int = 0) -> Fault:
        """A body cut short: half a JSON reply, or a stream closed after ``after`` chunks."""
        return cls("truncated", after=after)

    @classmethod
    def malformed(cls, after: int = 0) -> Fault:
        """Malformed JSON (plain reply) or a malformed event after ``after`` good chunks."""
        return cls("malformed", after=after)

    @classmethod
    def drop(cls, after: int = 1) -> Fault:
        return cls("drop", after=after)

    @classmethod
    def cut(cls, after: int = 1) -> Fault:
        return cls("cut", after=after)

    @classmethod
    def stall(cls, seconds: float = 10.0) -> Fault:
        return cls("stall", seconds=seconds)

    @classmethod
    def stall_mid(cls, after: int = 1, seconds: float = 10.0) -> Fault:
        return cls("stall_mid", after=after, seconds=seconds)

    @classmethod
    def trickle(cls, seconds: float = 0.2) -> Fault:
        return cls("trickle", seconds=seconds)

    @classmethod
    def trickle_head(cls, seconds: float = 0.2) -> Fault:
        return cls("trickle_head", seconds=seconds)

    @classmethod
    def drip(cls, seconds: float = 0.2) -> Fault:
        return cls("drip", seconds=seconds)

    @classmethod
    def keepalive(cls, seconds: float = 0.2) -> Fault:
        return cls("keepalive", seconds=seconds)


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    scenario: str
    path: str
    stream: bool
    prompt: str
    fault: FaultKind
    connection: int
    at: float


class Scenario:
    """Which :class:`Fault` each request of one scenario gets.

    ``script`` faults are used in order, one per request; after them every request gets
    ``then`` (default: ``Fault.ok()``). ``decide`` replaces both: a function of
    ``(prompt, attempt)`` → fault, where ``attempt`` counts the requests seen for that prompt
    (1 for the first) — the load test uses it to fail some requests only on their first try.
    """

    def __init__(
        self,
        script: Sequence[Fault] = (),
        *,
        then: Fault | None = None,
        decide: Callable[[str, int], Fault] | None = None,
    ) -> None:
        self._script = list(script)
        self._then = then or Fault.ok()
        self._decide = decide
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_fault(self, prompt: str) -> Fault:
        with self._lock:
            attempt = self._attempts[prompt] = self._attempts.get(prompt, 0) + 1
            if self._decide is not None:
                return self._decide(prompt, attempt)
            if self._script:
                return self._script.pop(0)
            return self._then


# ------------------------------------------------------------------------------ wire bytes


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _head(status: int, content_type: str, extra: Sequence[str] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"content-type: {content_type}"]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n").encode()


def _full(status: int, content_type: str, body: bytes, extra: Sequence[str] = ()) -> bytes:
    return (
        _head(status, content_type, extra) + f"content-length: {len(body)}\r\n\r\n".encode() + body
    )


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_LAST_CHUNK = b"0\r\n\r\n"

Dialect = Literal["openai", "tgi", "ollama"]


def _dialect(path: str) -> Dialect | None:
    if path.endswith("/completions"):  # /chat/completions and /completions
        return "openai"
    if path.endswith(("/api/chat", "/api/generate")):  # before TGI's "/generate"
        return "ollama"
    if path.endswith(("/generate", "/generate_stream")):
        return "tgi"
    return None


def _is_completion(path: str) -> bool:
    """A raw completion endpoint (TGI's native endpoints serve both kinds alike)."""
    return path.endswith(("/v1/completions", "/api/generate"))


def _prompt(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        content = messages[-1].get("content")
        if isinstance(content, list):  # content parts
            return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return str(content)
    return str(body.get("inputs") or body.get("prompt") or "")


def _words(prompt: str) -> list[str]:
    words = f"echo: {prompt}".split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]


def _plain_reply(dialect: Dialect, model: str, text: str, n: int, completion: bool) -> bytes:
    usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
    if completion and dialect == "openai":
        return _json(
            {
                "id": "cmpl-chaos",
                "object": "text_completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                "usage": usage,
            }
        )
    if completion and dialect == "ollama":
        return _json(
            {
                "model": model,
                "response": text,
                "done": True,
                "prompt_eval_count": 3,
                "eval_count": n,
            }
        )
    if dialect == "openai":
        body: dict[str, Any] = {
            "id": "chatcmpl-chaos",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n},
        }
    elif dialect == "tgi":
        body = {
            "generated_text": text,
            "details": {"finish_reason": "eos_token", "generated_tokens": n},
        }
    else:
        body = {
            "model": model,
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 3,
            "eval_count": n,
        }
    return _json(body)


def _stream_events(
    dialect: Dialect, model: str, words: list[str], completion: bool = False
) -> list[bytes]:
    """The body pieces of a streamed reply, one per token (and the closing ones)."""
    n = len(words)
    if dialect == "openai":

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
            if completion:  # a text_completion chunk carries the text itself
                choice["text"] = delta.get("content", "")
            else:
                choice["delta"] = delta
            obj = {
                "id": "cmpl-chaos" if completion else "chatcmpl-chaos",
                "object": "text_completion" if completion else "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [choice],
            }
            return b"data: " + _json(obj) + b"\n\n"

        out = [chunk({"role": "assistant", "content": w}) for w in words]
        out.append(chunk({}, "stop"))
        usage = {"prompt_tokens": 3, "completion_tokens": n, "total_tokens": 3 + n}
        out.append(
            b"data: "
            + _json({"id": "chatcmpl-chaos", "model": model, "choices": [], "usage": usage})
            + b"\n\n"
        )
        out.append(b"data: [DONE]\n\n")
        return out
    if dialect == "tgi":
        out = []
        for i, w in enumerate(words):
            last = i == n - 1
            obj = {
                "token": {"id": i, "text": w, "logprob": 0.0, "special": False},
                "generated_text": "".join(words) if last else None,
                "details": {"finish_reason": "eos_token", "generated_tokens": n} if last else None,
            }
            out.append(b"data:" + _json(obj) + b"\n\n")
        return out

    def text(w: str) -> dict[str, Any]:
        if completion:
            return {"response": w}
        return {"message": {"role": "assistant", "content": w}}

    out = [_json({"model": model, **text(w), "done": False}) + b"\n" for w in words]
    out.append(
        _json(
            {
                "model": model,
                **text(""),
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 3,
                "eval_count": n,
            }
        )
        + b"\n"
    )
    return out


def _error_body(dialect: Dialect, status: int) -> bytes:
    message = f"injected fault: HTTP {status}"
    if dialect == "openai":
        return _json({"error": {"message": message, "type": "chaos", "code": None}})
    if dialect == "tgi":
        return _json({"error": message, "error_type": "overloaded" if status == 429 else "chaos"})
    return _json({"error": message})


_MALFORMED = {
    "openai": b'data: {"id": "chatcmpl-chaos", "choices": [{"delta": {"content": "x"\n\n',
    "tgi": b'data:{"token": {"text": "x", "special": fal\n\n',
    "ollama": b'{"message": {"content": "x"}, "done": fa\n',
}


# ------------------------------------------------------------------------------ the server


@dataclass
class _Stats:
    open_connections: int = 0
    total_connections: int = 0


@dataclass
class FaultServer:
    """The server, on a background thread with its own event loop (so sync tests can use it).

    Use as a context manager, or :meth:`start` / :meth:`stop`. :meth:`scenario` registers a
    scenario and returns its base URL (``http://127.0.0.1:PORT/<name>/v1``).
    """

    host: str = "127.0.0.1"
    port: int = 0
    log: list[RequestRecord] = field(default_factory=list)
    _scenarios: dict[str, Scenario] = field(default_factory=dict)
    _stats: _Stats = field(default_factory=_Stats)
    _names: itertools.count[int] = field(default_factory=itertools.count)
    _conn_ids: itertools.count[int] = field(default_factory=itertools.count)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- public API

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def open_connections(self) -> int:
        """TCP connections open right now (accepted and not yet closed)."""
        return self._stats.open_connections

    @property
    def total_connections(self) -> int:
        return self._stats.total_connections

    def scenario(self, scenario: Scenario | Sequence[Fault] | None = None, **kwargs: Any) -> str:
        """Register ``scenario`` (or a script of faults) under a fresh name; its base URL.

        The URL ends in ``/v1`` (the OpenAI API base); the rest backend derives the server
        root (TGI and Ollama endpoints) by dropping that segment.
        """
        if not isinstance(scenario, Scenario):
            scenario = Scenario(scenario or (), **kwargs)
        name = f"s{next(self._names)}"
        with self._lock:
            self._scenarios[name] = scenario
        return f"{self.root}/{name}/v1"

    def requests(self, url: str | None = None) -> list[RequestRecord]:
        """The requests logged (for the scenario of ``url`` only, when given)."""
        with self._lock:
            records = list(self.log)
        if url is None:
            return records
        name = url.removeprefix(self.root + "/").split("/", 1)[0]
        return [r for r in records if r.scenario == name]

    def wait_idle(self, timeout: float = 5.0) -> int:
        """Wait until no connection is open (or ``timeout``); the number still open."""
        end = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < end:
            time.sleep(0.01)
        return self.open_connections

    async def await_idle(self, timeout: float = 5.0) -> int:
        """:meth:`wait_idle` for async tests (does not block the caller's loop)."""
        end = time.monotonic() + timeout
        while self.open_connections and time.monotonic() < end:
            await asyncio.sleep(0.01)
        return self.open_connections

    def start(self) -> FaultServer:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, self.host, self.port, backlog=2048)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="chaos-fault-server", daemon=True)
        self._thread.start()
        if not started.wait(10) or failure:
            raise RuntimeError(f"fault server did not start: {failure!r}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connection handling (on the server's loop)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._stats.open_connections += 1
        self._stats.total_connections += 1
        conn = next(self._conn_ids)
        try:
            while await self._one_request(conn, reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away mid-request: nothing to answer
        except asyncio.CancelledError:
            # stop() cancels handlers still waiting on idle keep-alive connections; ending
            # quietly keeps asyncio's stream callback from logging the cancellation as an error.
            pass
        finally:
            writer.transport.abort()  # no lingering: the count below must mean "closed"
            self._stats.open_connections -= 1
            self._handlers.discard(task)

    async def _one_request(
        self, conn: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open for another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # keep-alive connection closed by the client
        lines = head.decode("latin-1").split("\r\n")
        _method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length") or 0))
        path = target.split("?", 1)[0]
        name, _, rest = path.lstrip("/").partition("/")
        with self._lock:
            scenario = self._scenarios.get(name)
        dialect = _dialect("/" + rest)
        if scenario is None or dialect is None:
            writer.write(_full(404, "application/json", b'{"error": "unknown scenario or path"}'))
            await writer.drain()
            return True
        body: dict[str, Any] = json.loads(raw) if raw else {}
        prompt = _prompt(body)
        stream = bool(body.get("stream")) or path.endswith("/generate_stream")
        fault = scenario.next_fault(prompt)
        with self._lock:
            self.log.append(
                RequestRecord(name, "/" + rest, stream, prompt, fault.kind, conn, time.monotonic())
            )
        model = str(body.get("model") or "chaos")
        completion = _is_completion(path)
        return await self._apply(
            fault, dialect, model, prompt, stream, reader, writer, completion=completion
        )

    async def _apply(
        self,
        fault: Fault,
        dialect: Dialect,
        model: str,
        prompt: str,
        stream: bool,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        completion: bool = False,
    ) -> bool:
        words = _words(prompt)
        kind = fault.kind
        if kind == "status":
            extra = [f"retry-after: {fault.retry_after}"] if fault.retry_after is not None else []
            writer.write(
                _full(fault.status, "application/json", _error_body(dialect, fault.status), extra)
            )
            await writer.drain()
            return True
        if kind == "reset":
            _rst(writer)
            return False
        if kind == "hangup":
            return False
        if kind == "garbage":
            writer.write(b"SSH-2.0-OpenSSH_9.6 this is not HTTP\r\n\r\n")
            await writer.drain()
            return False
        if kind == "stall":
            if await _client_left(reader, fault.seconds):
                return False
            kind = "ok"  # the stall is over: answer normally, late
        if kind == "trickle_head":
            head = _head(200, "application/json", ["content-length: 0"]) + b"\r\n"
            for i in range(len(head)):
                writer.write(head[i : i + 1])
                await writer.drain()
                if await _client_left(reader, fault.seconds):
                    return False
            return False  # the client gave up long before; the empty body is no reply
        if not stream:
            text = "".join(words)
            payload = _plain_reply(dialect, model, text, len(words), completion)
            if kind == "malformed":
                payload = payload[: len(payload) // 2]  # valid bytes, invalid JSON
            if kind == "truncated":
                writer.write(
                    _head(200, "application/json")
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                    + payload[: len(payload) // 2]
                )
                await writer.drain()
                return False
            if kind == "trickle":
                writer.write(
                    _head(200, "application/json")
                    + f"content-length: {len(payload)}\r\n\r\n".encode()
                )
                for i in range(len(payload)):
                    writer.write(payload[i : i + 1])
                    await writer.drain()
                    if await _client_left(reader, fault.seconds):
                        return False
                return True
            writer.write(_full(200, "application/json", payload))
            await writer.drain()
            return True
        # streamed replies: one HTTP chunk per event, flushed one by one like a real server
        content_type = "application/x-ndjson" if dialect == "ollama" else "text/event-stream"
        writer.write(_head(200, content_type, ["transfer-encoding: chunked"]) + b"\r\n")
        if kind == "keepalive":  # SSE comments keep bytes flowing; no event ever comes
            while True:
                writer.write(_chunk(b": keep-alive\n\n"))
                await writer.drain()
                if await _client_left(reader, fault.seconds):
                    return False
        events = _stream_events(dialect, model, words, completion)
        for i, event in enumerate(events):
            if kind == "drip" and await _client_left(reader, fault.seconds):
                return False
            if i == fault.after:
                if kind == "drop":
                    await writer.drain()
                    _rst(writer)
                    return False
                if kind == "truncated":  # a clean close (FIN) without the last chunk
                    await writer.drain()
                    return False
                if kind == "cut":  # a well-formed HTTP end, but the reply is incomplete
                    writer.write(_LAST_CHUNK)
                    await writer.drain()
                    return True
                if kind == "malformed":
                    writer.write(_chunk(_MALFORMED[dialect]))
                    writer.write(_LAST_CHUNK)
                    await writer.drain()
                    return True
                if kind == "stall_mid" and await _client_left(reader, fault.seconds):
                    return False
            writer.write(_chunk(event))
            await writer.drain()
        writer.write(_LAST_CHUNK)
        await writer.drain()
        return True


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0): what a crashed process or a proxy kill looks like."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _client_left(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Wait ``seconds``; whether the client hung up meanwhile (then stop at once: a stalled
    handler must not outlive the client that gave up on it, or the leak check would wait)."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=seconds)
    except (asyncio.TimeoutError, TimeoutError):
        return False
    except ConnectionError:
        return True
    # b"" is EOF: the client closed. Any byte would be a pipelined request, which no HTTP/1.1
    # client here sends; treat it as gone too rather than desynchronise the stream.
    del data
    return True
