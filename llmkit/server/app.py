"""The OpenAI-compatible application: :func:`create_app` builds it around an AsyncClient.

Endpoints: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (each plain and
streamed: a stream relays the backend's events as OpenAI chunks as they are generated),
``POST /v1/responses`` with its stored responses (see ``responses``),
``GET /v1/models`` (and ``/v1/models/{id}``), ``GET /health`` (always open),
``GET /openapi.json`` and the chat page at ``GET /`` (see ``_page``; ``ui=False`` drops it). Whatever backend the client holds answers -- a local ``hf:`` model,
or ``openai:``/``rest:`` behind llmkit's retries and fallbacks.

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
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..client import AsyncClient, AsyncStream
from ..types import FinishEvent, TextDelta, UsageEvent, new_response_id
from . import _wire
from ._errors import BodyTooLarge, ClientGone, UnknownModel, error_reply_for, exception_handlers
from ._event_stream import DONE, EventStreamResponse, sse_event
from ._limits import GenerationSlots
from ._middleware import LOG_KEY, AccessLogMiddleware, BearerAuthMiddleware
from ._openapi import openapi_document
from ._page import PAGE_PATHS, page_routes
from ._schemas import ChatCompletionRequest, CompletionRequestBody, RequestError, parse_body
from .responses import ResponseStore, responses_routes

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_TOKENS_CAP",
    "DEFAULT_QUEUE_TIMEOUT",
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


class _Server:
    """The state behind the routes: the client, the limits and the served names."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        served_model: str | None,
        max_body_bytes: int,
        max_tokens_cap: int | None,
        limiter: GenerationSlots,
    ) -> None:
        self.client = client
        self.served_model = served_model or _default_served_name(client.model)
        backend = client.backend
        self.accepted_models = {self.served_model, client.model, backend.spec}
        self.max_body_bytes = max_body_bytes
        self.max_tokens_cap = max_tokens_cap
        self.limiter = limiter
        self.created = int(time.time())
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

    def _check_model(self, name: str) -> None:
        if name not in self.accepted_models:
            raise UnknownModel(
                f"the model {name!r} does not exist on this server; it serves {self.served_model!r}"
            )

    def _model_card(self) -> dict[str, Any]:
        return {
            "id": self.served_model,
            "object": "model",
            "created": self.created,
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
        self._check_model(body.model)
        messages = body.chat_messages()
        kwargs = body.generation_kwargs(self.max_tokens_cap)
        if body.stream:
            return await self._stream_chat(request, body, messages, kwargs)
        await self.limiter.acquire()
        try:
            response = await _unless_disconnected(request, self.client.chat(messages, **kwargs))
        finally:
            self.limiter.release()
        self._log(
            request,
            tokens=response.usage.total_tokens,
            upstream_request_id=response.request_id,
        )
        payload = _wire.chat_completion(response, self.served_model)
        return JSONResponse(payload, headers={"x-llmkit-backend": response.backend})

    async def _stream_chat(
        self,
        request: Request,
        body: ChatCompletionRequest,
        messages: list[Any],
        kwargs: dict[str, Any],
    ) -> Response:
        stream = self.client.stream(messages, **kwargs)  # validates the arguments now
        return await self._serve_stream(
            request, stream, self._chat_chunks(request, stream, body.include_usage)
        )

    async def _serve_stream(
        self, request: Request, stream: AsyncStream, chunks: AsyncIterator[bytes]
    ) -> Response:
        """Open ``stream`` in a generation slot and send ``chunks`` (its events as SSE) back;
        the slot is held until the stream ends, and a client that disconnects closes the
        stream, which stops the generation (or releases the upstream connection)."""
        await self.limiter.acquire()
        try:
            # Opening pulls the first event, so a failing backend is still an HTTP error.
            await stream.__aenter__()
        except BaseException:
            self.limiter.release()
            await stream.aclose()
            raise
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

    async def _chat_chunks(
        self, request: Request, stream: AsyncStream, include_usage: bool
    ) -> AsyncIterator[bytes]:
        chunk_id, created, model = new_response_id(), int(time.time()), self.served_model
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
        self._check_model(body.model)
        prompt = body.prompt_text()
        kwargs = body.generation_kwargs(self.max_tokens_cap)
        if body.stream:
            stream = self.client.stream_complete(prompt, **kwargs)  # validates the arguments
            return await self._serve_stream(
                request, stream, self._completion_chunks(request, stream, body.include_usage)
            )
        await self.limiter.acquire()
        try:
            response = await _unless_disconnected(request, self.client.complete(prompt, **kwargs))
        finally:
            self.limiter.release()
        self._log(
            request,
            tokens=response.usage.total_tokens,
            upstream_request_id=response.request_id,
        )
        payload = _wire.text_completion(response, self.served_model)
        return JSONResponse(payload, headers={"x-llmkit-backend": response.backend})

    async def _completion_chunks(
        self, request: Request, stream: AsyncStream, include_usage: bool
    ) -> AsyncIterator[bytes]:
        chunk_id, created, model = _wire.completion_id(), int(time.time()), self.served_model
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

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``."""
        self._check_model(request.path_params["model"])
        return JSONResponse(self._model_card())

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


async def _unless_disconnected(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``, cancelling it (which stops a local generation) if the client leaves."""
    task = asyncio.ensure_future(call)

    async def disconnected() -> None:
        # The body has been read: the next message is the disconnect (or the response end).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the server is shutting down: stop the generation too
        watcher.cancel()
        task.cancel()
        raise
    watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
        raise ClientGone
    return task.result()


def create_app(
    client: AsyncClient,
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
            fallbacks and timeouts apply).
        api_key: when set, every endpoint but ``/health`` requires
            ``Authorization: Bearer <api_key>``.
        max_body_bytes: larger request bodies are refused with 413.
        max_tokens_cap: ``max_tokens`` is clamped to this (and set to it when a request
            gives none); ``None`` leaves it to the backend.
        max_in_flight: generations running at once; the rest queue.
        max_queue: requests allowed to wait for a slot; beyond it the server answers 429
            with ``Retry-After`` (so does a request still queued after ``queue_timeout``).
        retry_after: the ``Retry-After`` seconds sent with a 429 of the server's own.
        served_model: the model name clients use (default: the model part of the client's
            spec); the full spec (``"hf:smollm2"``) is accepted too.
        close_client: close ``client`` when the app shuts down (the app owns it).
        ui: serve the chat page at ``/``. The page is static and open (a browser cannot send
            a bearer header when it navigates); the API calls it makes need the key.
        responses_store: where ``/v1/responses`` keeps ``store: true`` responses (default:
            an in-memory store of 1000 entries, 64 MiB, one hour).
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be positive")
    if max_tokens_cap is not None and max_tokens_cap < 1:
        raise ValueError("max_tokens_cap must be positive (or None)")
    limiter = GenerationSlots(max_in_flight, max_queue, queue_timeout)
    server = _Server(
        client,
        served_model=served_model,
        max_body_bytes=max_body_bytes,
        max_tokens_cap=max_tokens_cap,
        limiter=limiter,
    )
    document = openapi_document(server.served_model, secured=api_key is not None)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        logger.info("serving %r as %r", client.backend.spec, server.served_model)
        try:
            yield
        finally:
            await server.close_streams()
            if close_client:
                await client.aclose()

    middleware = [Middleware(AccessLogMiddleware)]
    if api_key:
        open_paths = OPEN_PATHS | PAGE_PATHS if ui else OPEN_PATHS
        middleware.append(Middleware(BearerAuthMiddleware, api_key=api_key, open_paths=open_paths))
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
            Route("/v1/completions", server.completions, methods=["POST"]),
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
