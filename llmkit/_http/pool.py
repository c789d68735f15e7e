"""A cheaper idle-connection check for llmkit's async HTTP clients.

Whenever a request enters or leaves httpcore's pool, the pool asks every idle connection
whether its socket is readable (a readable idle socket means the server closed it). On the
asyncio path each of those questions goes through anyio's typed attributes, which rebuild a
dict of every socket attribute -- a ``getpeername()`` system call included -- before the
``poll()`` that answers it. With dozens of pooled connections to one server (what a
``max_concurrency`` of 64 keeps open) that is most of httpcore's CPU per request.

:class:`QuickCheckBackend` wraps the pool's network backend so that each connection's
stream answers ``is_readable`` with the ``poll()`` alone, on the socket it looked up once.
Reads, writes, TLS and every other question go straight to httpcore's own stream: the read
and write methods are the inner stream's bound methods, so a chunk costs nothing extra.
"""

from __future__ import annotations

import logging
import select
import socket
import sys
from collections.abc import Callable
from typing import Any

import httpcore
import httpx

__all__ = ["QuickCheckBackend", "install_async", "socket_readable", "wrap_network_backends"]

_UNSET: Any = object()


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``recv`` would return at once (data, or ``b""`` for a closed peer); a socket
    that is gone counts as readable, as in httpcore."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if sys.platform == "win32" or not hasattr(select, "poll"):  # pragma: no cover
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's stream, with a quick ``is_readable``."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = _UNSET
        # Instance attributes shadow the methods below: no extra frame per read or write.
        self.read = inner.read  # type: ignore[method-assign]
        self.write = inner.write  # type: ignore[method-assign]
        self.aclose = inner.aclose  # type: ignore[method-assign]

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)  # pragma: no cover - shadowed

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)  # pragma: no cover - shadowed

    async def aclose(self) -> None:
        await self._inner.aclose()  # pragma: no cover - shadowed

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            sock = self._socket
            if sock is _UNSET:
                sock = self._socket = self._inner.get_extra_info("socket")
            return socket_readable(sock)
        return self._inner.get_extra_info(info)


class QuickCheckBackend(httpcore.AsyncNetworkBackend):
    """Wraps an async network backend: its connections answer ``is_readable`` quickly."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def wrap_network_backends(
    client: httpx.Client | httpx.AsyncClient,
    wrapper: Callable[[Any], Any],
    inner: type,
    transport: type,
) -> bool:
    """Wrap the network backend of every pool of ``client`` (its own and the proxy pools
    httpx mounted from the environment) in ``wrapper``, once. Whether every pool could be
    wrapped: httpx does not expose its transports' network backend, so a future release may
    move it; the client then works as before, only without the wrapper."""
    ok = True
    for mounted in (client._transport, *client._mounts.values()):
        if mounted is None:
            continue
        pool = getattr(mounted, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, wrapper):  # type: ignore[arg-type]
            continue
        if isinstance(backend, inner):
            pool._network_backend = wrapper(backend)  # type: ignore[union-attr]
        elif isinstance(mounted, transport):
            ok = False  # httpx/httpcore moved the attribute; the caller says what is lost
    return ok


def install_async(client: httpx.AsyncClient) -> bool:
    """Give ``client``'s connections the quick ``is_readable`` (see the module docstring).

    Where httpx moved the attribute this only logs: the check is a speed-up, and async
    timeouts do not depend on it (asyncio bounds each await). The test suite pins that it
    installs on the tested httpx (``tests/test_http_internals.py``).
    """
    ok = wrap_network_backends(
        client, QuickCheckBackend, httpcore.AsyncNetworkBackend, httpx.AsyncHTTPTransport
    )
    if not ok:
        logging.getLogger("llmkit.http").warning(
            "llmkit: httpx %s moved the connection pool's network backend; async calls work "
            "but skip the quicker idle-connection check",
            httpx.__version__,
        )
    return ok
