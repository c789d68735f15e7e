"""A forced tool call cut short by ``max_tokens`` (issue 15, item 1).

Seen from LangChain's ``bind_tools(..., tool_choice="required")`` against ``llmkit serve
hf:smollm2`` with ``max_tokens=20``: the half-written call came back as raw ``<tool_call>``
template markup in ``content``. A truncated call must end with ``finish_reason="length"``,
no tool calls and no markup, streamed or not, for both call formats the backend forces (the
Hermes block for templates without tool support, the bare JSON object for native ones).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from llmkit.backends.hf.tools import ToolCallParser, split_reply
from llmkit.types import TextDelta, ToolCallDelta

pytest.importorskip("llguidance")


def get_weather(city: Literal["Paris", "Tokyo"], unit: Literal["celsius", "fahrenheit"]) -> str:
    """Get the weather forecast for a city."""
    return "sunny"


@pytest.fixture(params=["hermes", "native"])
def model_kwargs(
    request: pytest.FixtureRequest, tiny_long_llama_dir: Path, tiny_tools_llama_dir: Path
) -> dict[str, Any]:
    folder = tiny_long_llama_dir if request.param == "hermes" else tiny_tools_llama_dir
    return {"model": f"hf:{folder}", "device": "cpu"}


# The grammar forces the call from the first token, so a short budget ends inside it: the
# tiny tokenizer writes about one character a token, so 3 tokens end inside the marker
# ('<to') and 15 inside the JSON ('<tool_call>\n{"na').
OPTIONS: dict[str, Any] = {"tools": [get_weather], "tool_choice": "required"}


@pytest.fixture(params=[3, 15])
def cut(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**OPTIONS, "max_tokens": request.param}


def _assert_clean(text: str | None) -> None:
    # The reply to a forced call can only be the call: cut short, nothing of it is an answer.
    assert not text, text


def test_a_truncated_forced_call_ends_with_length_and_no_markup(
    driver: Any, model_kwargs: dict[str, Any], cut: dict[str, Any]
) -> None:
    response = driver.chat(model_kwargs, "Weather?", **cut)
    assert response.finish_reason == "length"
    assert response.tool_calls == []
    _assert_clean(response.message.content)


def test_a_truncated_forced_call_streams_no_markup(
    driver: Any, model_kwargs: dict[str, Any], cut: dict[str, Any]
) -> None:
    events, response = driver.stream(model_kwargs, "Weather?", **cut)
    assert not [e for e in events if isinstance(e, ToolCallDelta)]
    _assert_clean("".join(e.delta for e in events if isinstance(e, TextDelta)))
    assert response.finish_reason == "length"
    assert response.tool_calls == []
    _assert_clean(response.message.content)


def test_a_whole_forced_call_still_parses(driver: Any, model_kwargs: dict[str, Any]) -> None:
    # The fix must not drop calls that did fit: same request with room to finish.
    response = driver.chat(model_kwargs, "Weather?", **{**OPTIONS, "max_tokens": 120})
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.name == "get_weather"


@pytest.mark.parametrize(
    "text", ["<to", '<tool_call>\n{"na', '{"name": "get_wea', '[TOOL_CALLS][{"name"']
)
def test_the_parser_drops_a_cut_forced_call_at_every_split(text: str) -> None:
    # Unforced, a broken call stays text (it may be all the model said); forced, never.
    assert split_reply(text, ["get_weather"]) == (text, [])
    assert split_reply(text, ["get_weather"], forced=True) == ("", [])
    for cut in range(len(text) + 1):
        parser = ToolCallParser(["get_weather"], forced=True)
        streamed = parser.feed(text[:cut]) + parser.feed(text[cut:])
        assert (streamed, parser.finish()) == ("", ("", []))
