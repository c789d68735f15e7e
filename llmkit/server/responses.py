"""``/v1/responses`` of ``llmkit serve``: the OpenAI Responses API in front of any backend.

``POST /v1/responses`` (plain and streamed) translates the request into llmkit messages for
whatever backend the server's client holds, and the reply (or its stream) back into a
``response`` object (or the typed event sequence) -- see :mod:`._responses_shapes`. With
``store`` (the default, as on OpenAI) the response is kept in the in-memory
:class:`~._responses_store.ResponseStore`, so ``previous_response_id`` continues the
conversation without the client resending it, and ``GET /v1/responses/{id}``,
``DELETE /v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items`` find it;
``store: false`` keeps nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..client import AsyncStream
from ..types import ChatResponse, Message
from ._errors import ErrorReply
from ._responses_schemas import InputItemsQuery
from ._responses_shapes import (
    EventWriter,
    ResponsesRequestBody,
    created_now,
    input_messages,
    new_id,
    response_object,
    stored_items,
)
from ._responses_store import ResponseStore, StoredResponse
from ._schemas import RequestError, parse_body

__all__ = ["ResponseStore", "responses_routes"]


def _not_found(response_id: str) -> Response:
    return ErrorReply(
        404,
        f"No response with id {response_id!r} found (unknown, expired, deleted, or created "
        "with store=false).",
        param="response_id",
        code="response_not_found",
    ).response()


class _Responses:
    """The endpoints; ``server`` is the app's ``_Server`` (client, limits, served name)."""

    def __init__(self, server: Any, store: ResponseStore) -> None:
        self.server = server
        self.store = store

    async def create(self, request: Request) -> Response:
        """``POST /v1/responses``."""
        server = self.server
        body = parse_body(ResponsesRequestBody, await server._read_json(request))
        served = server.route_chat(body.model)
        conversation: list[Message] = []
        if body.previous_response_id:
            previous = self.store.get(body.previous_response_id)
            if previous is None:
                raise RequestError(
                    f"Previous response with id {body.previous_response_id!r} not found "
                    "(unknown, expired, deleted, or created with store=false).",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            conversation = list(previous.conversation)
        conversation += input_messages(body.input)
        messages = (
            [Message.system(body.instructions), *conversation]
            if body.instructions
            else conversation
        )
        kwargs = body.generation_kwargs(server.max_tokens_cap)
        rid, created, model = new_id("resp"), created_now(), served.name
        if body.stream:
            stream = served.client.stream(messages, **kwargs)  # validates the arguments now
            writer = EventWriter(body, id=rid, model=model, created=created)
            events = self._events(request, stream, writer, body, conversation)
            return await server._serve_stream(request, stream, events)  # type: ignore[no-any-return]
        response = await server.generate(request, served.client.chat(messages, **kwargs))
        obj = response_object(body, id=rid, model=model, created=created, response=response)
        self._keep(body, obj, conversation, response)
        return JSONResponse(obj, headers={"x-llmkit-backend": response.backend})

    async def _events(
        self,
        request: Request,
        stream: AsyncStream,
        writer: EventWriter,
        body: ResponsesRequestBody,
        conversation: list[Message],
    ) -> AsyncIterator[bytes]:
        try:
            yield writer.start()
            async for event in stream:
                data = writer.feed(event)
                if data:
                    yield data
            response = stream.response
            data, obj = writer.finish(response)
            self._keep(body, obj, conversation, response)
            self.server._log(
                request, tokens=response.usage.total_tokens, upstream_request_id=response.request_id
            )
            yield data
        except Exception as exc:
            # The status line is gone: a late failure is a response.failed event.
            yield writer.failed(exc)

    def _keep(
        self,
        body: ResponsesRequestBody,
        obj: dict[str, Any],
        conversation: list[Message],
        response: ChatResponse,
    ) -> None:
        if body.store:
            entry = StoredResponse(
                response=obj,
                input_items=stored_items(body.input),
                conversation=[*conversation, response.message],
            )
            self.store.put(entry)

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/responses/{response_id}``."""
        response_id = request.path_params["response_id"]
        entry = self.store.get(response_id)
        return _not_found(response_id) if entry is None else JSONResponse(entry.response)

    async def delete(self, request: Request) -> Response:
        """``DELETE /v1/responses/{response_id}``."""
        response_id = request.path_params["response_id"]
        if not self.store.delete(response_id):
            return _not_found(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, request: Request) -> Response:
        """``GET /v1/responses/{response_id}/input_items`` (``order``, ``after``, ``limit``)."""
        response_id = request.path_params["response_id"]
        entry = self.store.get(response_id)
        if entry is None:
            return _not_found(response_id)
        query: InputItemsQuery = parse_body(InputItemsQuery, dict(request.query_params))
        items = entry.input_items if query.order == "asc" else entry.input_items[::-1]
        if query.after:
            ids = [item["id"] for item in items]
            items = items[ids.index(query.after) + 1 :] if query.after in ids else []
        page = items[: query.limit]
        return JSONResponse(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(items) > query.limit,
            }
        )


def responses_routes(server: Any, store: ResponseStore | None = None) -> list[Route]:
    """The ``/v1/responses`` routes over the app's server state; ``store`` defaults to a
    fresh :class:`ResponseStore` (1000 entries, 64 MiB, one hour)."""
    endpoints = _Responses(server, store if store is not None else ResponseStore())
    return [
        Route("/v1/responses", endpoints.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", endpoints.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", endpoints.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", endpoints.input_items, methods=["GET"]),
    ]
