"""What each HTTP backend and dialect actually sends for structured output and tools
(issue 15, item 2).

The behaviour suite accepted either a native ``response_format`` or the system-message
fallback, so switching a backend's ``structured_output`` capability off (or losing the schema
on the way) left every test green. Here each backend and dialect has its one expected wire
shape, checked in the outgoing JSON for chat and stream, sync and async, through the real
Client, SDK and httpx (respx at the transport; the server answers 400 once the request is
captured, which is all these tests need).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx
from pydantic import BaseModel

import llmkit.errors as E
from llmkit import RetryPolicy


class Address(BaseModel):
    city: str


class Person(BaseModel):
    name: str
    address: Address


SCHEMA = Person.model_json_schema()

TARGETS: dict[str, dict[str, Any]] = {
    "openai": {
        "model": "openai:gpt-4o-mini",
        "api_key": "sk-test-key-0000",
        "base_url": "http://llm.test/v1",
    },
    "rest-openai": {"model": "rest:m", "base_url": "http://llm.test/v1"},
    "rest-tgi": {
        "model": "rest:m",
        "base_url": "http://llm.test",
        "dialect": "tgi",
        "template": "chatml",
    },
    "rest-ollama": {"model": "rest:m", "base_url": "http://llm.test", "dialect": "ollama"},
}


def _schema_sent(target: str, sent: dict[str, Any]) -> Any:
    if target in ("openai", "rest-openai"):
        fmt = sent["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "Person"
        return fmt["json_schema"]["schema"]
    if target == "rest-tgi":
        grammar = sent["parameters"]["grammar"]
        assert grammar["type"] == "json"
        return grammar["value"]
    return sent["format"]  # ollama: the schema itself as "format"


def _capture(
    kwargs: dict[str, Any], driver: Any, op: str, *args: Any, **options: Any
) -> dict[str, Any]:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(url__startswith="http://llm.test").respond(
            400, json={"error": {"message": "captured"}}
        )
        client = {**kwargs, "retry": RetryPolicy(max_attempts=1)}
        with pytest.raises(E.BadRequestError):
            getattr(driver, op)(client, *args, **options)
        assert route.call_count == 1
        return json.loads(route.calls.last.request.content)  # type: ignore[no-any-return]


@pytest.mark.parametrize("op", ["chat", "stream"])
@pytest.mark.parametrize("target", list(TARGETS))
def test_response_model_sends_its_json_schema(driver: Any, target: str, op: str) -> None:
    sent = _capture(TARGETS[target], driver, op, "Who?", response_model=Person)
    assert _schema_sent(target, sent) == SCHEMA
    # Native support: no schema instruction added to the prompt on top.
    text = json.dumps(sent.get("messages") or sent.get("inputs"))
    assert '\\"address\\"' not in text and "address" not in text


@pytest.mark.parametrize("op", ["chat", "stream"])
@pytest.mark.parametrize("target", ["openai", "rest-openai"])
def test_a_raw_response_format_passes_through(driver: Any, target: str, op: str) -> None:
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
    }
    sent = _capture(TARGETS[target], driver, op, "Hi", response_format=fmt)
    assert sent["response_format"] == fmt


def get_time(city: str) -> str:
    """The local time in a city."""
    return "12:00"


TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize("op", ["chat", "stream"])
@pytest.mark.parametrize("target", ["openai", "rest-openai"])
@pytest.mark.parametrize(
    "choice",
    ["auto", "required", {"type": "function", "function": {"name": "get_time"}}],
    ids=["auto", "required", "named"],
)
def test_tools_and_tool_choice_are_sent(driver: Any, target: str, op: str, choice: Any) -> None:
    sent = _capture(TARGETS[target], driver, op, "Time?", tools=[get_time], tool_choice=choice)
    (tool,) = sent["tools"]
    assert tool["type"] == "function" and tool["function"]["name"] == "get_time"
    assert (
        tool["function"]["parameters"]["properties"] == TOOL["function"]["parameters"]["properties"]
    )
    assert tool["function"]["parameters"]["required"] == ["city"]
    assert sent["tool_choice"] == choice


@pytest.mark.parametrize("op", ["chat", "stream"])
@pytest.mark.parametrize("target", ["rest-tgi", "rest-ollama"])
def test_dialects_without_tools_refuse_before_sending(driver: Any, target: str, op: str) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(url__startswith="http://llm.test").respond(400)
        with pytest.raises(E.UnsupportedFeatureError, match="tools"):
            getattr(driver, op)(TARGETS[target], "Time?", tools=[get_time])
        assert not route.called
