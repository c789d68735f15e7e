"""The backend protocol: the small interface every adapter implements.

This module is the spec other code relies on; keep it small and stable. A backend has a
required part and optional abilities:

* **Required** (:class:`Backend`): ``name``, ``model``, ``capabilities`` and ``spec``; ``chat``
  turns a :class:`~llmkit.types.ChatRequest` into a :class:`~llmkit.types.ChatResponse`,
  ``stream`` into a sequence of :data:`~llmkit.types.StreamEvent`, each in sync and async
  forms (``achat``, ``astream``); ``close`` / ``aclose`` release what it holds.
* **Optional**, each a small protocol of its own: raw completion
  (:class:`SupportsCompletion`: ``complete``, ``stream_complete`` and their async forms, for
  a :class:`~llmkit.types.CompletionRequest`), embeddings (:class:`SupportsEmbedding`),
  a native batch of requests (:class:`SupportsBatch`), loading ahead of the first call
  (:class:`SupportsLoad`) and the URL it sends to, for telemetry (:class:`SupportsServerURL`).
  The client sends raw completions only to a backend whose ``capabilities.completion`` is on,
  and texts to embed only where ``capabilities.embeddings`` is; streams only where
  ``capabilities.streaming`` is (see :class:`Capabilities`). Anything else is refused with
  :class:`~llmkit.errors.UnsupportedFeatureError` before any backend method is called.

:class:`BaseBackend` is the convenient way to implement it: it gives the async forms (the sync
ones in a worker thread), ``close``, ``spec``, ``server_url = None`` and defaults for
``complete`` / ``stream_complete`` / ``embed`` that raise
:class:`~llmkit.errors.UnsupportedFeatureError`. A backend that does not subclass it
implements the required part and whichever abilities it has (``isinstance(b, Backend)``
checks that the required methods exist).

Retries, fallbacks, timeouts across attempts, usage estimation and input normalisation are
the client's job, not the backend's: a backend makes exactly one attempt per call and maps
its failures to :mod:`llmkit.errors` at one place.

Streams are generators. The client closes them (``close()`` / ``aclose()``) when the caller
leaves early, so a backend releases its HTTP response or stops its generation in a
``finally:`` block. The last event of a stream is a :class:`~llmkit.types.FinishEvent`, and
it carries the reply's metadata: ``finish_reason``, ``id``, ``model`` and ``request_id``. A
backend that talks HTTP reads the provider's request id (``x-request-id``) from the response
headers when the stream opens and sets it on that event, as ``chat`` sets
:attr:`~llmkit.types.ChatResponse.request_id`; the client copies it to
``stream.response.request_id``, the call's log record and its span. Metadata travels on the
last event, not on the iterator, so a stream stays a plain generator (and the sync-to-async
bridge of :class:`BaseBackend` carries it unchanged); a stream the caller closes before its
end has no request id.

A backend is constructed as ``BackendClass(model, **options)`` and must reject unknown or
invalid options with :class:`~llmkit.errors.ConfigError` (see :func:`validate_options`). It
is found by spec string (``"name:model"``) once registered: :func:`llmkit.register_backend`,
or the ``llmkit.backends`` entry-point group of an installed distribution (see
``examples/third_party_backend``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from .._requests import ChatRequest, CompletionRequest, EmbeddingRequest
from ..errors import ConfigError, InvalidInputError, UnsupportedFeatureError
from ..types import ChatResponse, EmbeddingResponse, StreamEvent

__all__ = [
    "Backend",
    "BaseBackend",
    "Capabilities",
    "SupportsBatch",
    "SupportsCompletion",
    "SupportsEmbedding",
    "SupportsLoad",
    "SupportsServerURL",
    "validate_options",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. The client checks ``chat``, ``streaming``, ``completion``,
    ``tools``, ``vision``, ``audio``, ``files`` and ``embeddings`` before sending anything;
    ``structured_output`` chooses how a response model is asked for."""

    chat: bool = True  # chat()/complete(): False for embedding-only models
    streaming: bool = True  # stream() (and stream_complete() where completion is on)
    tools: bool = False
    structured_output: bool = False  # honours a JSON-schema response_format natively
    completion: bool = False  # raw prompt -> continuation: implements SupportsCompletion
    vision: bool = False  # image parts in messages
    audio: bool = False  # audio parts (input_audio) in messages
    files: bool = False  # file parts (PDF) in messages
    embeddings: bool = False  # embed(): texts -> vectors: implements SupportsEmbedding

    @classmethod
    def every(cls) -> Capabilities:
        """Every capability on: what a backend for the whole OpenAI API declares."""
        return cls(**{f.name: True for f in fields(cls)})


