"""End to end over a real socket: the REST backend against a real server (uvicorn in a
thread on 127.0.0.1), plain and streamed, sync and async; the server is stopped afterwards."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from llmkit import errors
from llmkit.backends.rest import RestBackend
from llmkit.timeouts import Timeout

from .helpers import FAKE_KEY, Mode, chat_request, kinds, texts
from .server import ServerThread, State, make_app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServerThread, State]]:
    state = State()
    with ServerThread(make_app(state)) as running:
        yield running, state


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_plain_and_streamed(server: Any, mode: Mode) -> None:
    running, state = server
    backend = RestBackend("my-model", base_url=running.url + "/v1", api_key=FAKE_KEY)
    try:
        request = chat_request("hello there", timeout=Timeout(5))
        response = await mode.chat(backend, request)
        assert response.text == "echo: hello there"
        assert response.model == "my-model-served"
        assert response.usage.completion_tokens == 3 and not response.usage.estimated
        assert state.headers[-1]["authorization"] == f"Bearer {FAKE_KEY}"

        events = await mode.stream(
            backend, chat_request("streamed reply please", timeout=Timeout(5))
        )
        assert texts(events) == "echo: streamed reply please"
        assert kinds(events) == ["text"] * 4 + ["usage", "finish"]
        assert events[-1].model == "my-model-served" and events[-1].finish_reason == "stop"
    finally:
        await backend.aclose()


async def test_native_dialects(server: Any, mode: Mode) -> None:
    running, _ = server
    tgi = RestBackend("m", base_url=running.url, dialect="tgi", template="{content}")
    ollama = RestBackend("m", base_url=running.url, dialect="ollama")
    try:
        for backend in (tgi, ollama):
            assert (await mode.chat(backend, chat_request("hi you"))).text == "echo: hi you"
            events = await mode.stream(backend, chat_request("hi you"))
            assert texts(events) == "echo: hi you"
            assert kinds(events)[-2:] == ["usage", "finish"]
    finally:
        await tgi.aclose()
        await ollama.aclose()


async def test_failover_and_drop_over_sockets(server: Any, mode: Mode) -> None:
    running, _ = server
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    backend = RestBackend("my-model", base_url=[dead, running.url + "/v1"])
    try:
        # The dead replica refuses the connection; the call fails over to the live one.
        assert (
            await mode.chat(backend, chat_request("a b", timeout=Timeout(5)))
        ).text == "echo: a b"
        report = await mode.health(backend)
        assert [h.healthy for h in report] == [False, True]
        # A replica that crashes mid-stream: the caller gets a typed, retryable error.
        seen: list[Any] = []
        with pytest.raises(errors.ConnectionError) as info:
            if mode.name == "sync":
                for event in backend.stream(chat_request("drop", timeout=Timeout(5))):
                    seen.append(event)
            else:
                async for event in backend.astream(chat_request("drop", timeout=Timeout(5))):
                    seen.append(event)
        assert texts(seen) == "echo: "
        assert info.value.retryable
    finally:
        await backend.aclose()
