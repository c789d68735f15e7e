"""OpenAI-shaped error replies: the table that maps llmkit errors to HTTP statuses, and the
app's exception handlers, keyed by exception class (Starlette's ``exception_handlers``).

Every error the server sends has the body OpenAI sends::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": null}}

Provider failures behind the server (the server is a gateway for ``openai:``/``rest:``
backends) are reported as gateway statuses: an upstream 5xx or a dropped connection is a
502, an upstream 503 stays a 503, a timeout is a 504. An upstream *authentication* failure
is the operator's problem, not the caller's, so it is a 502 as well, never a 401 that would
make the caller doubt its own key.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from .. import errors
from ._limits import Overloaded
from ._schemas import RequestError

__all__ = [
    "BodyTooLarge",
    "ClientGone",
    "ErrorReply",
    "UnknownModel",
    "error_reply_for",
    "exception_handlers",
    "retry_after_header",
]

logger = logging.getLogger("llmkit.server")


@dataclass
class ErrorReply:
    """An HTTP error the server sends: status, OpenAI error fields and extra headers."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The OpenAI error JSON object."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        """This error as a Starlette response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def sse_bytes(self) -> bytes:
        """This error as one SSE event (sent when a stream fails after it started)."""
        return b"data: " + json.dumps(self.body()).encode() + b"\n\n"


def retry_after_header(seconds: float | None, default: float = 1.0) -> dict[str, str]:
    """A ``Retry-After`` header in whole seconds (at least 1)."""
    value = default if seconds is None else seconds
    return {"retry-after": str(max(1, math.ceil(value)))}


# llmkit error class -> (status, OpenAI error type, code). Looked up along the exception's
# MRO, as Starlette looks up its exception handlers, so the most specific class wins and a
# subclass added later (in llmkit or by a backend) gets its parent's row.
_STATUS: dict[type[errors.LLMError], tuple[int, str, str | None]] = {
    errors.ContextLengthError: (400, "invalid_request_error", "context_length_exceeded"),
    errors.BadRequestError: (400, "invalid_request_error", None),
    errors.UnsupportedFeatureError: (400, "invalid_request_error", "unsupported"),
    errors.BackendUnavailable: (503, "server_error", "backend_unavailable"),
    errors.ConfigError: (400, "invalid_request_error", None),
    errors.NotFoundError: (404, "invalid_request_error", "model_not_found"),
    errors.RateLimitError: (429, "rate_limit_error", "rate_limit_exceeded"),
    errors.ConflictError: (409, "invalid_request_error", "conflict"),
    errors.AuthenticationError: (502, "upstream_error", "upstream_authentication_failed"),
    errors.PermissionDeniedError: (502, "upstream_error", "upstream_permission_denied"),
    errors.TimeoutError: (504, "timeout_error", "timeout"),
    errors.ConnectionError: (502, "upstream_error", "upstream_unreachable"),
    errors.ProtocolError: (502, "upstream_error", "upstream_protocol_error"),
    errors.ServerError: (502, "upstream_error", "upstream_error"),
    errors.OutputValidationError: (500, "server_error", None),
}


def error_reply_for(exc: BaseException) -> ErrorReply:
    """Map any exception to the error the caller sees (no stack traces, no secrets)."""
    if not isinstance(exc, errors.LLMError):
        logger.error("internal error while serving a request", exc_info=exc)
        return ErrorReply(500, "internal server error", "server_error", code="internal_error")
    status, kind, code = next(
        (_STATUS[cls] for cls in type(exc).__mro__ if cls in _STATUS),
        (500, "server_error", None),
    )
    headers: dict[str, str] = {}
    if isinstance(exc, errors.ServerError) and exc.status_code == 503:
        status = 503  # "the upstream is overloaded" is worth passing on as such
    if isinstance(exc, errors.ProviderError):
        if status in (429, 503) or exc.retry_after is not None:
            headers = retry_after_header(exc.retry_after)
        message = exc.message  # the redacted provider text, without the [backend:model] prefix
    else:
        message = str(exc)
    if status >= 500:
        logger.warning("backend failure: %s: %s", type(exc).__name__, errors.redact(str(exc)))
    return ErrorReply(status, errors.redact(message), kind, None, code, headers)


# ---------------------------------------------------------------------------- handlers


class BodyTooLarge(Exception):
    """The request body is over ``max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")


class ClientGone(Exception):
    """The client disconnected before its (non-streamed) answer was ready."""


class UnknownModel(Exception):
    """The request names a model this server does not serve."""


def exception_handlers(retry_after: float) -> dict[Any, ExceptionHandler]:
    """Starlette ``exception_handlers``: each failure of a route, keyed by its class (or
    Starlette's 404/405), as an OpenAI-shaped error. ``Exception`` is the catch-all 500
    (Starlette's ``ServerErrorMiddleware`` sends it, then re-raises, so the server logs the
    bug with its traceback)."""
    busy_headers = retry_after_header(retry_after)

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return ErrorReply(400, exc.message, param=exc.param, code=exc.code).response()

    async def too_large(request: Request, exc: Exception) -> Response:
        # Closing the connection: the rest of the oversized body is never read.
        headers = {"connection": "close"}
        return ErrorReply(413, str(exc), code="request_too_large", headers=headers).response()

    async def client_gone(request: Request, exc: Exception) -> Response:
        # Nobody reads this; 499 ("client closed request") is for the access log.
        return ErrorReply(499, "client closed the request", code="client_closed").response()

    async def unknown_model(request: Request, exc: Exception) -> Response:
        return ErrorReply(404, str(exc), param="model", code="model_not_found").response()

    async def overloaded(request: Request, exc: Exception) -> Response:
        return ErrorReply(
            429, str(exc), "rate_limit_error", code="server_busy", headers=busy_headers
        ).response()

    async def llm_error(request: Request, exc: Exception) -> Response:
        return error_reply_for(exc).response()

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Not logged here: ServerErrorMiddleware re-raises, and the server logs the traceback.
        return ErrorReply(
            500, "internal server error", "server_error", code="internal_error"
        ).response()

    async def not_found(request: Request, exc: Exception) -> Response:
        return ErrorReply(404, f"unknown endpoint {request.url.path}", code="not_found").response()

    async def not_allowed(request: Request, exc: Exception) -> Response:
        message = f"method {request.method} not allowed on {request.url.path}"
        return ErrorReply(405, message, code="method_not_allowed").response()

    return {
        RequestError: request_error,
        BodyTooLarge: too_large,
        ClientGone: client_gone,
        UnknownModel: unknown_model,
        Overloaded: overloaded,
        errors.LLMError: llm_error,
        404: not_found,
        405: not_allowed,
        Exception: internal_error,
    }
