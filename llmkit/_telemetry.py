"""OpenTelemetry spans for llmkit calls, following the GenAI semantic conventions.

Private: the public knobs are the client options ``tracing=`` and ``tracer_provider=``.
When ``opentelemetry-api`` is importable (``pip install "llmkit[otel]"``), every ``chat``,
``complete``, ``stream`` and ``stream_complete`` call of a client makes one span of kind
``CLIENT`` named ``"{gen_ai.operation.name} {gen_ai.request.model}"`` (``chat gpt-4o-mini``,
``text_completion my-base-model``). The span covers the whole logical call: every attempt,
retry, fallback and structured-output re-ask, and for a stream everything from opening it to
its last event (or an error, or an early close). Retries and fallbacks are span events.

Recorded (content never is: no prompt, no completion, no request headers):

* at the start: ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.request.temperature``/``top_p``/``max_tokens``/``seed``/``stop_sequences`` (when
  given), ``llmkit.request.reasoning_effort`` (when given), ``gen_ai.request.stream``,
  ``server.address``/``server.port`` (when the backend names
  one URL it sends to: :class:`~llmkit.backends.base.SupportsServerURL`), ``llmkit.backend``
  (the spec);
* at the end: ``gen_ai.response.model``, ``gen_ai.response.id`` (the response's
  :attr:`~llmkit.types.ChatResponse.id`, streams included), ``gen_ai.response.finish_reasons``,
  ``gen_ai.usage.input_tokens``/``output_tokens`` (``llmkit.usage.estimated`` when the backend
  reported none), ``gen_ai.usage.reasoning.output_tokens`` (when the backend reported them;
  the reasoning text itself never is), ``llmkit.request_id`` (the provider's ``x-request-id``, when it sent one),
  ``llmkit.attempts``; streams add ``gen_ai.response.time_to_first_chunk`` (seconds) and,
  when the caller left early, ``llmkit.stream.closed_early``. After a fallback the provider, model and ``llmkit.backend``
  name the backend that answered;
* on failure: status ``ERROR``, ``error.type`` (the exception class name) and an
  ``exception`` event built from the llmkit error alone. Its message is already redacted; the
  chained cause (the provider SDK's exception) is deliberately left out, because its text is
  not.

Cost: nothing is imported by ``import llmkit``; a client resolves its tracer once, when it is
built. Without a configured SDK the API hands out non-recording spans: the client drops them
at once and computes no attributes, so a call pays one ``start_span`` (about a microsecond).
"""

from __future__ import annotations

import importlib.util
import time
import traceback
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .backends.base import Backend, SupportsServerURL
from .errors import ConfigError, LLMError, redact

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

__all__ = ["CallSpan", "CallTracer", "provider_name", "tracer_for"]

# Backend names whose GenAI well-known ``gen_ai.provider.name`` differs from the name itself;
# any other backend is reported under its own name ("hf", "rest", "fake", ...).
_PROVIDER_NAMES = {"azure": "azure.ai.openai"}
_DEFAULT_PORTS = {"http": 80, "https": 443}

# The resolved ``opentelemetry`` modules: None until first looked up, then (trace, context,
# Status, StatusCode, SpanKind.CLIENT), or False when opentelemetry-api is not installed.
_otel: Any = None


def _load() -> Any:
    global _otel
    if _otel is None:
        loaded: Any = False
        if importlib.util.find_spec("opentelemetry") is not None:
            try:
                from opentelemetry import context, trace
                from opentelemetry.trace import SpanKind, Status, StatusCode
            except ImportError:  # pragma: no cover - a namespace package without the API
                pass
            else:
                loaded = (trace, context, Status, StatusCode, SpanKind.CLIENT)
        _otel = loaded
    return _otel


