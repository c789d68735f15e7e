"""``/openapi.json`` describes every route the server answers, with schemas generated from
the pydantic models that validate the requests and describe the replies -- checked against
the app's own routes, real replies over a real socket, and what the official SDK sends."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import openai
import pytest
from starlette.routing import Route

from llmkit.server import _responses_schemas as rschemas
from llmkit.server._openapi import REQUEST_MODELS
from llmkit.server._responses_shapes import ResponsesRequestBody
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory

REF = "#/components/schemas/{model}"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
CALL = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}


def _route_operations(app: Any) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route: ``{model:path}`` is written ``{model}``, and
    the HEAD Starlette adds to each GET is left out."""
    out = set()
    for route in app.routes:
        assert isinstance(route, Route), route  # a mount would need walking into
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        out |= {(path, m.lower()) for m in route.methods or () if m != "HEAD"}
    return out


@pytest.mark.parametrize("ui", [True, False])
def test_every_route_is_documented(serve: ServeFactory, ui: bool) -> None:
    served = serve(api_key=API_KEY, ui=ui)
    document = httpx.get(
        f"{served.base_url}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    documented = {(path, m) for path, ops in document["paths"].items() for m in ops}
    routes = _route_operations(served.app)
    assert routes - documented == set(), "routes the document leaves out"
    assert documented - routes == set(), "paths the document invents"
    assert ("/v1/responses/{response_id}/input_items", "get") in routes
    assert (("/", "get") in documented) is ui
    # Every $ref names a generated schema; the secured document lists the 401 where a key is
    # needed and only there.
    text = json.dumps(document)
    schemas = document["components"]["schemas"]
    assert {ref for ref in re.findall(r'"#/components/schemas/(\w+)"', text)} <= set(schemas)
    for path, ops in document["paths"].items():
        for op in ops.values():
            assert ("401" in op["responses"]) is (op.get("security") != []), path


def test_request_schemas_are_the_validating_models(serve: ServeFactory) -> None:
    document = httpx.get(f"{serve().base_url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    for model in REQUEST_MODELS:
        generated = model.model_json_schema(ref_template=REF)
        generated.pop("$defs", None)
        assert schemas[model.__name__] == generated
    post = document["paths"]["/v1/responses"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == REF.format(model="ResponsesRequestBody")
    query = document["paths"]["/v1/responses/{response_id}/input_items"]["get"]["parameters"]
    limit = next(p for p in query if p["name"] == "limit")
    bounds = (limit["in"], limit["schema"]["minimum"], limit["schema"]["maximum"])
    assert bounds == ("query", 1, 100)
    assert "text/event-stream" in post["responses"]["200"]["content"]
    embeddings = document["paths"]["/v1/embeddings"]["post"]
    assert embeddings["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EmbeddingsRequest"
    )


def _events(text: str) -> list[dict[str, Any]]:
    """The ``data:`` payloads of a Responses stream, checked against their ``event:`` lines."""
    out = []
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n")
        payload = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {payload['type']}"
        out.append(payload)
    return out


def test_responses_replies_match_the_openapi_models(serve: ServeFactory) -> None:
    # The reply models forbid unknown fields: a reply (or stream event) the server sends that
    # they do not describe fails here.
    served = serve(
        [
            Reply("It is sunny.", reasoning="Look it up.", tool_calls=[CALL]),
            Reply("Streamed.", reasoning="Think.", tool_calls=[CALL]),
            Reply("Cut", finish_reason="length"),
        ]
    )
    body = {
        "model": "fake-model",
        "input": [
            {"role": "user", "content": "Weather?"},
            {"type": "function_call", "call_id": "c0", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c0", "output": "sunny"},
        ],
        "tools": [WEATHER],
        "metadata": {"k": "v"},
    }
    with httpx.Client(base_url=served.v1) as http:
        created = http.post("/responses", json=body).json()
        rschemas.ResponseObject.model_validate(created)
        assert [item["type"] for item in created["output"]] == [
            "reasoning",
            "message",
            "function_call",
        ]
        events = _events(http.post("/responses", json={**body, "stream": True}).text)
        kinds = {rschemas.ResponseStreamEvent.model_validate(e).root.type for e in events}
        assert {"response.reasoning_text.delta", "response.function_call_arguments.done"} <= kinds
        cut = http.post("/responses", json={"model": "fake-model", "input": "x"}).json()
        assert rschemas.ResponseObject.model_validate(cut).status == "incomplete"
        rid = created["id"]
        rschemas.ResponseObject.model_validate(http.get(f"/responses/{rid}").json())
        items = http.get(f"/responses/{rid}/input_items", params={"order": "asc"}).json()
        listed = rschemas.ResponseItemList.model_validate(items)
        assert [i.type for i in listed.data] == ["message", "function_call", "function_call_output"]
        bad = http.get(f"/responses/{rid}/input_items", params={"limit": "many"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
        rschemas.ResponseDeleted.model_validate(http.delete(f"/responses/{rid}").json())


def test_the_sdk_request_matches_the_documented_schema(serve: ServeFactory) -> None:
    served = serve([Reply("ok"), Reply("streamed")], api_key=API_KEY)
    sent: list[dict[str, Any]] = []

    def capture(request: httpx.Request) -> None:
        if request.url.path.endswith("/responses"):
            sent.append(json.loads(request.content))

    http = httpx.Client(event_hooks={"request": [capture]})
    sdk = openai.OpenAI(base_url=f"{served.v1}", api_key=API_KEY, max_retries=0, http_client=http)
    with sdk:
        reply = sdk.responses.create(
            model="fake-model",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
            instructions="Be brief.",
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="auto",
            text={"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}},
            max_output_tokens=30,
            temperature=0.5,
            top_p=0.9,
            reasoning={"effort": "low", "summary": "auto"},
            store=True,
            metadata={"k": "v"},
            parallel_tool_calls=False,
            include=["reasoning.encrypted_content"],
            truncation="auto",
            user="someone",
        )
        with sdk.responses.stream(model="fake-model", input="hi", max_output_tokens=16) as events:
            streamed = events.get_final_response()
        auth = {"Authorization": f"Bearer {API_KEY}"}
        document = http.get(f"{served.base_url}/openapi.json", headers=auth).json()
    assert (reply.output_text, streamed.output_text) == ("ok", "streamed")
    assert [body.get("stream", False) for body in sent] == [False, True]
    post = document["paths"]["/v1/responses"]["post"]
    ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    # The documented schema is the one generated from the model that validates the body...
    generated = ResponsesRequestBody.model_json_schema(ref_template=REF)
    generated.pop("$defs", None)
    assert schema == generated
    for body in sent:
        # ...every field the SDK sends is described (the model ignores unknown ones, so this
        # is what catches an undocumented field), the required ones are sent...
        assert set(body) <= set(schema["properties"]), set(body) - set(schema["properties"])
        assert set(schema["required"]) <= set(body)
        # ...and the model accepts the body as sent, every field of it read.
        validated = ResponsesRequestBody.model_validate(body)
        assert validated.model_dump(exclude_unset=True).keys() == body.keys()
