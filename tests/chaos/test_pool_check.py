"""llmkit's async HTTP clients answer httpcore's idle-connection check ("is this socket
readable?") with one poll() (llmkit/_http/pool.py). The answer must stay the one httpcore's own
check gives, or the pool would reuse connections the server has closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from llmkit._http import build_async_client
from llmkit._http.pool import QuickCheckBackend

pytestmark = pytest.mark.timeout(15)

REPLY = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"


class KeepAliveServer:
    """HTTP/1.1 on 127.0.0.1: answers every request on a kept-alive connection and counts
    connections; ``close_idle()`` closes every connection from the server's side."""

    def __init__(self) -> None:
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.url = ""
        self._server: asyncio.AbstractServer | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                writer.write(REPLY)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close_idle(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await asyncio.sleep(0.05)  # let the FINs arrive

    async def __aenter__(self) -> KeepAliveServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self.writers:
            writer.close()
        await self._server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[KeepAliveServer]:
    async with KeepAliveServer() as s:
        yield s


def _streams(client: httpx.AsyncClient) -> list[object]:
    pool = client._transport._pool  # type: ignore[attr-defined]
    return [c._connection._network_stream for c in pool.connections]


async def test_every_async_pool_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx keeps the network backend private; if a release moves it, this fails first.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    async with build_async_client() as client:
        transports = [client._transport, *client._mounts.values()]
        assert len(transports) == 2  # the default pool and the proxy from the environment
        for transport in transports:
            assert isinstance(transport._pool._network_backend, QuickCheckBackend)  # type: ignore[union-attr]


async def test_readable_answer_matches_httpcores_own(server: KeepAliveServer) -> None:
    async with build_async_client() as client:
        assert (await client.post(server.url, content=b"hi")).text == "ok"
        (stream,) = _streams(client)
        inner = stream._inner  # type: ignore[attr-defined]  # httpcore's own stream
        assert stream.get_extra_info("is_readable") is False  # type: ignore[attr-defined]
        assert inner.get_extra_info("is_readable") is False
        await server.close_idle()
        assert stream.get_extra_info("is_readable") is True  # type: ignore[attr-defined]
        assert inner.get_extra_info("is_readable") is True
        # Everything else is httpcore's answer.
        for info in ("client_addr", "server_addr", "socket", "ssl_object"):
            assert stream.get_extra_info(info) == inner.get_extra_info(info)  # type: ignore[attr-defined]


async def test_a_connection_the_server_closed_is_not_reused(server: KeepAliveServer) -> None:
    async with build_async_client() as client:
        for _ in range(3):  # one connection, kept alive
            assert (await client.post(server.url, content=b"hi")).text == "ok"
        assert server.connections == 1
        await server.close_idle()
        # The pool sees the closed socket and opens a new connection: no error surfaces.
        assert (await client.post(server.url, content=b"hi")).text == "ok"
        assert server.connections == 2


async def test_concurrent_requests_share_and_reuse_connections(server: KeepAliveServer) -> None:
    async with build_async_client() as client:
        for _ in range(3):
            replies = await asyncio.gather(
                *(client.post(server.url, content=b"hi") for _ in range(8))
            )
            assert [r.text for r in replies] == ["ok"] * 8
        assert server.connections == 8  # the first burst opened them; later ones reused them
