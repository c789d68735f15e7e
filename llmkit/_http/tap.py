"""The record/replay seam of llmkit's HTTP clients (used by :mod:`llmkit.testing`'s cassettes).

Every client :func:`llmkit._http.build_client` / :func:`~llmkit._http.build_async_client`
makes is remembered here (weakly). While a cassette is active, :func:`set_tap` puts a
wrapping transport in front of each of those clients' transports (its own and the proxy
mounts httpx added from the environment), and of every client built meanwhile; when the
cassette ends the original transports come back.

Why swap transports instead of leaving a wrapper in place that checks "is a cassette
active?" on each request: when no cassette is active the clients are exactly what httpx
built, so the seam costs nothing per request (only a ``WeakSet.add`` per client built), and
code that inspects a client's transport (the budget and pool checks) sees httpx's own.
A wrapper swapped in sees every request the SDKs and backends send through the client
(``client.send`` reads ``_transport`` / ``_mounts`` per request), so clients built before the
cassette started are covered too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Union

import httpx

__all__ = ["AsyncTapTransport", "TapTransport", "active_tap", "set_tap", "track"]

AnyClient = Union[httpx.Client, httpx.AsyncClient]
AnyTransport = Union[httpx.BaseTransport, httpx.AsyncBaseTransport]
# (the transport to wrap, whether it is async) -> the wrapper
Tap = Callable[[Any, bool], AnyTransport]

_clients: weakref.WeakSet[AnyClient] = weakref.WeakSet()
_lock = threading.Lock()
_tap: Tap | None = None


class TapTransport(httpx.BaseTransport):
    """Base of a sync wrapper: ``inner`` is the transport httpx built (restored on removal)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def close(self) -> None:
        self.inner.close()


class AsyncTapTransport(httpx.AsyncBaseTransport):
    """Base of an async wrapper: ``inner`` is the transport httpx built."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def aclose(self) -> None:
        await self.inner.aclose()


def _unwrapped(transport: Any) -> Any:
    while isinstance(transport, (TapTransport, AsyncTapTransport)):
        transport = transport.inner
    return transport


def _rewire(client: AnyClient, tap: Tap | None) -> None:
    is_async = isinstance(client, httpx.AsyncClient)

    def wire(transport: Any) -> Any:
        if transport is None:  # a mount that disables proxying for a pattern
            return None
        transport = _unwrapped(transport)
        return transport if tap is None else tap(transport, is_async)

    client._transport = wire(client._transport)
    client._mounts = {pattern: wire(t) for pattern, t in client._mounts.items()}


def track(client: AnyClient) -> None:
    """Remember ``client`` (called by the client builders); wrap it now if a tap is set."""
    with _lock:
        _clients.add(client)
        if _tap is not None:
            _rewire(client, _tap)


def set_tap(tap: Tap | None) -> Tap | None:
    """Wrap every live client's transports with ``tap`` (``None``: restore httpx's own);
    returns the previous tap so a nested user can put it back."""
    global _tap
    with _lock:
        previous, _tap = _tap, tap
        for client in list(_clients):
            if not client.is_closed:
                _rewire(client, tap)
    return previous


def active_tap() -> Tap | None:
    """The tap in place (``None`` when the clients are httpx's own)."""
    return _tap