@runtime_checkable
class Backend(Protocol):
    """The required part of every backend: chat and stream, sync and async, and close."""

    name: ClassVar[str]
    model: str
    capabilities: Capabilities

    @property
    def spec(self) -> str:
        """``"name:model"``, recorded on responses as :attr:`ChatResponse.backend`."""
        ...

    def chat(self, request: ChatRequest) -> ChatResponse: ...

    async def achat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]: ...

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class SupportsCompletion(Protocol):
    """Optional: raw completion (``prompt -> continuation``). The client calls these only on
    a backend whose ``capabilities.completion`` is on."""

    def complete(self, request: CompletionRequest) -> ChatResponse: ...

    async def acomplete(self, request: CompletionRequest) -> ChatResponse: ...

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]: ...

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]: ...


@runtime_checkable
class SupportsEmbedding(Protocol):
    """Optional: texts to vectors, one batch a call. The client calls these only on a backend
    whose ``capabilities.embeddings`` is on; how many batches of one ``embed()`` it sends at
    once is the backend's ``embed_concurrency`` where it has one (see :class:`BaseBackend`)."""

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse: ...

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse: ...


@runtime_checkable
class SupportsBatch(Protocol):
    """Optional: a native batch. ``Client.batch()`` hands the chat requests that are ready
    together to ``batch`` (``AsyncClient.batch()`` to ``abatch``), which answers each, in
    order; every input still runs its own retries, hooks and request slot."""

    def batch(self, requests: Sequence[ChatRequest | CompletionRequest]) -> list[ChatResponse]: ...

    async def abatch(
        self, requests: Sequence[ChatRequest | CompletionRequest]
    ) -> list[ChatResponse]: ...


@runtime_checkable
class SupportsLoad(Protocol):
    """Optional: load ahead of the first call (``llmkit chat`` loads a local model before
    it prompts, so the first answer is not slow for the load)."""

    def load(self) -> object: ...


@runtime_checkable
class SupportsServerURL(Protocol):
    """Optional: the URL a backend sends to, named on telemetry spans as ``server.address``
    and ``server.port``; ``None`` when it is not one known URL (in-process, or several
    replicas)."""

    @property
    def server_url(self) -> str | None: ...


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def validate_options(
    settings_cls: type[SettingsT], backend: str, options: Mapping[str, Any]
) -> SettingsT:
    """Validate constructor options against a backend's settings model.

    The error names the offending option, the value given and, for unknown options, the
    allowed ones, e.g. ``rest: unknown option 'dialekt'; allowed: base_url, dialect, ...``.
    """
    allowed = sorted(settings_cls.model_fields)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{backend}: unknown option(s) {', '.join(repr(u) for u in unknown)}; allowed: {', '.join(allowed)}"
        )
    try:
        return settings_cls.model_validate(dict(options))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "options"
        value = err.get("input")
        shown = "***" if "key" in field or "token" in field else repr(value)
        raise ConfigError(f"{backend}: invalid option {field}={shown}: {err['msg']}") from None


