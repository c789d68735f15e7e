"""OpenAI-shaped error replies, and the one table that maps llmkit errors to HTTP statuses.

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

from starlette.responses import JSONResponse

from .. import errors

__all__ = ["ErrorReply", "error_reply_for", "error_response"]

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


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """Shortcut: an OpenAI-shaped error response."""
    return ErrorReply(status, message, type, param, code, dict(headers or {})).response()


def retry_after_header(seconds: float | None, default: float = 1.0) -> dict[str, str]:
    """A ``Retry-After`` header in whole seconds (at least 1)."""
    value = default if seconds is None else seconds
    return {"retry-after": str(max(1, math.ceil(value)))}


# The status -> class table, most specific first (isinstance order matters).
_TABLE: list[tuple[type[errors.LLMError], int, str, str | None]] = [
    (errors.ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (errors.BadRequestError, 400, "invalid_request_error", None),
    (errors.UnsupportedFeatureError, 400, "invalid_request_error", "unsupported"),
    (errors.BackendUnavailable, 503, "server_error", "backend_unavailable"),
    (errors.ConfigError, 400, "invalid_request_error", None),
    (errors.NotFoundError, 404, "invalid_request_error", "model_not_found"),
    (errors.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
    (errors.ConflictError, 409, "invalid_request_error", "conflict"),
    (errors.AuthenticationError, 502, "upstream_error", "upstream_authentication_failed"),
    (errors.PermissionDeniedError, 502, "upstream_error", "upstream_permission_denied"),
    (errors.TimeoutError, 504, "timeout_error", "timeout"),
    (errors.ConnectionError, 502, "upstream_error", "upstream_unreachable"),
    (errors.ProtocolError, 502, "upstream_error", "upstream_protocol_error"),
    (errors.ServerError, 502, "upstream_error", "upstream_error"),
    (errors.OutputValidationError, 500, "server_error", None),
]


def error_reply_for(exc: BaseException) -> ErrorReply:
    """Map any exception to the error the caller sees (no stack traces, no secrets)."""
    if not isinstance(exc, errors.LLMError):
        logger.error("internal error while serving a request", exc_info=exc)
        return ErrorReply(500, "internal server error", "server_error", code="internal_error")
    status, kind, code = 500, "server_error", None
    for cls, table_status, table_kind, table_code in _TABLE:
        if isinstance(exc, cls):
            status, kind, code = table_status, table_kind, table_code
            break
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
