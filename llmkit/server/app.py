"""The OpenAI-compatible application: :func:`create_app` builds it around an AsyncClient.

Endpoints: ``POST /v1/embeddings``, ``POST /v1/chat/completions`` and ``POST /v1/completions`` (each plain and
streamed: a stream relays the backend's events as OpenAI chunks as they are generated),
``POST /v1/responses`` with its stored responses (see ``responses``),
``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /health`` (always open),
``GET /openapi.json`` and the chat page at ``GET /`` (see ``_page``; ``ui=False`` drops
it). Whatever backend the client holds answers -- a local ``hf:`` model, or
``openai:``/``rest:`` behind llmkit's retries and fallbacks.

The pieces: request bodies are validated by the pydantic models of ``_schemas`` (which
also write ``/openapi.json``, see ``_openapi``); replies are shaped in ``_wire``; every
failure a route raises becomes an OpenAI-shaped error through the class-keyed exception
handlers of ``_errors``; streams are ``_event_stream.EventStreamResponse``; generations
wait for the slots of ``_limits`` (the client's ``AsyncSlots``); authentication and the
access log are ASGI middleware (``_middleware``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..client import AsyncClient, AsyncStream
from ..types import ChatResponse, FinishEvent, TextDelta, UsageEvent, new_response_id
from . import _wire
from ._errors import BodyTooLarge, ClientGone, UnknownModel, error_reply_for, exception_handlers
from ._event_stream import DONE, EventStreamResponse, sse_event
from ._limits import GenerationSlots
from ._middleware import LOG_KEY, AccessLogMiddleware, BearerAuthMiddleware
from ._openapi import openapi_document
from ._page import PAGE_PATHS, page_routes
from ._schemas import (
    ChatCompletionRequest,
    CompletionRequestBody,
    EmbeddingsRequest,
    RequestError,
    parse_body,
)
from .responses import ResponseStore, responses_routes

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_TOKENS_CAP",
    "DEFAULT_QUEUE_TIMEOUT",
    "ServedModel",
    "create_app",
]

logger = logging.getLogger("llmkit.server")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_TOKENS_CAP = 4096
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_MAX_QUEUE = 32
DEFAULT_QUEUE_TIMEOUT = 60.0
OPEN_PATHS = frozenset({"/health"})

T = TypeVar("T")


@dataclass(frozen=True)
class ServedModel:
    """One model of the server: the name clients use, and the client that answers it."""

    name: str
    client: AsyncClient
    created: int

    @property
    def aliases(self) -> set[str]:
        """The names a request may use: the served name, the model and the full spec."""
        return {self.name, self.client.model, self.client.backend.spec}

    @property
    def chats(self) -> bool:
        return self.client.backend.capabilities.chat

    @property
    def embeds(self) -> bool:
        return self.client.backend.capabilities.embeddings


class _Server:
    """The state behind the routes: the served models, the limits, the open streams.

    Each request is routed by its ``model`` to one served model (the first is the default
    that ``self.client`` / ``self.served_model`` name); generations of every model share the
    one set of slots, since they share the machine."""

    def __init__(
        self,
        clients: Mapping[str, AsyncClient],
        *,
        max_body_bytes: int,
        max_tokens_cap: int | None,
        limiter: GenerationSlots,
    ) -> None:
        self.created = int(time.time())
        self.models = {
            name: ServedModel(name, client, self.created) for name, client in clients.items()
        }
        first = next(iter(self.models.values()))
        self.client, self.served_model = first.client, first.name
        self._routes: dict[str, ServedModel] = {}
        for model in reversed(self.models.values()):  # a served name wins over an alias
            self._routes.update(dict.fromkeys(model.aliases, model))
        for model in self.models.values():
            self._routes[model.name] = model
        self.max_body_bytes = max_body_bytes
        self.max_tokens_cap = max_tokens_cap
        self.limiter = limiter
        self.open_streams: set[AsyncStream] = set()

    # -- helpers ------------------------------------------------------------------------

    async def _read_json(self, request: Request) -> Any:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise BodyTooLarge(self.max_body_bytes)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
        if not body.strip():
            raise RequestError("the request body is empty; expected a JSON object")
        try:
            return json.loads(bytes(body))
        except json.JSONDecodeError as exc:
            raise RequestError(
                f"the request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from None
        except (UnicodeDecodeError, ValueError):
            raise RequestError("the request body is not valid JSON (UTF-8 expected)") from None

    def route(self, name: str) -> ServedModel:
        """The served model a request names; :class:`UnknownModel` (404) lists them."""
        model = self._routes.get(name)
        if model is None:
            served = ", ".join(repr(m) for m in self.models)
            raise UnknownModel(
                f"the model {name!r} does not exist on this server; it serves {served}"
            )
        return model

    def route_chat(self, name: str) -> ServedModel:
        model = self.route(name)
        if not model.chats:
            raise RequestError(
                f"the model {model.name!r} is an embedding model: send it to /v1/embeddings; "
                f"models that chat here: {', '.join(repr(m.name) for m in self.models.values() if m.chats) or 'none'}"
            )
        return model

    @staticmethod
    def _model_card(model: ServedModel) -> dict[str, Any]:
        return {
            "id": model.name,
            "object": "model",
            "created": model.created,
            "owned_by": "llmkit",
        }

    @staticmethod
    def _log(request: Request, **values: Any) -> None:
        info = request.scope.get(LOG_KEY)
        if isinstance(info, dict):
            info.update(values)

    # -- endpoints ----------------------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        body = parse_body(ChatCompletionRequest, await self._read_json(request))
        model = self.route_chat(body.model)
        messages = body.chat_messages()
        kwargs = body.generation_kwargs(self.max_tokens_cap)
        if body.stream:
            return await self._stream_chat(request, model, body, messages, kwargs)
        response = await self.generate(request, model.client.chat(messages, **kwargs))
        payload = _wire.chat_completion(response, model.name)
        return JSONResponse(payload, headers={"x-llmkit-backend": response.backend})

    async def _stream_chat(
        self,
        request: Request,
        model: ServedModel,
        body: ChatCompletionRequest,
        messages: list[Any],
        kwargs: dict[str, Any],
    ) -> Response:
        stream = model.client.stream(messages, **kwargs)  # validates the arguments now
        return await self._serve_stream(
            request, stream, self._chat_chunks(request, stream, model.name, body.include_usage)
        )

    async def _serve_stream(
        self, request: Request, stream: AsyncStream, chunks: AsyncIterator[bytes]
    ) -> Response:
        """Open ``stream`` in a generation slot and send ``chunks`` (its events as SSE) back;
        the slot is held until the stream ends, and a client that disconnects closes the
        stream, which stops the generation (or releases the upstream connection) -- also
        while it still waits for a slot or for the first event (a stop pressed early)."""
        await _unless_disconnected(request, self._open_in_slot(stream))
        self.open_streams.add(stream)

        async def on_close(disconnected: bool) -> None:
            self.open_streams.discard(stream)
            try:
                await stream.aclose()
            finally:
                self.limiter.release()
            if disconnected:
                self._log(request, disconnected=True)
                logger.info("client disconnected mid-stream; generation stopped")

        return EventStreamResponse(chunks, on_close=on_close)

    async def _open_in_slot(self, stream: AsyncStream) -> None:
        try:
            await self.limiter.acquire()
        except BaseException:
            await stream.aclose()
            raise
        try:
            # Opening pulls the first event, so a failing backend is still an HTTP error.
            await stream.__aenter__()
        except BaseException:
            self.limiter.release()
            await stream.aclose()
            raise

    async def generate(self, request: Request, call: Awaitable[ChatResponse]) -> ChatResponse:
        """Await a generation in a slot and log its tokens; the client leaving, even while
        queued for a slot, cancels the call (and stops a local generation)."""
        response = await _unless_disconnected(request, self._in_slot(call))
        self._log(
            request,
            tokens=response.usage.total_tokens,
            upstream_request_id=response.request_id,
        )
        return response

    async def _in_slot(self, call: Awaitable[T]) -> T:
        """Await ``call`` in a generation slot (queueing for one first)."""
        try:
            await self.limiter.acquire()
        except BaseException:
            _discard(call)
            raise
        try:
            return await call
        finally:
            self.limiter.release()

    async def _chat_chunks(
        self, request: Request, stream: AsyncStream, model: str, include_usage: bool
    ) -> AsyncIterator[bytes]:
        chunk_id, created = new_response_id(), int(time.time())
        first, finished = True, False
        try:
            async for event in stream:
                if isinstance(event, UsageEvent):
                    continue  # sent once, at the end, when the caller asked for it
                finished = finished or isinstance(event, FinishEvent)
                yield sse_event(
                    _wire.chat_chunk(event, id=chunk_id, model=model, created=created, first=first)
                )
                first = False
            response = stream.response
            if not finished:
                yield sse_event(
                    _wire.chat_finish_chunk(
                        response, id=chunk_id, model=model, created=created, first=first
                    )
                )
            self._log(
                request,
                tokens=response.usage.total_tokens,
                upstream_request_id=response.request_id,
            )
            if include_usage:
                yield sse_event(
                    _wire.chat_usage_chunk(response, id=chunk_id, model=model, created=created)
                )
            yield DONE
        except Exception as exc:
            # The status line is gone; OpenAI reports a late failure as an error event.
            yield error_reply_for(exc).sse_bytes()

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions``: raw text completion. With ``stream: true`` the backend's
        ``stream_complete`` is relayed as ``text_completion`` chunks while it generates (a
        final chunk carries the finish reason; usage follows when
        ``stream_options.include_usage`` is set; then ``data: [DONE]``)."""
        body = parse_body(CompletionRequestBody, await self._read_json(request))
        model = self.route_chat(body.model)
        prompt = body.prompt_text()
        kwargs = body.generation_kwargs(self.max_tokens_cap)
        if body.stream:
            stream = model.client.stream_complete(prompt, **kwargs)  # validates the arguments
            return await self._serve_stream(
                request,
                stream,
                self._completion_chunks(request, stream, model.name, body.include_usage),
            )
        response = await self.generate(request, model.client.complete(prompt, **kwargs))
        payload = _wire.text_completion(response, model.name)
        return JSONResponse(payload, headers={"x-llmkit-backend": response.backend})

    async def _completion_chunks(
        self, request: Request, stream: AsyncStream, model: str, include_usage: bool
    ) -> AsyncIterator[bytes]:
        chunk_id, created = _wire.completion_id(), int(time.time())
        try:
            # One chunk per text delta; the finish reason (and usage, when asked for) come
            # from the accumulated response once the stream has ended.
            async for event in stream:
                if isinstance(event, TextDelta) and event.delta:
                    yield sse_event(
                        _wire.text_completion_chunk(chunk_id, created, model, event.delta)
                    )
            response = stream.response
            yield sse_event(
                _wire.text_completion_chunk(chunk_id, created, model, "", response.finish_reason)
            )
            self._log(request, tokens=response.usage.total_tokens)
            if include_usage:
                yield sse_event(
                    _wire.text_completion_usage_chunk(response, chunk_id, created, model)
                )
            yield DONE
        except Exception as exc:
            # The status line is gone; OpenAI reports a late failure as an error event.
            yield error_reply_for(exc).sse_bytes()

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``: routed by ``model`` like the chat endpoints; the vectors
        as floats or (``encoding_format: "base64"``, the SDK's default) packed float32."""
        body = parse_body(EmbeddingsRequest, await self._read_json(request))
        model = self.route(body.model)
        if not model.embeds:
            able = ", ".join(repr(m.name) for m in self.models.values() if m.embeds) or "none"
            raise RequestError(
                f"the model {model.name!r} cannot embed text; models that embed here: {able}",
                param="model",
            )
        options: dict[str, Any] = {}
        if body.dimensions is not None:
            options["dimensions"] = body.dimensions
        response = await _unless_disconnected(
            request, self._in_slot(model.client.embed(body.input, **options))
        )
        self._log(request, tokens=response.usage.prompt_tokens)
        payload = _wire.embeddings(response, model.name, body.encoding_format)
        return JSONResponse(payload, headers={"x-llmkit-backend": response.backend})

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        cards = [self._model_card(model) for model in self.models.values()]
        return JSONResponse({"object": "list", "data": cards})

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``."""
        return JSONResponse(self._model_card(self.route(request.path_params["model"])))

    async def health(self, request: Request) -> Response:
        """``GET /health``: open even when an API key is set; says nothing sensitive."""
        return JSONResponse({"status": "ok"})

    async def close_streams(self) -> None:
        """Close every stream still open (server shutdown)."""
        for stream in list(self.open_streams):
            await stream.aclose()


def _default_served_name(model: str) -> str:
    """The model part of the spec; for a local folder or ``.gguf`` file, just its name."""
    path = Path(model)
    if ("/" in model or os.sep in model) and path.exists():
        return path.stem if path.suffix == ".gguf" else path.name
    return model


def _discard(call: Awaitable[Any]) -> None:
    """Close a coroutine that will never be awaited (no "never awaited" warning)."""
    close = getattr(call, "close", None)
    if close is not None:
        close()


async def _unless_disconnected(request: Request, call: Awaitable[T]) -> T:
    """Await ``call`` in this task, cancelling it (which stops a local generation, or gives
    up a place in the slot queue) if the client leaves first: then :class:`ClientGone`.

    The call runs inline and only the watcher is a task of its own: one task per request
    rather than two, as this is on every request's path.
    """
    task = asyncio.current_task()
    assert task is not None
    left = False

    async def watch() -> None:
        nonlocal left
        # The body has been read: the next message is the disconnect (or the response end).
        while (await request.receive())["type"] != "http.disconnect":
            pass
        left = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await call
    except asyncio.CancelledError:
        if not left:
            raise  # the server is shutting down: the call stopped, and so does the request
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+: undo our own cancel()
        if uncancel is not None:
            uncancel()
        raise ClientGone from None
    finally:
        watcher.cancel()


def create_app(
    client: AsyncClient | Mapping[str, AsyncClient],
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_tokens_cap: int | None = DEFAULT_MAX_TOKENS_CAP,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    max_queue: int = DEFAULT_MAX_QUEUE,
    queue_timeout: float | None = DEFAULT_QUEUE_TIMEOUT,
    retry_after: float = 1.0,
    served_model: str | None = None,
    close_client: bool = False,
    ui: bool = True,
    responses_store: ResponseStore | None = None,
) -> Starlette:
    """Build the OpenAI-compatible ASGI app that answers through ``client``.

    Args:
        client: the :class:`~llmkit.AsyncClient` every request goes through (its retries,
            fallbacks and timeouts apply), or several as ``{served name: client}``: each
            request goes to the one its ``model`` names (the first is listed first).
        api_key: when set, every endpoint but ``/health`` requires
            ``Authorization: Bearer <api_key>``.
        max_body_bytes: larger request bodies are refused with 413.
        max_tokens_cap: ``max_tokens`` is clamped to this (and set to it when a request
            gives none); ``None`` leaves it to the backend.
        max_in_flight: generations running at once; the rest queue.
        max_queue: requests allowed to wait for a slot; beyond it the server answers 429
            with ``Retry-After`` (so does a request still queued after ``queue_timeout``).
        retry_after: the ``Retry-After`` seconds sent with a 429 of the server's own.
        served_model: the model name clients use for a single client (default: the model
            part of the client's spec); the full spec (``"hf:smollm2"``) is accepted too.
        close_client: close the client(s) when the app shuts down (the app owns them).
        ui: serve the chat page at ``/``. The page is static and open (a browser cannot send
            a bearer header when it navigates); the API calls it makes need the key.
        responses_store: where ``/v1/responses`` keeps ``store: true`` responses (default:
            an in-memory store of 1000 entries, 64 MiB, one hour).
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    if max_tokens_cap is not None and max_tokens_cap < 1:
        raise ValueError("max_tokens_cap must be positive (or None)")
    if isinstance(client, Mapping):
        if served_model is not None:
            raise ValueError("served_model names a single client; key the mapping by name")
        if not client:
            raise ValueError("give at least one client to serve")
        clients = dict(client)
    else:
        clients = {served_model or _default_served_name(client.model): client}
    limiter = GenerationSlots(max_in_flight, max_queue, queue_timeout)
    server = _Server(
        clients,
        max_body_bytes=max_body_bytes,
        max_tokens_cap=max_tokens_cap,
        limiter=limiter,
    )
    document = openapi_document(server.served_model, secured=api_key is not None, ui=ui)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for model in server.models.values():
            logger.info("serving %r as %r", model.client.backend.spec, model.name)
        try:
            yield
        finally:
            await server.close_streams()
            if close_client:
                for model in server.models.values():
                    await model.client.aclose()

    middleware = [Middleware(AccessLogMiddleware)]
    if api_key:
        open_paths = OPEN_PATHS | PAGE_PATHS if ui else OPEN_PATHS
        middleware.append(Middleware(BearerAuthMiddleware, api_key=api_key, open_paths=open_paths))
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
            Route("/v1/completions", server.completions, methods=["POST"]),
            Route("/v1/embeddings", server.embeddings, methods=["POST"]),
            Route("/v1/models", server.list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", server.get_model, methods=["GET"]),
            *responses_routes(server, responses_store),
            Route("/health", server.health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            *(page_routes() if ui else ()),
        ],
        middleware=middleware,
        exception_handlers=exception_handlers(retry_after),
        lifespan=lifespan,
    )
    app.state.llmkit = server
    return app
