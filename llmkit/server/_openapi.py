"""The OpenAPI document served at ``/openapi.json``.

Every schema in it is generated from the pydantic models of :mod:`._schemas`: the request
models are the ones that validate the bodies, so the document cannot drift from what the
server accepts; the response models are the ones the tests validate real replies against.
Only the paths (which endpoint takes and returns which model) are written here.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__
from ._schemas import RESPONSE_MODELS, ChatCompletionRequest, CompletionRequestBody

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(s): {"description": "OpenAI-shaped error", "content": _json("ErrorBody")}
        for s in statuses
    }


def _generation(
    summary: str, request: str, response: str, event: str, chunks: str
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": _json(request)},
            "responses": {
                "200": {
                    "description": f"The reply; with `stream: true` a `text/event-stream` of "
                    f"{chunks} sent as the backend generates, the last one with a "
                    "`finish_reason`, then (with `stream_options.include_usage`) one with "
                    "empty `choices` and the `usage`, then `data: [DONE]`. A failure after "
                    "the first chunk arrives as an `error` object in the stream.",
                    "content": {
                        **_json(response),
                        "text/event-stream": {
                            "schema": {"type": "string"},
                            "x-llmkit-event": {"$ref": f"#/components/schemas/{event}"},
                        },
                    },
                },
                **_errors(400, 401, 404, 413, 429, 502, 503, 504),
            },
        }
    }


def openapi_document(served_model: str, *, secured: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server serving ``served_model``."""
    _, defs = models_json_schema(
        [
            (ChatCompletionRequest, "validation"),
            (CompletionRequestBody, "validation"),
            *((model, "serialization") for model in RESPONSE_MODELS),
        ],
        ref_template=_REF,
    )
    schemas = defs.get("$defs", {})
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "llmkit server",
            "version": __version__,
            "description": f"OpenAI-compatible API serving the model {served_model!r}.",
        },
        "paths": {
            "/v1/chat/completions": _generation(
                "Create a chat completion",
                "ChatCompletionRequest",
                "ChatCompletion",
                "ChatCompletionChunk",
                "`chat.completion.chunk` objects (`choices[0].delta`)",
            ),
            "/v1/completions": _generation(
                "Create a text completion",
                "CompletionRequestBody",
                "TextCompletion",
                "TextCompletion",
                "`text_completion` objects (`choices[0].text`, the `TextCompletion` shape)",
            ),
            "/v1/models": {
                "get": {
                    "summary": "List the served model",
                    "responses": {"200": {"description": "Models", "content": _json("ModelList")}},
                }
            },
            "/v1/models/{model}": {
                "get": {
                    "summary": "Describe the served model",
                    "parameters": [
                        {
                            "name": "model",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The model", "content": _json("ModelCard")},
                        **_errors(404),
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness probe (never requires a key)",
                    "security": [],
                    "responses": {
                        "200": {"description": "The server is up", "content": _json("Health")}
                    },
                }
            },
        },
        "components": {"schemas": schemas},
    }
    if secured:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}]
    return document
