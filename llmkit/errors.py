"""The llmkit exception hierarchy.

Every exception llmkit raises derives from :class:`LLMError`. There are two families:
usage mistakes, raised before anything is sent, and failures of the provider or the
connection to it, raised after a backend was asked::

    LLMError
    ├── ConfigError               a mistake in how llmkit was configured or called (also a ValueError)
    │   ├── InvalidInputError     messages, options or tools of the wrong shape
    │   ├── PromptError           a Prompt rendered with a missing or unknown variable
    │   ├── UnknownBackendError   a spec names a backend that is not registered
    │   ├── UnsupportedFeatureError  the backend cannot do what was asked (e.g. tools)
    │   └── BackendUnavailable    the backend's optional dependencies are not installed
    ├── ProviderError             the backend was asked and failed (carries status, request id, ...)
    │   ├── BadRequestError       400 / 422: the provider rejected the request
    │   │   └── ContextLengthError    the prompt does not fit the model's context window
    │   ├── AuthenticationError   401
    │   ├── PermissionDeniedError 403
    │   ├── NotFoundError         404: unknown model or endpoint
    │   ├── ConflictError         409                       (retryable)
    │   ├── RateLimitError        429, with ``retry_after``  (retryable)
    │   ├── ServerError           5xx                       (retryable)
    │   │   └── CircuitOpenError  the backend's circuit breaker is open: fall back, don't retry
    │   ├── TimeoutError          connect/first-token/idle/total budget exceeded (retryable)
    │   ├── ConnectionError       could not connect, or the connection dropped (retryable)
    │   └── ProtocolError         the reply was malformed (not retried: it is not transient)
    └── OutputValidationError     the model's output did not validate against ``response_model``

``TimeoutError`` and ``ConnectionError`` deliberately share names with the builtins; refer to
them as ``llmkit.errors.TimeoutError`` (they are not in ``llmkit.__all__`` so that
``from llmkit import *`` never shadows the builtins).

Each :class:`ProviderError` carries ``backend``, ``model``, ``status_code`` (when an HTTP
status was involved), ``request_id`` (when the provider sent one), ``retry_after`` (seconds,
when the provider asked for a pause) and the ``retryable`` flag that the retry policy reads.
The original exception is kept as ``__cause__``. Messages never contain credentials: the
helpers below run every provider-supplied text through :func:`redact`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "AuthenticationError",
    "BackendUnavailable",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ConnectionError",
    "ContextLengthError",
    "InvalidInputError",
    "LLMError",
    "NotFoundError",
    "OutputValidationError",
    "PermissionDeniedError",
    "PromptError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "TimeoutError",
    "UnknownBackendError",
    "UnsupportedFeatureError",
    "error_from_status",
    "parse_retry_after",
    "redact",
]


class LLMError(Exception):
    """Base class of every llmkit error.

    ``retryable`` tells the retry policy (and fallbacks) whether trying again can help; it is
    a class default that a single instance may override.
    """

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


# ---------------------------------------------------------------------------- usage mistakes


class ConfigError(LLMError, ValueError):
    """llmkit was configured or called wrongly; nothing was sent to any backend."""


class InvalidInputError(ConfigError):
    """A message, option, tool or other argument has the wrong shape or value."""


class PromptError(ConfigError):
    """A :class:`~llmkit.Prompt` was rendered with a missing or unknown variable."""


class UnknownBackendError(ConfigError):
    """A spec names a backend that is not registered."""


class UnsupportedFeatureError(ConfigError):
    """The backend cannot do what the call asked for (tools, raw completion, ...)."""


class BackendUnavailable(ConfigError):
    """The backend exists but its optional dependencies are not installed."""


# ---------------------------------------------------------------------------- provider failures


class ProviderError(LLMError):
    """A backend was asked and failed.

    Attributes:
        backend: the backend name (``"openai"``, ``"rest"``, ...).
        model: the model the request was for.
        status_code: the HTTP status, when the failure came with one.
        request_id: the provider's request id (``x-request-id``), when it sent one.
        retry_after: seconds the provider asked to wait before retrying, when it did.
        body: the provider's error payload (decoded JSON or text), redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        model: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
        retryable: bool | None = None,
    ) -> None:
        # Last line of defence: whatever text a backend passes in, key-shaped strings go.
        super().__init__(redact(message))
        if retryable is not None:
            self.retryable = retryable
        self.backend = backend
        self.model = model
        self.status_code = status_code
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        where = ":".join(p for p in (self.backend, self.model) if p)
        details = []
        if self.status_code is not None:
            details.append(f"status {self.status_code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        suffix = f" ({', '.join(details)})" if details else ""
        prefix = f"[{where}] " if where else ""
        return f"{prefix}{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, backend={self.backend!r}, "
            f"model={self.model!r}, status_code={self.status_code!r}, "
            f"request_id={self.request_id!r}, retry_after={self.retry_after!r})"
        )


