"""Pure ASGI middleware: bearer-token authentication, the access log and request ids.

Both wrap the app without buffering the response, so streamed replies pass straight
through (Starlette's ``BaseHTTPMiddleware`` would get in the way of disconnect handling).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import ErrorReply

__all__ = ["LOG_KEY", "AccessLogMiddleware", "BearerAuthMiddleware"]

access_logger = logging.getLogger("llmkit.server.access")

# Handlers record what the access log should show (tokens) in this per-request dict.
LOG_KEY = "llmkit.log"

_REQUEST_ID = b"x-request-id"
# A caller's own id is kept when it is short and plain (it ends up in headers and logs).
_CALLER_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


def _request_id_for(scope: Scope) -> bytes:
    """The request's id: the caller's well-formed ``x-request-id``, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID:
            if _CALLER_ID.fullmatch(value):
                return bytes(value)
            break
    return b"req_" + os.urandom(12).hex().encode()


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
    """One log line per request: method, path, status, latency, tokens and request id (never
    other headers); every response carries the request id as ``x-request-id``."""

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
        request_id = _request_id_for(scope)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if all(name.lower() != _REQUEST_ID for name, _ in headers):
                    headers.append((_REQUEST_ID, request_id))
                    message = {**message, "headers": headers}
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
            upstream = info.get("upstream_request_id")
            access_logger.log(
                level,
                '%s "%s %s" %d %.3fs tokens=%s request_id=%s%s%s',
                f"{client[0]}:{client[1]}" if client else "-",
                scope.get("method", "-"),
                path,
                status,
                latency,
                "-" if tokens is None else tokens,
                request_id.decode("ascii"),
                f" upstream_request_id={upstream}" if upstream else "",
                " (client disconnected)" if info.get("disconnected") else "",
            )
