"""The one place llmkit builds HTTP clients and maps transport failures.

Every HTTP backend (the ``openai`` SDK backend, which gets these clients injected as
``http_client=``, and the ``rest`` backend) uses :func:`build_client` /
:func:`build_async_client`, so pooling limits, timeouts, proxies and TLS settings behave the
same everywhere, and respx sees every request in tests. The sync clients also honour a
:class:`CallBudget` on every socket operation (see :mod:`llmkit._http.budget`): httpx alone bounds
neither a sync call's total deadline nor a stream's idle gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

import httpx
from typing_extensions import Unpack

from .. import __version__
from .._requests import BaseRequest
from ..errors import ConnectionError, ProviderError, TimeoutError, redact
from ..timeouts import Timeout
from .budget import CallBudget, OverBudget, install
from .pool import install_async
from .tap import track

__all__ = [
    "DEFAULT_LIMITS",
    "USER_AGENT",
    "CallBudget",
    "ClientOptions",
    "allow_stream_gaps",
    "build_async_client",
    "build_client",
    "httpx_timeout",
    "map_transport_error",
]

USER_AGENT = f"llmkit/{__version__}"

# httpx's own defaults. A bigger pool measured 2.5x slower for 1,000 concurrent requests:
# httpcore scans every connection for every queued request, so more (idle) connections cost
# more than they save. The client's max_concurrency cap is what queues requests.
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0
)


def _finite(value: float) -> float | None:
    return None if value == float("inf") else value


def httpx_timeout(timeout: Timeout) -> httpx.Timeout:
    """A :class:`Timeout` as httpx's per-phase timeout.

    Reads wait at most ``first_token``: that bounds the wait for a non-streamed answer and
    for a stream's response headers. Streams widen it with :func:`allow_stream_gaps` once
    the headers are in.
    """
    finite = _finite
    return httpx.Timeout(
        connect=finite(min(timeout.connect, timeout.total)),
        read=finite(min(timeout.first_token, timeout.total)),
        write=finite(min(timeout.idle, timeout.total)),
        pool=finite(min(timeout.first_token, timeout.total)),
    )


def allow_stream_gaps(
    response: httpx.Response, timeout: Timeout, remaining: float | None = None
) -> None:
    """After a stream's headers arrived: let each body read wait ``max(first_token, idle)``.

    httpcore reads the request's timeout extension when the body is first read, and passes
    httpx's extension dict through unchanged, so changing it here applies to the body. (One
    value for the whole body: the first chunk may still be the first token.) ``remaining``
    (seconds to the call's deadline) caps it.
    """
    extension = response.request.extensions.get("timeout")
    if isinstance(extension, dict):
        limit = min(timeout.read, timeout.total)
        if remaining is not None:
            limit = min(limit, max(remaining, 0.001))  # never past the call's deadline
        extension["read"] = _finite(limit)


class ClientOptions(TypedDict, total=False):
    """How :func:`build_client` / :func:`build_async_client` configure a client."""

    base_url: str | None
    headers: Mapping[str, str] | None
    timeout: Timeout | None
    verify: bool | str  # TLS verification, or a CA bundle path (default True)
    http2: bool
    limits: httpx.Limits | None


def _client_kwargs(options: ClientOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "headers": {"user-agent": USER_AGENT, **(options.get("headers") or {})},
        "timeout": httpx_timeout(options.get("timeout") or Timeout()),
        "verify": options.get("verify", True),
        "limits": options.get("limits") or DEFAULT_LIMITS,
        "trust_env": True,  # proxies and CA bundles from the environment, as httpx does
        "follow_redirects": False,
    }
    if options.get("base_url"):
        kwargs["base_url"] = options["base_url"]
    if options.get("http2"):
        try:
            import h2  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from ..errors import BackendUnavailable

            raise BackendUnavailable(
                'http2=True needs the h2 package: pip install "httpx[http2]"'
            ) from exc
        kwargs["http2"] = True
    return kwargs


def build_client(**options: Unpack[ClientOptions]) -> httpx.Client:
    """A pooled :class:`httpx.Client` configured the llmkit way, honouring the active
    :class:`CallBudget` on every socket operation."""
    client = httpx.Client(**_client_kwargs(options))
    install(client)
    track(client)  # a cassette (llmkit.testing) can then record or replay its requests
    return client


def build_async_client(**options: Unpack[ClientOptions]) -> httpx.AsyncClient:
    """A pooled :class:`httpx.AsyncClient` configured the llmkit way."""
    client = httpx.AsyncClient(**_client_kwargs(options))
    install_async(client)
    track(client)
    return client


# A timer may fire a little before its time: a transport timeout this close to the call's
# deadline is the deadline running out.
DEADLINE_SLACK = 0.05


def at_deadline(request: BaseRequest) -> bool:
    """Whether ``request``'s deadline has (all but) run out."""
    left = request.remaining()
    return left is not None and left <= DEADLINE_SLACK


def map_transport_error(
    exc: BaseException,
    *,
    backend: str,
    model: str | None,
    secrets: Iterable[str | None] = (),
    request: BaseRequest | None = None,
) -> ProviderError:
    """An httpx transport exception as the matching llmkit error (message redacted).

    httpx's budgets are capped by ``request``'s deadline: a timeout when (almost) nothing of it
    is left is the deadline running out, and the error says so rather than name the phase
    httpx happened to be in."""
    original = str(exc) or type(exc).__name__
    text = redact(original, secrets)
    if text != original:
        # The httpx exception stays attached as __cause__; it must not carry the secret either.
        exc.args = (text,)
    if isinstance(exc, httpx.TimeoutException):
        cause = exc.__cause__
        if isinstance(cause, OverBudget):  # the message names the budget that ran out
            return TimeoutError(
                text, backend=backend, model=model, retryable=cause.budget != "total"
            )
        phase = {
            httpx.ConnectTimeout: "connect",
            httpx.ReadTimeout: "read (first token / idle)",
            httpx.WriteTimeout: "write",
            httpx.PoolTimeout: "connection pool",
        }.get(type(exc), "request")
        if request is not None and at_deadline(request):
            total = request.timeout.total
            phase = f"total timeout of {total:g}s (or the call's deadline) exceeded; {phase}"
        return TimeoutError(f"{phase} timeout: {text}", backend=backend, model=model)
    if isinstance(
        exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError, httpx.NetworkError)
    ):
        return ConnectionError(f"connection failed: {text}", backend=backend, model=model)
    return ConnectionError(f"{type(exc).__name__}: {text}", backend=backend, model=model)