class BadRequestError(ProviderError):
    """The provider rejected the request as invalid (400, 422)."""


class ContextLengthError(BadRequestError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


class AuthenticationError(ProviderError):
    """The credentials were missing or rejected (401)."""


class PermissionDeniedError(ProviderError):
    """The credentials are valid but not allowed to do this (403)."""


class NotFoundError(ProviderError):
    """The model or endpoint does not exist (404)."""


class ConflictError(ProviderError):
    """The provider reported a conflict (409); transient, so retried."""

    retryable = True


class RateLimitError(ProviderError):
    """Too many requests (429). ``retry_after`` says how long the provider asked to wait."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed (5xx); transient, so retried."""

    retryable = True


class CircuitOpenError(ServerError):
    """The backend's circuit breaker is open (it failed repeatedly and its cool-down has not
    ended), so it was not asked. A :class:`ServerError`, so ``except ServerError`` still
    catches it; the client falls back to the next backend at once rather than retrying this
    one, which cannot help before the cool-down ends."""


class TimeoutError(ProviderError):
    """A connect, first-token, idle or total time budget ran out."""

    retryable = True


class ConnectionError(ProviderError):
    """The connection could not be made, or dropped before the reply was complete."""

    retryable = True


class ProtocolError(ProviderError):
    """The reply did not follow the wire format (malformed JSON, SSE or NDJSON)."""


class OutputValidationError(LLMError):
    """The model's output did not validate against the requested ``response_model``.

    Attributes:
        raw_text: the text the model produced (last attempt).
        errors: the validation errors (pydantic's ``errors()`` list) of the last attempt.
        attempts: how many times the model was asked.
    """

    def __init__(
        self, message: str, *, raw_text: str, errors: list[Any], attempts: int = 1
    ) -> None:
        super().__init__(message)
        self.raw_text = raw_text
        self.errors = errors
        self.attempts = attempts


# ---------------------------------------------------------------------------- helpers

_STATUS_TABLE: dict[int, type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: TimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "too many tokens",
    "input validation error: `inputs` tokens + `max_new_tokens`",
)

# Bearer tokens, OpenAI-style keys and common "key=..." fragments. Provider error bodies
# sometimes echo a (partial) key back; none of it may reach a message or a log line.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk-|sk_|rk-|hf_|gsk_|xai-)[A-Za-z0-9_*\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]{6,}"),
]


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Return ``text`` with every known secret and anything shaped like a key masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "***", text)
    return text


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    ``headers`` may be any mapping; lookups are case-insensitive (keys are lowercased).
    Returns ``None`` when no usable header is present.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils  # only needed for the rare HTTP-date form; keeps import llmkit light

    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


def _message_from_body(body: Any) -> str | None:
    """Find the human message in the error shapes servers actually send."""
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if isinstance(error, Mapping):
        msg = error.get("message")
        return str(msg) if msg else json.dumps(error)[:500]
    if isinstance(error, str):  # TGI {"error": ..., "error_type": ...}, Ollama {"error": ...}
        return error
    detail = body.get("detail")  # FastAPI
    if detail is not None:
        return detail if isinstance(detail, str) else json.dumps(detail)[:500]
    msg = body.get("message")
    return str(msg) if msg else None


def _error_code(body: Any) -> str:
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            return f"{error.get('code') or ''} {error.get('type') or ''}"
        return str(body.get("error_type") or "")
    return ""


def error_from_status(
    status_code: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    backend: str | None = None,
    model: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ProviderError:
    """Map an HTTP error status and body to the right :class:`ProviderError` subclass.

    This is the one status → class table every HTTP backend uses. ``body`` is the decoded
    JSON (or the text) of the reply; ``secrets`` are masked out of the message.
    """
    headers = headers or {}
    lowered = {k.lower(): v for k, v in headers.items()}
    cls = _STATUS_TABLE.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else BadRequestError
    secrets = list(secrets)
    message = redact(_message_from_body(body) or f"HTTP {status_code}", secrets)
    if cls is BadRequestError:
        haystack = (message + " " + _error_code(body)).lower()
        if any(marker in haystack for marker in _CONTEXT_MARKERS):
            cls = ContextLengthError
    if isinstance(body, str):
        safe_body: Any = redact(body[:2000], secrets)
    else:
        try:
            safe_body = json.loads(redact(json.dumps(body), secrets))
        except (TypeError, ValueError):
            safe_body = None
    return cls(
        message,
        backend=backend,
        model=model,
        status_code=status_code,
        request_id=lowered.get("x-request-id") or lowered.get("request-id"),
        retry_after=parse_retry_after(lowered),
        body=safe_body,
    )
