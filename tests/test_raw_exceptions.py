"""Values a caller passes that cannot be sent end as typed errors, never as raw exceptions
from pydantic, json or httpx (issue 15, item 1).

Each case used to escape as the library's own exception (``PydanticInvalidForJsonSchema``,
``PydanticSchemaGenerationError``, ``TypeError: Object of type set is not JSON
serializable``), which a caller catching :class:`llmkit.LLMError` does not catch. The REST
backend runs against respx at the transport, so the real request-building code runs.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import respx
from pydantic import BaseModel, ConfigDict

import llmkit.errors as E

BASE = "http://llm.test/v1"
REPLY = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}
    ],
}


class Opaque:
    """A type pydantic can neither validate without help nor describe in JSON schema."""


class Unschematic(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    thing: Opaque


def opaque_tool(thing: Opaque) -> str:
    """A tool whose parameter pydantic cannot validate."""
    return "x"


@pytest.fixture(params=["fake:echo", "rest:m"])
def client_kwargs(request: pytest.FixtureRequest) -> Any:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{BASE}/chat/completions").respond(json=REPLY)
        kwargs: dict[str, Any] = {"model": request.param}
        if request.param.startswith("rest:"):
            kwargs["base_url"] = BASE
        yield kwargs
        assert not route.called  # every case fails before anything is sent


def test_a_response_model_without_a_json_schema(driver: Any, client_kwargs: Any) -> None:
    with pytest.raises(E.InvalidInputError, match=r"response_model Unschematic: .*JSON schema"):
        driver.chat(client_kwargs, "hi", response_model=Unschematic)


def test_a_tool_whose_parameters_pydantic_cannot_describe(driver: Any, client_kwargs: Any) -> None:
    with pytest.raises(E.InvalidInputError, match="tool function 'opaque_tool'"):
        driver.chat(client_kwargs, "hi", tools=[opaque_tool])


def test_tool_call_arguments_that_are_not_json(driver: Any, client_kwargs: Any) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": {"when": datetime.datetime.now()}},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "x"},
    ]
    with pytest.raises(E.InvalidInputError, match="arguments must be JSON"):
        driver.chat(client_kwargs, messages)


@pytest.mark.parametrize("extra", [{"tags": {1, 2}}, {"extra_body": {"at": datetime.date.today()}}])
def test_rest_extra_values_that_are_not_json(driver: Any, extra: dict[str, Any]) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{BASE}/chat/completions").respond(json=REPLY)
        with pytest.raises(E.InvalidInputError, match="cannot be sent as JSON") as info:
            driver.chat({"model": "rest:m", "base_url": BASE}, "hi", **extra)
        assert next(iter(extra)) in str(info.value)
        with pytest.raises(E.InvalidInputError, match="cannot be sent as JSON"):
            driver.stream({"model": "rest:m", "base_url": BASE}, "hi", **extra)
        assert not route.called
