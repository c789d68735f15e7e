"""The in-process half of cassettes: a stand-in for backends that send no HTTP (``hf:``).

While a cassette is active, :data:`llmkit.registry.backend_hook` hands the client a
:class:`CassetteBackend` instead of the real class. It answers each call from the cassette
when it can, and otherwise builds the real backend (lazily: a replay never constructs it, so
never loads the model or imports torch) and records what it returned: responses, stream
events in order, and llmkit errors. Its capabilities are recorded too, because the client
checks them before each call.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from .. import errors as _errors
from .. import types as _types
from ..backends.base import BaseBackend, Capabilities
from ._format import Redactor

if TYPE_CHECKING:
    from ._cassette import Cassette

__all__ = ["BackendRecording", "CassetteBackend", "stand_in_class"]

_VOLATILE = frozenset({"timeout", "deadline"})  # differ on every run, never change the answer


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        try:
            return value.model_dump(mode="json", exclude_none=True)
        except (ValueError, TypeError):  # e.g. binary content that is not UTF-8
            return repr(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if f.name not in _VOLATILE
        }
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _error_json(exc: _errors.LLMError) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(exc).__name__, "message": exc.message}
    if isinstance(exc, _errors.ProviderError):
        for name in ("backend", "model", "status_code", "request_id", "retry_after"):
            out[name] = getattr(exc, name)
        out["retryable"] = exc.retryable
    return out


def _error_from_json(stored: dict[str, Any]) -> _errors.LLMError:
    cls = getattr(_errors, str(stored.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, _errors.LLMError)):
        cls = _errors.LLMError
    message = str(stored.get("message", ""))
    if issubclass(cls, _errors.ProviderError):
        names = ("backend", "model", "status_code", "request_id", "retry_after", "retryable")
        return cls(message, **{n: stored.get(n) for n in names})
    return cls(message)


def _value_from_json(stored: dict[str, Any]) -> Any:
    cls = getattr(_types, str(stored.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise ValueError(f"unknown recorded result type {stored.get('type')!r}")
    return cls.model_validate(stored.get("value"))


def _events_from_json(events: list[Any]) -> list[Any]:
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(_types.StreamEvent)
    return [adapter.validate_python(e) for e in events]


class BackendRecording:
    """One call of an in-process backend being recorded."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.result: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] | None = None
        self.error: dict[str, Any] | None = None

    @contextmanager
    def failures(self) -> Iterator[BackendRecording]:
        """Record the llmkit error the real backend raised (and let it propagate)."""
        try:
            yield self
        except _errors.LLMError as exc:
            self.error = _error_json(exc)
            raise

    def returned(self, result: Any) -> Any:
        self.result = {"type": type(result).__name__, "value": _jsonable(result)}
        return result

    def streamed(self, event: Any) -> Any:
        assert self.events is not None
        self.events.append(_jsonable(event))
        return event

    def to_json(self, redactor: Redactor) -> dict[str, Any]:
        out: dict[str, Any] = {"request": self.request}
        if self.result is not None:
            out["result"] = self.result
        if self.events is not None:
            out["events"] = self.events
        if self.error is not None:
            out["error"] = self.error
        return redactor.value(out)  # type: ignore[no-any-return]


