"""Time budgets enforced on every socket operation of llmkit's sync HTTP clients.

httpx's sync path only has per-operation timeouts, and httpcore takes the read timeout once
per response body. On their own they bound neither the call's total deadline (a reply
trickled byte by byte, each byte inside the read timeout, outlives it) nor a stream's idle
gap (after the first chunk a stream may still pause for the whole first-token budget). The
async clients get both from asyncio timeouts around each await; a blocked ``recv`` in sync
code cannot be interrupted, so llmkit caps each blocking operation instead:

* :class:`CallBudget` holds one HTTP attempt's budgets: the call's deadline and the current
  phase (a stream's first token, then the idle gap before each next event; each read of a
  non-streamed reply). A backend makes one per attempt and activates it (``with budget:``)
  around the send.
* :class:`BudgetBackend` wraps httpcore's network backend: every connect, read and write
  waits at most what the active budget leaves, and one that runs out raises an httpcore
  timeout whose message names the budget (``map_transport_error`` turns it into
  :class:`llmkit.errors.TimeoutError`).
* a response event hook binds the active budget to the response body, so a stream read
  after the send (outside ``with budget:``) is still capped by it: on HTTP/1.1 the budget
  rides on the connection's network stream until the body is closed (a connection serves
  one response at a time, and goes back to the pool only once the body is closed); on
  HTTP/2, whose connection is shared, each chunk is read with the budget active.

Cost: one ``ContextVar`` lookup per socket operation, plus one ``time.monotonic()`` while a
budget is active; nothing per chunk of an HTTP/1.1 body.
"""

from __future__ import annotations

import math
import ssl
import time
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar, Token
from time import monotonic as _monotonic
from typing import Any

import httpcore
import httpx

from ..timeouts import Timeout
from .pool import wrap_network_backends

__all__ = ["BudgetBackend", "BudgetNotEnforcedWarning", "CallBudget", "OverBudget", "install"]

_ACTIVE: ContextVar[CallBudget | None] = ContextVar("llmkit_call_budget", default=None)

_INF = math.inf


class CallBudget:
    """The time budgets of one HTTP attempt.

    Args:
        timeout: the call's budgets.
        deadline: the call's absolute ``time.monotonic()`` deadline (retries and fallbacks
            included), if it has one; the attempt also ends ``timeout.total`` from now.
        stream: a streamed reply: the first event must arrive within ``first_token`` of
            now, each later one within ``idle`` of the caller asking for it
            (:meth:`next_event`). Otherwise each read of the reply waits ``first_token``.
    """

    __slots__ = ("_token", "deadline", "per_read", "phase", "timeout", "until")

    def __init__(self, timeout: Timeout, deadline: float | None = None, *, stream: bool = False):
        now = time.monotonic()
        end = now + timeout.total
        self.timeout = timeout
        self.deadline = end if deadline is None or deadline > end else deadline
        self.phase = "first token"
        if stream:
            self.until = now + timeout.first_token
            self.per_read = _INF
        else:
            self.until = _INF
            self.per_read = timeout.first_token
        self._token: Token[CallBudget | None] | None = None

    def next_event(self) -> None:
        """The caller asked for a stream's next event: the idle budget starts now."""
        self.until = time.monotonic() + self.timeout.idle
        self.phase = "idle"

    def message(self, budget: str, doing: str = "reading the reply") -> str:
        """What ran out (and what was going on), for the error."""
        t = self.timeout
        if budget == "total":
            return f"total timeout of {t.total:g}s (or the call's deadline) ran out while {doing}"
        if budget == "idle":
            return f"idle timeout: no new event within {t.idle:g}s"
        if self.per_read == _INF:
            return f"first-token timeout: no token within {t.first_token:g}s"
        return f"read timeout: the server sent nothing for {t.first_token:g}s (first-token budget)"

    def __enter__(self) -> CallBudget:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None


class OverBudget(httpcore.TimeoutException):
    """An llmkit budget (first token, idle or total) ran out during a socket operation.

    ``budget`` names it; the total budget is spent, so that one is not worth a retry.
    """

    def __init__(self, message: str, budget: str) -> None:
        super().__init__(message)
        self.budget = budget


class _ReadOverBudget(OverBudget, httpcore.ReadTimeout):
    pass


class _WriteOverBudget(OverBudget, httpcore.WriteTimeout):
    pass


class _ConnectOverBudget(OverBudget, httpcore.ConnectTimeout):
    pass


_CONNECTING = "connecting"
_SENDING = "sending the request"


def _total_left(timeout: float | None) -> tuple[CallBudget | None, float | None]:
    """The active budget and ``timeout`` capped by its deadline (``None``: no budget)."""
    budget = _ACTIVE.get()
    if budget is None:
        return None, timeout
    left = budget.deadline - time.monotonic()
    if left <= 0:
        raise _ConnectOverBudget(budget.message("total", _CONNECTING), "total")
    if timeout is None or left < timeout:
        return budget, left
    return None, timeout  # the operation's own timeout is the tighter one


