"""The OpenAPI document served at ``/openapi.json``.

Every schema in it is generated from pydantic models: the request models of
:mod:`._schemas` and :mod:`._responses_shapes` are the ones that validate the bodies (and
:class:`~._responses_schemas.InputItemsQuery` the ``input_items`` query), so the document
cannot drift from what the server accepts; the reply models of :mod:`._schemas` and
:mod:`._responses_schemas` are the ones the tests validate real replies against. Only the
paths (which endpoint takes and returns which model) are written here; a test walks the
app's routes and fails on any the document leaves out.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .. import __version__
from ._page import PAGE_MEDIA_TYPES
from ._responses_schemas import RESPONSES_MODELS, InputItemsQuery
from ._responses_shapes import ResponsesRequestBody
from ._schemas import (
    RESPONSE_MODELS,
    ChatCompletionRequest,
    CompletionRequestBody,
    EmbeddingsRequest,
)

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletionRequest,
    CompletionRequestBody,
    EmbeddingsRequest,
    ResponsesRequestBody,
)
# Failures of a call that reaches the backend: bad request, unknown model, body too large,
# server busy, and the upstream's own failures.
_CALL_ERRORS = (400, 404, 413, 429, 502, 503, 504)


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=ref)}}}


def _operation(
    summary: str,
    reply: str,
    *,
    description: str = "OK",
    errors: tuple[int, ...] = (),
    request: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    stream: str | None = None,
) -> dict[str, Any]:
    """One operation: ``reply`` (a schema name) with 200, OpenAI-shaped ``errors``; with
    ``stream`` (the schema of one event) the 200 may also be a ``text/event-stream``."""
    content = _json(reply)
    if stream is not None:
        content["text/event-stream"] = {
            "schema": {"type": "string"},
            "x-llmkit-event": {"$ref": _REF.format(model=stream)},
        }
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": description, "content": content},
            **{
                str(s): {"description": "OpenAI-shaped error", "content": _json("ErrorBody")}
                for s in errors
            },
        },
    }
    if request is not None:
        operation["requestBody"] = {"required": True, "content": _json(request)}
    if parameters:
        operation["parameters"] = parameters
    return operation


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": prop,
        }
        for name, prop in schema["properties"].items()
    ]


def _chunks(kind: str) -> str:
    return (
        f"The reply; with `stream: true` a `text/event-stream` of {kind} sent as the backend "
        "generates, the last one with a `finish_reason`, then (with "
        "`stream_options.include_usage`) one with empty `choices` and the `usage`, then "
        "`data: [DONE]`. A failure after the first chunk arrives as an `error` object in the "
        "stream."
    )


_RESPONSE_EVENTS = (
    "The `response` object; with `stream: true` a `text/event-stream` of typed events "
    "(`event: TYPE`, `data: {...}` with a `sequence_number` from 0): `response.created`, "
    "`response.in_progress`, per output item `response.output_item.added`, its content part "
    "and deltas and their `.done` events, `response.output_item.done`, then "
    "`response.completed` (`response.incomplete` when cut by `max_output_tokens`, "
    "`response.failed` after a failure). No `[DONE]`."
)


def _paths(ui: bool) -> dict[str, Any]:
    response_id = _path_parameter("response_id", "A stored response's id (`resp_...`).")
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": _operation(
                "Create a chat completion",
                "ChatCompletion",
                request="ChatCompletionRequest",
                description=_chunks("`chat.completion.chunk` objects (`choices[0].delta`)"),
                stream="ChatCompletionChunk",
                errors=_CALL_ERRORS,
            )
        },
        "/v1/completions": {
            "post": _operation(
                "Create a text completion",
                "TextCompletion",
                request="CompletionRequestBody",
                description=_chunks(
                    "`text_completion` objects (`choices[0].text`, the `TextCompletion` shape)"
                ),
                stream="TextCompletion",
                errors=_CALL_ERRORS,
            )
        },
        "/v1/embeddings": {
            "post": _operation(
                "Create embeddings",
                "EmbeddingList",
                request="EmbeddingsRequest",
                description="The vectors",
                errors=_CALL_ERRORS,
            )
        },
        "/v1/responses": {
            "post": _operation(
                "Create a response (the Responses API)",
                "ResponseObject",
                request="ResponsesRequestBody",
                description=_RESPONSE_EVENTS,
                stream="ResponseStreamEvent",
                errors=_CALL_ERRORS,
            )
        },
        "/v1/responses/{response_id}": {
            "get": _operation(
                "Retrieve a stored response",
                "ResponseObject",
                parameters=[response_id],
                errors=(404,),
            ),
            "delete": _operation(
                "Delete a stored response",
                "ResponseDeleted",
                parameters=[response_id],
                errors=(404,),
            ),
        },
        "/v1/responses/{response_id}/input_items": {
            "get": _operation(
                "List a stored response's input items",
                "ResponseItemList",
                parameters=[response_id, *_query_parameters(InputItemsQuery)],
                errors=(400, 404),
            )
        },
        "/v1/models": {"get": _operation("List the served models", "ModelList")},
        "/v1/models/{model}": {
            "get": _operation(
                "Describe a served model",
                "ModelCard",
                parameters=[_path_parameter("model", "A served model's name.")],
                errors=(404,),
            )
        },
        "/health": {
            "get": {
                **_operation("Liveness probe (never requires a key)", "Health"),
                "security": [],
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    if ui:
        for path, media_type in PAGE_MEDIA_TYPES.items():
            paths[path] = {
                "get": {
                    "summary": "The chat page" if path == "/" else "A file of the chat page",
                    "security": [],  # a browser navigation sends no bearer header
                    "responses": {
                        "200": {
                            "description": "A static file",
                            "content": {media_type.split(";")[0]: {"schema": {"type": "string"}}},
                        }
                    },
                }
            }
    return paths


def openapi_document(served_model: str, *, secured: bool, ui: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server serving ``served_model`` (with the chat page's
    files when ``ui``; with bearer security and its 401 when ``secured``)."""
    _, defs = models_json_schema(
        [
            *((model, "validation") for model in REQUEST_MODELS),
            *((model, "serialization") for model in (*RESPONSE_MODELS, *RESPONSES_MODELS)),
        ],
        ref_template=_REF,
    )
    paths = _paths(ui)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "llmkit server",
            "version": __version__,
            "description": f"OpenAI-compatible API serving the model {served_model!r}.",
        },
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
        for operations in paths.values():
            for operation in operations.values():
                if operation.get("security") != []:
                    operation["responses"]["401"] = {
                        "description": "A missing or wrong API key",
                        "content": _json("ErrorBody"),
                    }
    return document