class CassetteBackend(BaseBackend):
    """Answers from the cassette, or records the real backend (built on first need)."""

    name: ClassVar[str] = "cassette"

    def __init__(
        self, cassette: Cassette, model: str, make: Callable[[], Any], *, real: Any = None
    ) -> None:
        super().__init__(model)
        self._cassette = cassette
        self._make = make
        self._real = real
        self._lock = threading.Lock()
        recorded = cassette.capabilities(self.spec)
        if recorded is not None:
            fields = {f.name for f in dataclasses.fields(Capabilities)}
            self.capabilities = Capabilities(**{k: v for k, v in recorded.items() if k in fields})
        else:  # nothing recorded for this backend: only a recording cassette gets here
            self.capabilities = self.real().capabilities
            cassette.set_capabilities(self.spec, dataclasses.asdict(self.capabilities))

    def __repr__(self) -> str:
        return f"CassetteBackend({self.spec!r}, real={self._real!r})"

    def real(self) -> Any:
        """The real backend, constructed now if it was not (only when something must be
        recorded)."""
        with self._lock:
            if self._real is None:
                self._real = self._make()
            return self._real

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (hf's load(), tokenizer, batch()) go to the real backend.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.real(), name)

    # -- the shared decisions

    def _request(self, call: str, request: Any) -> dict[str, Any]:
        redactor = self._cassette.redactor
        return {"backend": self.spec, "call": call, "json": redactor.value(_jsonable(request))}

    def _lookup(self, call: str, request: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        view = self._request(call, request)
        return view, self._cassette.find(view)

    @staticmethod
    def _answer(stored: dict[str, Any]) -> Any:
        if stored.get("error") is not None and stored.get("result") is None:
            raise _error_from_json(stored["error"])
        return _value_from_json(stored["result"])

    def _start(self, view: dict[str, Any], *, streamed: bool = False) -> BackendRecording:
        recording = BackendRecording(view)
        if streamed:
            recording.events = []
        self._cassette.add(recording)
        return recording

    @staticmethod
    def _replayed_events(stored: dict[str, Any]) -> Iterator[Any]:
        """The recorded events, then the recorded error (raised) if the stream failed."""
        yield from _events_from_json(list(stored.get("events") or []))
        error = stored.get("error")
        if error is not None:
            raise _error_from_json(error)

    # -- whole answers

    def _call(self, call: str, request: Any) -> Any:
        view, stored = self._lookup(call, request)
        if stored is not None:
            return self._answer(stored)
        with self._start(view).failures() as recording:
            return recording.returned(getattr(self.real(), call)(request))

    async def _acall(self, call: str, request: Any) -> Any:
        view, stored = self._lookup(call, request)
        if stored is not None:
            return self._answer(stored)
        with self._start(view).failures() as recording:
            return recording.returned(await getattr(self.real(), "a" + call)(request))

    def chat(self, request: _types.ChatRequest) -> _types.ChatResponse:
        return self._call("chat", request)  # type: ignore[no-any-return]

    def complete(self, request: _types.CompletionRequest) -> _types.ChatResponse:
        return self._call("complete", request)  # type: ignore[no-any-return]

    def embed(self, request: Any) -> Any:
        return self._call("embed", request)

    async def achat(self, request: _types.ChatRequest) -> _types.ChatResponse:
        return await self._acall("chat", request)  # type: ignore[no-any-return]

    async def acomplete(self, request: _types.CompletionRequest) -> _types.ChatResponse:
        return await self._acall("complete", request)  # type: ignore[no-any-return]

    async def aembed(self, request: Any) -> Any:
        return await self._acall("embed", request)

    # -- streams

    def _stream(self, call: str, request: Any) -> Iterator[_types.StreamEvent]:
        view, stored = self._lookup(call, request)
        if stored is not None:
            yield from self._replayed_events(stored)
            return
        recording = self._start(view, streamed=True)
        stream = getattr(self.real(), call)(request)
        try:
            with recording.failures():
                for event in stream:
                    yield recording.streamed(event)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:  # left early: stop the real generation too
                close()

    async def _astream(self, call: str, request: Any) -> AsyncIterator[_types.StreamEvent]:
        view, stored = self._lookup(call, request)
        if stored is not None:
            for event in self._replayed_events(stored):
                yield event
            return
        recording = self._start(view, streamed=True)
        stream = getattr(self.real(), "a" + call)(request)
        try:
            with recording.failures():
                async for event in stream:
                    yield recording.streamed(event)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    def stream(self, request: _types.ChatRequest) -> Iterator[_types.StreamEvent]:
        return self._stream("stream", request)

    def stream_complete(self, request: _types.CompletionRequest) -> Iterator[_types.StreamEvent]:
        return self._stream("stream_complete", request)

    def astream(self, request: _types.ChatRequest) -> AsyncIterator[_types.StreamEvent]:
        return self._astream("stream", request)

    def astream_complete(
        self, request: _types.CompletionRequest
    ) -> AsyncIterator[_types.StreamEvent]:
        return self._astream("stream_complete", request)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    async def aclose(self) -> None:
        if self._real is not None:
            await self._real.aclose()


_classes: dict[str, type[CassetteBackend]] = {}


def stand_in_class(name: str) -> type[CassetteBackend]:
    """A :class:`CassetteBackend` subclass named like the backend it stands in for (the
    client reports ``backend.name`` in errors, logs and ``response.backend``)."""
    cls = _classes.get(name)
    if cls is None:
        cls = _classes[name] = type(f"Cassette_{name}_Backend", (CassetteBackend,), {"name": name})
    return cls
