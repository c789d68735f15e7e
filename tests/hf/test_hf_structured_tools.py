"""Structured output and tool calling on the hf backend, through the real Client.

The tiny Llama has random weights, so it cannot *choose* good content; constrained decoding
(llguidance) is what makes its replies valid, and that is what these tests pin: a nested
pydantic model always round-trips, a forced tool call is always a valid call. The schemas
are bounded (enums, short strings, small integers) so that any valid reply fits in the
token budget. Without constrained decoding the same random model fails validation, which
exercises the re-ask path.
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hf_testkit import chat_request
from pydantic import BaseModel, Field

from llmkit import Hooks, InvalidInputError, OutputValidationError
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.backends.hf import structured as _hf_structured
from llmkit.backends.hf import tools as _hf_tools
from llmkit.tools import tool_from_function
from llmkit.types import ChatRequest, GenerationParams, Message, TextDelta, ToolCallDelta

pytest.importorskip("llguidance")


class Color(str, Enum):
    red = "red"
    green = "green"


class Dims(BaseModel):
    unit: Literal["cm", "in"]
    wide: bool


class Item(BaseModel):
    label: str = Field(max_length=6)
    color: Color
    count: int = Field(ge=0, le=9)
    dims: Dims


class Place(BaseModel):
    city: Literal["Paris", "Tokyo"]
    country: Literal["FR", "JP"]


CALLS: list[dict[str, Any]] = []


def get_weather(
    place: Place,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
    days: Annotated[int, Field(ge=1, le=7)] = 1,
) -> str:
    """Get the weather forecast for a place.

    Args:
        place: where to look
        unit: the temperature unit
        days: how many days ahead
    """
    CALLS.append({"place": place, "unit": unit, "days": days})
    return f"sunny in {place.city}"


def get_time(city: Literal["Paris", "Tokyo"]) -> str:
    """The local time in a city."""
    return "12:00"


@pytest.fixture
def hf(tiny_long_llama_dir: Path) -> dict[str, Any]:
    return {"model": f"hf:{tiny_long_llama_dir}", "device": "cpu"}


@pytest.fixture
def hf_tools(tiny_tools_llama_dir: Path) -> dict[str, Any]:
    return {"model": f"hf:{tiny_tools_llama_dir}", "device": "cpu"}


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


# ---------------------------------------------------------------------- structured output


def test_nested_model_round_trips(driver: Any, hf: dict[str, Any]) -> None:
    response = driver.chat(hf, "Describe a red box.", response_model=Item, max_tokens=120)
    assert isinstance(response.parsed, Item)
    assert isinstance(response.parsed.dims, Dims)
    assert Item.model_validate_json(response.text) == response.parsed


def test_streamed_structured_output_is_validated_at_the_end(
    driver: Any, hf: dict[str, Any]
) -> None:
    whole = driver.chat(hf, "Describe a red box.", response_model=Item, max_tokens=120)
    events, streamed = driver.stream(hf, "Describe a red box.", response_model=Item, max_tokens=120)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == whole.text
    assert streamed.parsed == whole.parsed


def test_the_schema_reaches_the_prompt_and_the_grammar(tiny_long_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_long_llama_dir), device="cpu")
    assert backend.capabilities.structured_output is True
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "Item", "schema": Item.model_json_schema()},
    }
    prompt = backend.prompt_text(chat_request("Describe a box.", response_format=fmt))
    # The format template (what small models follow best) is in the system turn.
    assert '"color": "red" | "green"' in prompt
    assert '"dims": {"unit": "cm" | "in", "wide": <boolean>}' in prompt
    assert prompt.index("<|im_start|>system") < prompt.index("Describe a box.")
    # A json_object format constrains to any JSON object.
    response = backend.chat(
        chat_request("Hi", response_format={"type": "json_object"}, max_tokens=60)
    )
    if response.finish_reason == "stop":
        assert isinstance(json.loads(response.text), dict)
    else:  # the budget ran out inside the object: still a valid prefix of one
        assert response.text.startswith("{")
    backend.close()


def test_bad_response_format_is_a_clear_error(tiny_long_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_long_llama_dir), device="cpu")
    with pytest.raises(InvalidInputError, match=r"json_schema\.schema"):
        backend.chat(chat_request(response_format={"type": "json_schema", "json_schema": {}}))
    with pytest.raises(InvalidInputError, match="not supported by the hf backend"):
        backend.chat(chat_request(response_format={"type": "yaml"}))
    backend.close()


def test_without_llguidance_invalid_output_is_reasked_then_raised(
    driver: Any, hf: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without constrained decoding the random model writes free text: the client asks in
    # the prompt, validates, re-asks twice with the errors, then gives up.
    monkeypatch.setattr(_hf_structured, "available", lambda: False)
    with pytest.raises(OutputValidationError) as caught:
        driver.chat(hf, "Describe a red box.", response_model=Item, max_tokens=12)
    assert caught.value.attempts == 3
    assert caught.value.raw_text and caught.value.errors


# ---------------------------------------------------------------------- tools


def test_tool_schema_is_rendered_by_a_native_template(tiny_tools_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_tools_llama_dir), device="cpu")
    tool = tool_from_function(get_weather)
    prompt = backend.prompt_text(chat_request(tools=[get_weather]))
    rendered = json.dumps(tool.to_openai())
    assert rendered in prompt  # the template's own tojson of the OpenAI-shaped tool
    parameters = tool.parameters
    assert parameters["properties"]["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert parameters["properties"]["unit"]["default"] == "celsius"
    assert parameters["properties"]["days"]["maximum"] == 7
    assert parameters["required"] == ["place"]
    place = parameters["properties"]["place"]
    assert place.get("$ref") or place.get("properties", {}).get("city")
    # tool_choice="none" offers no tools at all.
    assert "<tools>" not in backend.prompt_text(
        chat_request(tools=[get_weather], tool_choice="none")
    )
    backend.close()


def test_tools_without_template_support_use_the_hermes_convention(
    tiny_long_llama_dir: Path,
) -> None:
    backend = HuggingFaceBackend(str(tiny_long_llama_dir), device="cpu")
    history = [
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather in Paris?"),
        Message(
            role="assistant",
            tool_calls=[
                {"id": "call_1", "name": "get_weather", "arguments": '{"place": {"city": "Paris"}}'}
            ],
        ),
        Message(role="tool", tool_call_id="call_1", content="sunny"),
    ]
    prompt = backend.prompt_text(
        ChatRequest(model="tiny", messages=history, params=GenerationParams(tools=[get_weather]))
    )
    assert prompt.startswith("<|im_start|>system\nBe brief.\n\nYou can call functions")
    assert json.dumps(tool_from_function(get_weather).to_openai()["function"]) in prompt
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"place": {"city": "Paris"}}}' in prompt
    )
    assert "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>" in prompt
    backend.close()


def test_native_template_gets_tool_calls_and_results(tiny_tools_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_tools_llama_dir), device="cpu")
    history = [
        Message(role="user", content="Weather in Paris?"),
        Message(
            role="assistant",
            tool_calls=[{"id": "call_1", "name": "get_time", "arguments": '{"city": "Paris"}'}],
        ),
        Message(role="tool", tool_call_id="call_1", content="12:00"),
    ]
    prompt = backend.prompt_text(
        ChatRequest(model="tiny", messages=history, params=GenerationParams(tools=[get_time]))
    )
    assert '<tool_call>{"name": "get_time", "arguments": {"city": "Paris"}}</tool_call>' in prompt
    assert "<|im_start|>tool\n<tool_response>12:00</tool_response>" in prompt
    backend.close()


@pytest.mark.parametrize("fixture", ["hf", "hf_tools"])
def test_forced_tool_call_is_a_valid_call(
    driver: Any, fixture: str, request: pytest.FixtureRequest
) -> None:
    kwargs = request.getfixturevalue(fixture)
    response = driver.chat(
        kwargs, "Weather?", tools=[get_weather], tool_choice="required", max_tokens=120
    )
    assert response.finish_reason == "tool_calls"
    assert response.message.content is None
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    arguments = call.parsed_arguments
    Place.model_validate(arguments["place"])
    assert set(arguments) <= {"place", "unit", "days"}


def test_named_tool_choice_picks_that_tool(driver: Any, hf_tools: dict[str, Any]) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    response = driver.chat(
        hf_tools, "Time?", tools=[get_weather, get_time], tool_choice=choice, max_tokens=60
    )
    (call,) = response.tool_calls
    assert call.name == "get_time"
    assert call.parsed_arguments["city"] in ("Paris", "Tokyo")


def test_unknown_tool_choice_is_rejected_before_generating(hf_tools: dict[str, Any]) -> None:
    backend = HuggingFaceBackend(hf_tools["model"].removeprefix("hf:"), device="cpu")
    with pytest.raises(InvalidInputError, match="not among the tools given"):
        backend.chat(chat_request(tools=[get_weather], tool_choice="get_date"))
    backend.close()


@pytest.mark.parametrize("fixture", ["hf", "hf_tools"])
def test_two_turn_tool_loop_ends_with_an_answer(
    driver: Any, fixture: str, request: pytest.FixtureRequest
) -> None:
    requests: list[Any] = []
    kwargs = {**request.getfixturevalue(fixture), "hooks": Hooks(on_request=requests.append)}
    # The first turn must call (forced); run_tools then goes back to "auto", and the
    # random model answers in plain text, which ends the loop.
    response = driver.run_tools(
        kwargs, "Weather in Paris?", [get_weather], tool_choice="required", max_tokens=120
    )
    assert len(CALLS) == 1 and isinstance(CALLS[0]["place"], Place)
    assert not response.tool_calls and response.finish_reason in ("stop", "length")
    first, second = requests
    assert first.params.tool_choice == "required" and second.params.tool_choice == "auto"
    assistant, result = second.messages[-2:]
    assert assistant.tool_calls and result.role == "tool"
    assert result.content == f"sunny in {CALLS[0]['place'].city}"


@pytest.mark.parametrize("fixture", ["hf", "hf_tools"])
def test_streamed_tool_calls_equal_the_whole_reply(
    driver: Any, fixture: str, request: pytest.FixtureRequest
) -> None:
    kwargs = request.getfixturevalue(fixture)
    options: dict[str, Any] = {"tools": [get_weather], "tool_choice": "required", "max_tokens": 120}
    whole = driver.chat(kwargs, "Weather?", **options)
    events, streamed = driver.stream(kwargs, "Weather?", **options)
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert len(deltas) == 1 and deltas[0].name == "get_weather"
    assert streamed.finish_reason == whole.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in streamed.tool_calls] == [
        (c.name, c.arguments) for c in whole.tool_calls
    ]


def test_hf_declares_its_capabilities(
    tiny_long_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = HuggingFaceBackend(str(tiny_long_llama_dir))
    assert backend.capabilities.tools and backend.capabilities.structured_output
    monkeypatch.setattr(_hf_structured, "available", lambda: False)
    plain = HuggingFaceBackend(str(tiny_long_llama_dir))
    assert plain.capabilities == dataclasses.replace(backend.capabilities, structured_output=False)


# ---------------------------------------------------------------------- reply parsing

NAMES = ["get_weather", "get_time"]
REPLIES = {
    "hermes": (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"place": '
        '{"city": "Paris"}}}\n</tool_call>\n<tool_call>{"name": "get_time", "arguments": '
        '{"city": "Tokyo"}}</tool_call>',
        "Let me check.\n",
        [("get_weather", {"place": {"city": "Paris"}}), ("get_time", {"city": "Tokyo"})],
    ),
    "mistral": (
        '[TOOL_CALLS][{"name": "get_time", "arguments": {"city": "Paris"}}]',
        None,
        [("get_time", {"city": "Paris"})],
    ),
    "llama3": (
        '<|python_tag|>{"name": "get_time", "parameters": {"city": "Paris"}}',
        None,
        [("get_time", {"city": "Paris"})],
    ),
    "bare json": (
        '  {"name": "get_time", "arguments": {"city": "Paris"}}',
        None,
        [("get_time", {"city": "Paris"})],
    ),
    "json answer, not a call": ('{"name": "Alice", "age": 30}', '{"name": "Alice", "age": 30}', []),
    "plain text with a lookalike": ("a < b and <tool", "a < b and <tool", []),
    "broken call stays text": ("<tool_call>{not json", "<tool_call>{not json", []),
}


@pytest.mark.parametrize("name", list(REPLIES))
def test_reply_parsing_whole_and_split_at_every_position(name: str) -> None:
    text, content, expected = REPLIES[name]
    whole_content, calls = _hf_tools.split_reply(text, NAMES)
    assert whole_content == content
    assert [(c.name, c.parsed_arguments) for c in calls] == expected
    for cut in range(len(text) + 1):
        parser = _hf_tools.ToolCallParser(NAMES)
        streamed = parser.feed(text[:cut]) + parser.feed(text[cut:])
        rest, again = parser.finish()
        assert [(c.name, c.arguments) for c in again] == [(c.name, c.arguments) for c in calls]
        assert ((streamed + rest) or None) == (whole_content or None)
        # Nothing of a call is ever shown as text while streaming.
        assert "tool_call>" not in streamed or not calls


def test_batch_parses_tool_calls_like_chat(tiny_tools_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_tools_llama_dir), device="cpu")
    forced = chat_request("Weather?", tools=[get_weather], tool_choice="required", max_tokens=120)
    plain = chat_request("Hello", max_tokens=8)
    first, second = backend.batch([forced, plain])
    alone = backend.chat(forced)
    assert first.finish_reason == "tool_calls" == alone.finish_reason
    assert [(c.name, c.arguments) for c in first.tool_calls] == [
        (c.name, c.arguments) for c in alone.tool_calls
    ]
    assert not second.tool_calls and second.text == backend.chat(plain).text
    backend.close()