def tracer_for(tracing: bool | None, tracer_provider: Any = None) -> CallTracer | None:
    """The tracer a client uses, or ``None`` (tracing off, or opentelemetry not installed)."""
    if tracing is False:
        return None
    otel = _load()
    if not otel:
        if tracer_provider is not None:
            raise ConfigError(
                "tracer_provider= needs OpenTelemetry; install it with: pip install 'llmkit[otel]'"
            )
        return None
    from . import __version__

    trace = otel[0]
    return CallTracer(trace.get_tracer("llmkit", __version__, tracer_provider=tracer_provider))


def provider_name(backend_name: str) -> str:
    """``gen_ai.provider.name`` for a backend: the semconv well-known value where one exists."""
    return _PROVIDER_NAMES.get(backend_name, backend_name)


def _server_attributes(backend: Backend) -> dict[str, Any]:
    try:
        url = backend.server_url if isinstance(backend, SupportsServerURL) else None
        if url is None:
            return {}
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            return {}
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except (ValueError, AttributeError, TypeError):
        return {}
    return {"server.address": host, "server.port": port} if port else {"server.address": host}


def _backend_attributes(backend: Backend) -> dict[str, Any]:
    return {
        "gen_ai.provider.name": provider_name(backend.name),
        "gen_ai.request.model": backend.model,
        "llmkit.backend": backend.spec,
        **_server_attributes(backend),
    }


def _error_message(error: BaseException) -> str | None:
    # Only llmkit's own errors have messages known to be free of credentials (and are
    # redacted again, cheaply, in case a third-party backend built one carelessly).
    return redact(str(error)) if isinstance(error, LLMError) else None


