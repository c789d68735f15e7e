"""Pure ASGI middleware: bearer-token authentication and the access log.

Both wrap the app without buffering the response, so streamed replies pass straight
through (Starlette's ``BaseHTTPMiddleware`` would get in the way of disconnect handling).
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ErrorReply

__all__ = ["LOG_KEY", "AccessLogMiddleware", "BearerAuthMiddleware"]

access_logger = logging.getLogger("llmkit.server.access")

# Handlers record what the access log should show (tokens) in this per-request dict.
LOG_KEY = "llmkit.log"


class BearerAuthMiddleware:
    """Require ``Authorization: Bearer <api_key>`` on every path but the open ones."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str]) -> None:
        self.app = app
        self._key = api_key.encode()
        self._open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self._open_paths:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = token.strip()
                break
        # compare_digest on bytes: the time taken does not depend on where they differ.
        if given and hmac.compare_digest(given, self._key):
            await self.app(scope, receive, send)
            return
        message = (
            "missing API key: send 'Authorization: Bearer <key>'"
            if not given
            else "invalid API key"
        )
        reply = ErrorReply(
            401,
            message,
            "invalid_request_error",
            code="invalid_api_key",
            headers={"www-authenticate": "Bearer"},
        )
        await reply.response()(scope, receive, send)


class AccessLogMiddleware:
    """One log line per request: method, path, status, latency and tokens (never headers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        info: dict[str, Any] = {}
        scope[LOG_KEY] = info
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            status = status or 500
            raise
        finally:
            latency = time.perf_counter() - started
            tokens = info.get("tokens")
            client = scope.get("client")
            path = scope.get("path", "-")
            # Health probes arrive every few seconds from load balancers: keep them quiet.
            level = logging.DEBUG if path == "/health" and status == 200 else logging.INFO
            access_logger.log(
                level,
                '%s "%s %s" %d %.3fs tokens=%s%s',
                f"{client[0]}:{client[1]}" if client else "-",
                scope.get("method", "-"),
                path,
                status,
                latency,
                "-" if tokens is None else tokens,
                " (client disconnected)" if info.get("disconnected") else "",
            )
