"""Tools from Python functions and models, and the tool loop (sync and async)."""

from __future__ import annotations

import asyncio
import enum
import json
import threading
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from llmkit import AsyncClient, Client, InvalidInputError, Tool, ToolCall
from llmkit.testing import FakeBackend, Reply
from llmkit.tools import execute


class Unit(str, enum.Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Location(BaseModel):
    city: str
    country: str = "FR"


def get_weather(location: Location, unit: Unit = Unit.celsius, days: int = 1) -> dict[str, object]:
    """Get the weather forecast.

    Args:
        location: where to look.
        unit: temperature unit.
        days: how many days ahead.
    """
    return {"city": location.city, "unit": unit.value, "days": days, "temp": 21}


def test_function_schema_has_defaults_enums_and_nested_models() -> None:
    tool = Tool.coerce(get_weather)
    assert tool.name == "get_weather"
    assert tool.description == "Get the weather forecast."
    params = tool.parameters
    assert params["required"] == ["location"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["days"] == {"default": 1, "description": "how many days ahead.", "type": "integer"}
    assert props["unit"]["default"] == "celsius"
    assert params["$defs"]["Unit"]["enum"] == ["celsius", "fahrenheit"]
    assert params["$defs"]["Location"]["required"] == ["city"]
    assert props["location"]["$ref"] == "#/$defs/Location"


def test_literal_and_annotated_descriptions() -> None:
    def search(
        query: Annotated[str, Field(description="what to find")],
        mode: Literal["fast", "deep"] = "fast",
    ) -> str:
        return query

    props = Tool.coerce(search).parameters["properties"]
    assert props["query"]["description"] == "what to find"
    assert props["mode"]["enum"] == ["fast", "deep"]


def test_pydantic_model_as_tool() -> None:
    class Extract(BaseModel):
        """Record a person."""

        name: str
        age: int

    tool = Tool.coerce(Extract)
    assert tool.name == "Extract" and tool.description == "Record a person."
    result = execute(
        ToolCall(id="1", name="Extract", arguments='{"name": "Ada", "age": 36}'), {"Extract": tool}
    )
    assert json.loads(result.text) == {"name": "Ada", "age": 36}


def test_execute_validates_and_reports_errors_to_the_model() -> None:
    tools = {"get_weather": Tool.coerce(get_weather)}
    ok = execute(
        ToolCall(
            id="c1",
            name="get_weather",
            arguments='{"location": {"city": "Paris"}, "unit": "fahrenheit"}',
        ),
        tools,
    )
    assert ok.role == "tool" and ok.tool_call_id == "c1"
    assert json.loads(ok.text) == {"city": "Paris", "unit": "fahrenheit", "days": 1, "temp": 21}
    bad = execute(
        ToolCall(id="c2", name="get_weather", arguments='{"location": {}, "unit": "kelvin"}'), tools
    )
    assert (
        bad.text.startswith("error: invalid arguments")
        and "location.city" in bad.text
        and "unit" in bad.text
    )
    unknown = execute(ToolCall(id="c3", name="nope", arguments="{}"), tools)
    assert "no tool named 'nope'" in unknown.text


def test_tool_exceptions_become_messages() -> None:
    def boom() -> str:
        raise RuntimeError("kaboom")

    msg = execute(ToolCall(id="x", name="boom", arguments="{}"), {"boom": Tool.coerce(boom)})
    assert msg.text == "error: RuntimeError: kaboom"


def test_varargs_are_rejected() -> None:
    def f(*args: int) -> None: ...

    with pytest.raises(InvalidInputError, match=r"\*args"):
        Tool.coerce(f)


def test_tools_are_sent_in_openai_shape(driver) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    fake = FakeBackend([Reply(tool_calls=[call])])  # the forced call is honoured
    driver.chat({"backend": fake}, "hi", tools=[get_weather], tool_choice="get_weather")
    params = fake.requests[0].params.given()
    assert params["tools"][0]["type"] == "function"
    assert params["tools"][0]["function"]["name"] == "get_weather"
    assert params["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def weather_script(request):  # a model that calls the tool once, then answers
    last = request.messages[-1]
    if last.role == "tool":
        data = json.loads(last.text)
        return Reply(f"It is {data['temp']} degrees in {data['city']}.")
    return Reply(
        tool_calls=[
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": {"city": "Paris"}}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": {"city": "Lyon"}}'},
            },
        ]
    )


def test_two_turn_tool_loop(driver) -> None:
    fake = FakeBackend([weather_script])
    if driver.is_async:
        response = asyncio.run(
            AsyncClient(backend=fake).run_tools("Weather in Paris?", [get_weather])
        )
    else:
        response = Client(backend=fake).run_tools("Weather in Paris?", [get_weather])
    assert response.text == "It is 21 degrees in Lyon."
    assert len(fake.requests) == 2
    second = fake.requests[1].messages
    assert [m.role for m in second] == ["user", "assistant", "tool", "tool"]
    assert [m.tool_call_id for m in second[2:]] == ["call_1", "call_2"]


def test_max_turns_bounds_the_loop() -> None:
    always = Reply(
        tool_calls=[
            {
                "id": "c",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": {"city": "X"}}'},
            }
        ]
    )
    fake = FakeBackend([always])
    response = Client(backend=fake).run_tools("loop forever", [get_weather], max_turns=3)
    assert len(fake.requests) == 3 and response.tool_calls


def test_async_loop_runs_parallel_calls_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def get_weather(location: Location) -> dict[str, object]:
        barrier.wait()  # only returns if both calls run at the same time
        return {"city": location.city, "temp": 21}

    fake = FakeBackend([weather_script])
    response = asyncio.run(AsyncClient(backend=fake).run_tools("q", [get_weather]))
    assert response.text.startswith("It is 21 degrees")


def test_streamed_tool_calls_accumulate(driver) -> None:
    reply = weather_script(type("R", (), {"messages": [type("M", (), {"role": "user"})()]})())
    fake = FakeBackend([reply, reply])
    chat = driver.chat({"backend": fake}, "q", tools=[get_weather])
    events, streamed = driver.stream({"backend": fake}, "q", tools=[get_weather])
    assert [e.type for e in events].count("tool_call") == 4  # two fragments per call
    assert streamed.tool_calls == chat.tool_calls
    assert [c.parsed_arguments["location"]["city"] for c in streamed.tool_calls] == [
        "Paris",
        "Lyon",
    ]


def test_a_forced_tool_call_answered_with_text_is_an_error_not_a_success() -> None:
    from llmkit import Client, OutputValidationError
    from llmkit.testing import FakeBackend, Reply

    weather = {"type": "function", "function": {"name": "weather", "parameters": {}}}
    client = Client(backend=FakeBackend(["It is sunny."]))
    for choice in ("required", "weather"):
        with pytest.raises(OutputValidationError, match="forces a tool call") as info:
            client.chat("weather?", tools=[weather], tool_choice=choice)
        assert info.value.raw_text == "It is sunny."
    assert client.usage.completion_tokens > 0  # the tokens were spent all the same
    # Auto may answer with text; a reply cut by max_tokens keeps finish_reason="length".
    assert client.chat("weather?", tools=[weather], tool_choice="auto").text == "It is sunny."
    cut = Client(backend=FakeBackend([Reply("It is", finish_reason="length")]))
    assert cut.chat("weather?", tools=[weather], tool_choice="required").finish_reason == "length"