class _BudgetStream(httpcore.NetworkStream):
    """A network stream whose blocking operations respect the active :class:`CallBudget`
    (or the one ``bound`` to the body being read on this connection)."""

    __slots__ = ("_stream", "bound")

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self.bound: CallBudget | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = self.bound or _ACTIVE.get()
        if budget is None:
            return self._stream.read(max_bytes, timeout)
        now = _monotonic()
        left, which = budget.deadline - now, "total"
        phase = budget.until - now
        if budget.per_read < phase:
            phase = budget.per_read
        if phase < left:
            left, which = phase, budget.phase
        if timeout is not None and timeout < left:
            return self._stream.read(max_bytes, timeout)  # httpcore's own is the tighter one
        if left <= 0:
            raise _ReadOverBudget(budget.message(which), which)
        try:
            return self._stream.read(max_bytes, left)
        except httpcore.ReadTimeout as exc:
            raise _ReadOverBudget(budget.message(which), which) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        budget = _ACTIVE.get()
        if budget is None:
            return self._stream.write(buffer, timeout)
        left = budget.deadline - time.monotonic()
        if timeout is not None and timeout < left:
            return self._stream.write(buffer, timeout)
        if left <= 0:
            raise _WriteOverBudget(budget.message("total", _SENDING), "total")
        try:
            return self._stream.write(buffer, left)
        except httpcore.WriteTimeout as exc:
            raise _WriteOverBudget(budget.message("total", _SENDING), "total") from exc

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _open(timeout, lambda t: self._stream.start_tls(ssl_context, server_hostname, t))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _open(
    timeout: float | None, connect: Callable[[float | None], httpcore.NetworkStream]
) -> _BudgetStream:
    """Open a connection (or start TLS) within what the active budget leaves; a connect
    timeout caused by the budget names it."""
    budget, timeout = _total_left(timeout)
    try:
        stream = connect(timeout)
    except httpcore.ConnectTimeout as exc:
        if budget is None:
            raise
        raise _ConnectOverBudget(budget.message("total", _CONNECTING), "total") from exc
    return _BudgetStream(stream)


class BudgetBackend(httpcore.NetworkBackend):
    """httpcore's network backend, with every stream it opens capped by the active budget."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    # httpcore passes local_address and socket_options through as they are (*args, **kwargs).
    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any
    ) -> httpcore.NetworkStream:
        connect = self._backend.connect_tcp
        return _open(timeout, lambda t: connect(host, port, t, *args, **kwargs))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, *args: Any, **kwargs: Any
    ) -> httpcore.NetworkStream:
        connect = self._backend.connect_unix_socket
        return _open(timeout, lambda t: connect(path, t, *args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _BoundBody(httpx.SyncByteStream):
    """An HTTP/1.1 response body whose budget is bound to its connection until it closes."""

    def __init__(self, stream: httpx.SyncByteStream, network: _BudgetStream) -> None:
        self._stream = stream
        self._network = network

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._stream)

    def close(self) -> None:
        self._network.bound = None  # before the connection can serve another request
        self._stream.close()


class _BudgetedBody(httpx.SyncByteStream):
    """A response body read under the budget that was active when it was requested, each
    chunk with that budget active (for connections shared by several responses)."""

    def __init__(self, stream: httpx.SyncByteStream, budget: CallBudget) -> None:
        self._stream = stream
        self._budget = budget

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._stream)
        budget, active = self._budget, _ACTIVE
        while True:
            token = active.set(budget)
            try:
                chunk = next(chunks, None)
            finally:
                active.reset(token)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._stream.close()


def _bind_body(response: httpx.Response) -> None:
    budget = _ACTIVE.get()
    if budget is None or not isinstance(response.stream, httpx.SyncByteStream):
        return
    network = response.extensions.get("network_stream")
    # HTTP/1.x: one response per connection at a time. HTTP/2 multiplexes one connection.
    if isinstance(network, _BudgetStream) and response.http_version != "HTTP/2":
        network.bound = budget
        response.stream = _BoundBody(response.stream, network)
    else:
        response.stream = _BudgetedBody(response.stream, budget)


class BudgetNotEnforcedWarning(RuntimeWarning):
    """llmkit could not attach its time budgets to an httpx client (see :func:`install`)."""


def install(client: httpx.Client) -> bool:
    """Make ``client`` honour the active :class:`CallBudget` (its own pool and the proxy
    pools httpx mounted from the environment). Whether every pool could be wrapped:
    httpx does not expose its transports' network backend, so a future release may move it.

    When one could not be, this warns (:class:`BudgetNotEnforcedWarning`, once per call
    site) rather than raising: the client still works and httpx's own per-operation
    timeouts still end a connection that stalls outright, but a ``total`` deadline over a
    trickling reply and a stream's ``idle`` gap are no longer enforced on that client. A
    warning is loud (and CI turns it into an error) without breaking every call of an
    application the day it upgrades httpx.
    """
    ok = wrap_network_backends(client, BudgetBackend, httpcore.NetworkBackend, httpx.HTTPTransport)
    client.event_hooks["response"].append(_bind_body)
    if not ok:
        warnings.warn(
            f"llmkit cannot enforce total and idle timeouts on sync HTTP calls with httpx "
            f"{httpx.__version__} / httpcore {httpcore.__version__}: the connection pool no "
            "longer exposes its network backend where llmkit looks for it. Per-operation "
            "timeouts still apply. Install the httpx release llmkit was tested with "
            "(see its pyproject.toml) or upgrade llmkit.",
            BudgetNotEnforcedWarning,
            stacklevel=3,
        )
    return ok