class CallTracer:
    """A client's tracer: starts one :class:`CallSpan` per call."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def start(self, operation: str, backend: Any, params: Any, *, stream: bool) -> CallSpan | None:
        """Start a call's span; ``None`` when it would not be recorded (no SDK configured,
        or sampled out), so the caller skips every later step."""
        otel = _otel
        model = backend.model
        span = self._tracer.start_span(
            f"{operation} {model}",
            kind=otel[4],
            # What samplers may look at; the rest is only computed for recording spans.
            attributes={"gen_ai.operation.name": operation, "gen_ai.request.model": model},
        )
        if not span.is_recording():
            return None
        attributes = _backend_attributes(backend)
        attributes["gen_ai.request.stream"] = stream
        if params is not None:
            for name, key in (
                ("temperature", "gen_ai.request.temperature"),
                ("top_p", "gen_ai.request.top_p"),
                ("max_tokens", "gen_ai.request.max_tokens"),
                ("seed", "gen_ai.request.seed"),
                ("stop", "gen_ai.request.stop_sequences"),
                # No GenAI convention names the effort yet: llmkit's own namespace.
                ("reasoning_effort", "llmkit.request.reasoning_effort"),
            ):
                value = getattr(params, name, None)
                if value is not None:
                    attributes[key] = value
        span.set_attributes(attributes)
        return CallSpan(span, operation, backend, streaming=stream)


class CallSpan:
    """The span of one call; every method is a no-op once the span has ended."""

    __slots__ = ("_backend", "_operation", "_span", "_started", "ended", "streaming")

    def __init__(self, span: Span, operation: str, backend: Any, *, streaming: bool) -> None:
        self._span = span
        self._operation = operation
        self._backend = backend
        self._started = time.monotonic()
        self.streaming = streaming
        self.ended = False

    # -- context -------------------------------------------------------------------------

    def activate(self) -> object:
        """Make the span current (spans of instrumented HTTP clients nest under it)."""
        trace, context = _otel[0], _otel[1]
        return context.attach(trace.set_span_in_context(self._span))

    @staticmethod
    def deactivate(token: object) -> None:
        _otel[1].detach(token)

    # -- during the call -----------------------------------------------------------------

    def retry(self, error: BaseException | None, attempt: int, sleep: float | None) -> None:
        """An event per retry: the attempt that failed, why, and the wait before the next."""
        if self.ended:
            return
        attributes: dict[str, Any] = {
            "llmkit.attempt": attempt,
            "error.type": type(error).__name__ if error is not None else "unknown",
        }
        if sleep is not None:
            attributes["llmkit.retry.sleep_s"] = float(sleep)
        self._span.add_event("llmkit.retry", attributes)

    def fallback(self, error: BaseException, source: Backend, target: Backend) -> None:
        """An event when a backend gives up and the next one is tried."""
        if self.ended:
            return
        self._span.add_event(
            "llmkit.fallback",
            {
                "error.type": type(error).__name__,
                "llmkit.fallback.from": source.spec,
                "llmkit.fallback.to": target.spec,
            },
        )

    def answered_by(self, backend: Any) -> None:
        """Name the backend that answered, when a fallback did (span name included)."""
        if self.ended or backend is self._backend:
            return
        self._backend = backend
        self._span.set_attributes(_backend_attributes(backend))
        self._span.update_name(f"{self._operation} {backend.model}")

    def stream_started(self, backend: Any, got_chunk: bool) -> None:
        """The stream is open (its first event, if any, has arrived)."""
        if self.ended:
            return
        self.answered_by(backend)
        if got_chunk:
            self._span.set_attribute(
                "gen_ai.response.time_to_first_chunk", time.monotonic() - self._started
            )

    # -- the end -------------------------------------------------------------------------

    def response(self, response: Any, backend: Any, attempts: int, *, end: bool) -> None:
        """Record a non-streamed response (streams end through :meth:`stream_done`)."""
        if self.ended or self.streaming:
            return
        self.answered_by(backend)
        self._record(response, response.usage, attempts)
        if end:
            self._end()

    def stream_done(self, reply: Any, usage: Any, attempts: int, *, closed_early: bool) -> None:
        """End a stream's span: it finished, or the caller closed it early (not an error).
        ``reply`` is the accumulated response, or what had accumulated (``None``: nothing)."""
        if self.ended:
            return
        self._record(reply, usage, attempts)
        if closed_early:
            self._span.set_attribute("llmkit.stream.closed_early", True)
        self._end()

    def succeed(self, attempts: int) -> None:
        if self.ended:
            return
        self._span.set_attribute("llmkit.attempts", attempts)
        self._end()

    def fail(self, error: BaseException, attempts: int) -> None:
        """End with status ERROR, ``error.type`` and an ``exception`` event (no cause chain)."""
        if self.ended:
            return
        otel = _otel
        kind = type(error)
        message = _error_message(error)
        event: dict[str, Any] = {
            "exception.type": f"{kind.__module__}.{kind.__qualname__}",
            "exception.stacktrace": "".join(
                traceback.format_exception(kind, error, error.__traceback__, chain=False)
                if message is not None
                else traceback.format_tb(error.__traceback__)
            ),
        }
        if message is not None:
            event["exception.message"] = message
        self._span.set_attributes({"error.type": kind.__name__, "llmkit.attempts": attempts})
        self._span.add_event("exception", event)
        self._span.set_status(otel[2](otel[3].ERROR, message or kind.__name__))
        self._end()

    def _record(self, reply: Any, usage: Any, attempts: int) -> None:
        # An EmbeddingResponse has no id nor finish reason; a stream closed before its
        # first event has no reply at all.
        id = getattr(reply, "id", None)
        model = getattr(reply, "model", None)
        finish_reason = getattr(reply, "finish_reason", None)
        request_id = getattr(reply, "request_id", None)
        attributes: dict[str, Any] = {"llmkit.attempts": attempts}
        if id:
            attributes["gen_ai.response.id"] = id
        if request_id:
            attributes["llmkit.request_id"] = request_id
        if model:
            attributes["gen_ai.response.model"] = model
        if finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [finish_reason]
        if usage is not None:
            attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
            attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            if usage.estimated:
                attributes["llmkit.usage.estimated"] = True
            if usage.reasoning_tokens is not None:
                attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
        self._span.set_attributes(attributes)

    def _end(self) -> None:
        self.ended = True
        self._span.end()