def check_json_extra(backend: str, extra: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidInputError` for a pass-through value that cannot travel as JSON.

    Extra keyword arguments go into the request body as they are; without this check a set,
    a ``datetime`` or an object failed deep inside httpx's encoder as a bare ``TypeError``.
    """
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{backend}: {key}={type(value).__name__} value cannot be sent as JSON ({exc}); "
                "pass JSON values (str, int, float, bool, None, lists and dicts of them)"
            ) from None


class BaseBackend:
    """Convenience base class: sensible defaults for the optional parts of the protocol.

    Subclasses set ``name`` and ``capabilities`` and implement ``chat`` and ``stream``
    (and ``complete`` / ``stream_complete`` where they take raw prompts, with
    ``capabilities.completion`` on). The async methods default to running the sync ones in a
    worker thread, so a sync-only backend never blocks the event loop; native async backends
    override them.
    """

    name: ClassVar[str] = "base"
    capabilities: Capabilities = Capabilities()
    embed_concurrency: ClassVar[int | None] = None
    """How many batches of one ``embed()`` call the client sends at once: ``None`` is the
    client's ``max_concurrency`` (HTTP servers batch concurrent requests); a backend that runs
    one batch at a time in this process says 1 (more threads would only queue, and each
    thread that touches torch keeps memory of its own)."""

    def __init__(self, model: str) -> None:
        self.model = model

    @property
    def spec(self) -> str:
        return f"{self.name}:{self.model}"

    @property
    def server_url(self) -> str | None:
        """The URL this backend sends to (:class:`SupportsServerURL`); ``None`` here."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def chat(self, request: ChatRequest) -> ChatResponse:
        raise NotImplementedError

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        raise NotImplementedError

    def complete(self, request: CompletionRequest) -> ChatResponse:
        raise no_completion(self)

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Raises :class:`~llmkit.errors.UnsupportedFeatureError` at once (nothing is sent):
        the same error as :meth:`complete` for a backend without raw completion, and one that
        points to ``complete()`` for a backend that completes but does not stream it."""
        if type(self).complete is BaseBackend.complete:
            raise no_completion(self)
        raise UnsupportedFeatureError(
            f"backend {self.name!r} does not stream raw completions; use complete() instead"
        )

    # asyncio is imported in the async methods: a sync-only program never needs it.

    async def achat(self, request: ChatRequest) -> ChatResponse:
        import asyncio

        return await asyncio.to_thread(self.chat, request)

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        import asyncio

        return await asyncio.to_thread(self.complete, request)

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Drive the sync :meth:`stream` in a worker thread, one event at a time."""
        return _in_thread(self.stream, request)

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Drive the sync :meth:`stream_complete` in a worker thread, one event at a time."""
        return _in_thread(self.stream_complete, request)

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Vectors for ``request.inputs`` (one batch). Optional: backends that embed set
        ``capabilities.embeddings`` and override this and :meth:`aembed`."""
        raise no_embeddings(self)

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        import asyncio

        return await asyncio.to_thread(self.embed, request)

    def close(self) -> None:
        """Release connections, threads or models held by the backend."""

    async def aclose(self) -> None:
        self.close()


def no_completion(backend: Backend) -> UnsupportedFeatureError:
    """The error for a raw completion asked of a backend without that ability."""
    return UnsupportedFeatureError(
        f"backend {backend.name!r} does not support raw completion; use chat() instead"
    )


def no_embeddings(backend: Backend) -> UnsupportedFeatureError:
    """The error for texts to embed sent to a backend without that ability."""
    return UnsupportedFeatureError(
        f"backend {backend.spec!r} cannot embed text; use an embedding model "
        "(e.g. hf:minilm, or an openai:/rest: embedding model)"
    )


RequestT = TypeVar("RequestT", ChatRequest, CompletionRequest)


async def _in_thread(
    start: Callable[[RequestT], Iterator[StreamEvent]], request: RequestT
) -> AsyncIterator[StreamEvent]:
    """A sync stream as an async one: each step runs in a worker thread, so the event loop
    never blocks; closing it closes the sync stream (in a thread too)."""
    import asyncio

    iterator = start(request)
    done = object()
    lock = threading.Lock()

    def step() -> Any:
        with lock:
            return next(iterator, done)

    try:
        while True:
            event = await asyncio.to_thread(step)
            if event is done:
                return
            yield event
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await asyncio.to_thread(close)
