"""Every failure maps to one llmkit error, at one point, for chat and stream, sync and async."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import respx
from openai_testkit import KEY, call, chat_request, collect, completion_request

import llmkit.errors as E
from llmkit.backends.openai import OpenAIBackend
from llmkit.timeouts import Timeout

STATUS_CASES = [
    (
        400,
        {"error": {"message": "bad temperature", "type": "invalid_request_error"}},
        E.BadRequestError,
    ),
    (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
        E.ContextLengthError,
    ),
    (
        401,
        {"error": {"message": "Incorrect API key", "code": "invalid_api_key"}},
        E.AuthenticationError,
    ),
    (403, {"error": {"message": "region not supported"}}, E.PermissionDeniedError),
    (
        404,
        {"error": {"message": "The model `gpt-9` does not exist", "code": "model_not_found"}},
        E.NotFoundError,
    ),
    (409, {"error": {"message": "conflict"}}, E.ConflictError),
    (422, {"error": {"message": "unprocessable"}}, E.BadRequestError),
    (429, {"error": {"message": "Rate limit reached", "type": "requests"}}, E.RateLimitError),
    (500, {"error": {"message": "The server had an error"}}, E.ServerError),
    (502, "<html>Bad gateway</html>", E.ServerError),
    (503, {"error": {"message": "overloaded"}}, E.ServerError),
]


def _response(status: int, body: Any, headers: dict[str, str]) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(("status", "body", "error"), STATUS_CASES)
async def test_status_mapping(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    streamed: bool,
    status: int,
    body: Any,
    error: type[E.ProviderError],
) -> None:
    route = mock.post("/chat/completions").mock(
        return_value=_response(status, body, {"x-request-id": f"req_{status}"})
    )
    with pytest.raises(error) as info:
        if streamed:
            await collect(backend, mode, chat_request())
        else:
            await call(backend, mode, chat_request())
    err = info.value
    assert type(err) is error
    assert err.status_code == status
    assert err.request_id == f"req_{status}"
    assert (err.backend, err.model) == ("openai", "gpt-4o-mini")
    assert err.retryable == (status in (409, 429) or status >= 500)
    assert isinstance(err.__cause__, openai.APIStatusError)
    assert route.call_count == 1
    if isinstance(body, dict):
        assert body["error"]["message"] in str(err)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "7"}, 7.0),
        ({"Retry-After": "3", "retry-after-ms": "1200"}, 1.2),
        ({}, None),
    ],
)
async def test_retry_after(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    mock.post("/chat/completions").respond(
        429, json={"error": {"message": "slow"}}, headers=headers
    )
    with pytest.raises(E.RateLimitError) as info:
        await call(backend, mode, chat_request())
    assert info.value.retry_after == expected


async def test_completion_errors_map_the_same(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    mock.post("/completions").respond(404, json={"error": {"message": "no such model"}})
    with pytest.raises(E.NotFoundError, match="no such model"):
        await call(backend, mode, completion_request())


@pytest.mark.parametrize(
    ("failure", "error", "phase"),
    [
        (httpx.ConnectTimeout("connect"), E.TimeoutError, "connect timeout"),
        (httpx.ReadTimeout("read"), E.TimeoutError, "read"),
        (httpx.PoolTimeout("pool"), E.TimeoutError, "pool"),
        (httpx.ConnectError("refused"), E.ConnectionError, "connection failed"),
        (httpx.RemoteProtocolError("server hung up"), E.ConnectionError, "connection failed"),
    ],
)
@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_transport_failures(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    streamed: bool,
    failure: Exception,
    error: type[E.ProviderError],
    phase: str,
) -> None:
    route = mock.post("/chat/completions").mock(side_effect=failure)
    with pytest.raises(error, match=phase) as info:
        if streamed:
            await collect(backend, mode, chat_request())
        else:
            await call(backend, mode, chat_request())
    # The SDK's APITimeoutError / APIConnectionError is the cause; the httpx error behind it.
    assert isinstance(info.value.__cause__, (openai.APITimeoutError, openai.APIConnectionError))
    assert route.call_count == 1


# ---------------------------------------------------------------------------- real sockets


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A 127.0.0.1 server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conns.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in conns:
        conn.close()
    server.close()


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_real_read_timeout(silent_server: str, mode: str, streamed: bool) -> None:
    backend = OpenAIBackend("m", api_key=KEY, base_url=silent_server)
    # Only the first-token (read) budget is short: a plain 0.2 also bounded the connect and
    # the total, and on a loaded machine the total fired while connecting.
    request = chat_request(model="m", timeout=Timeout(connect=5, first_token=0.2, total=5))
    with pytest.raises(E.TimeoutError) as info:
        if streamed:
            await collect(backend, mode, request)
        else:
            await call(backend, mode, request)
    # Which budget fired: the first-token (read) one. Had it not held, the total (5 s) would
    # have, and its message ("total timeout ... while reading the reply") says so.
    message = str(info.value)
    assert re.search(r"read|first.token", message) and "total" not in message, message
    await backend.aclose()


async def test_deadline_bounds_the_call(silent_server: str, mode: str) -> None:
    backend = OpenAIBackend("m", api_key=KEY, base_url=silent_server)
    request = chat_request(model="m")  # default budgets: minutes
    request.deadline = time.monotonic() + 0.2
    started = time.monotonic()
    with pytest.raises(E.TimeoutError) as info:
        await call(backend, mode, request)
    # Which budget ran out: the deadline, in both modes (async: httpx's read timeout, capped
    # by the deadline, fires then, and the error still names the deadline, not the read).
    assert "deadline" in str(info.value), info.value
    # Generous for a loaded machine (ten times the 0.2 s), far below those minutes.
    assert time.monotonic() - started < 2 * 0.2 + 2.0
    request.deadline = time.monotonic() - 1
    with pytest.raises(E.TimeoutError, match="deadline passed"):
        await call(backend, mode, request)
    await backend.aclose()


async def test_real_connection_refused(mode: str) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    backend = OpenAIBackend("m", api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1")
    with pytest.raises(E.ConnectionError):
        await call(backend, mode, chat_request(model="m"))
    await backend.aclose()


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """A 127.0.0.1 server that starts a chunked SSE reply, sends one event, then hangs up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    event = b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    reply = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-request-id: req_real\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + f"{len(event):x}\r\n".encode() + event + b"\r\n"
    )
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:  # read it all, so closing sends FIN, not RST
                    body += conn.recv(65536)
                conn.sendall(reply)  # ...and close without the terminating chunk

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    server.close()


async def test_real_connection_drop_during_the_stream(dropping_server: str, mode: str) -> None:
    backend = OpenAIBackend("m", api_key=KEY, base_url=dropping_server)
    seen: list[str] = []
    with pytest.raises(E.ConnectionError) as info:
        if mode == "sync":
            for event in backend.stream(chat_request(model="m")):
                seen.append(event.text)
        else:
            async for event in backend.astream(chat_request(model="m")):
                seen.append(event.text)
    assert seen == ["Hi"]
    assert info.value.request_id == "req_real"
    await backend.aclose()
