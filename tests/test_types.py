from __future__ import annotations

import pytest

from llmkit import InvalidInputError, Message, ToolCall
from llmkit.streaming import events_to_openai_chunks
from llmkit.types import (
    ChatResponse,
    FinishEvent,
    GenerationParams,
    TextDelta,
    Tool,
    ToolCallDelta,
    Usage,
    UsageEvent,
    normalize_messages,
)


def test_str_becomes_one_user_message() -> None:
    assert normalize_messages("Hello") == [Message(role="user", content="Hello")]


def test_message_dict_and_list_shapes() -> None:
    msgs = normalize_messages(
        [
            {"role": "system", "content": "Be brief."},
            "Hi",
            Message.assistant("Hello!"),
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                ],
            },
        ]
    )
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[3].text == "look"
    assert normalize_messages(({"role": "user", "content": "t"},))[0].text == "t"


def test_openai_tool_call_shapes_round_trip() -> None:
    data = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "add", "arguments": '{"a": 1}'},
            }
        ],
    }
    msg = normalize_messages(data)[0]
    assert msg.tool_calls == [ToolCall(id="call_1", name="add", arguments='{"a": 1}')]
    assert msg.tool_calls[0].parsed_arguments == {"a": 1}
    assert msg.to_openai() == data
    tool_reply = normalize_messages({"role": "tool", "tool_call_id": "call_1", "content": "2"})[0]
    assert tool_reply.to_openai() == {"role": "tool", "content": "2", "tool_call_id": "call_1"}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (42, "cannot use int 42 as chat input"),
        (None, "cannot use NoneType"),
        ([], "no messages given"),
        ([{"role": "wizard", "content": "x"}], "position 0"),
        ({"role": "user"}, "needs 'content'"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "user", "content": "x", "colour": "red"}, "colour"),
        (["ok", 3.5], "position 1"),
        (
            {
                "role": "user",
                "content": "x",
                "tool_calls": [{"id": "1", "function": {"name": "f"}}],
            },
            "only 'assistant'",
        ),
    ],
)
def test_bad_shapes_are_rejected_clearly(value: object, fragment: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        normalize_messages(value)
    assert fragment in str(info.value)


def test_bad_tool_arguments_are_a_protocol_error() -> None:
    from llmkit import ProtocolError

    with pytest.raises(ProtocolError, match="not JSON"):
        _ = ToolCall(id="1", name="f", arguments="{oops").parsed_arguments


def test_chat_response_openai_round_trip() -> None:
    data = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
    }
    response = ChatResponse.from_openai(data, backend="openai")
    assert response.text == "Paris."
    assert response.usage == Usage(prompt_tokens=7, completion_tokens=2, total_tokens=9)
    assert response.to_openai() == data
    assert response.raw == data
    assert "raw" not in repr(response)


def test_from_openai_tolerates_missing_usage_and_extra_fields() -> None:
    response = ChatResponse.from_openai(
        {"choices": [{"message": {"content": "x", "refusal": None, "reasoning_content": "hm"}}]}
    )
    assert response.text == "x"
    assert response.usage.estimated
    assert response.id.startswith("chatcmpl-")


def test_events_to_openai_chunks() -> None:
    events = [
        TextDelta(delta="Hel"),
        TextDelta(delta="lo"),
        ToolCallDelta(index=0, id="c1", name="f", arguments='{"a"'),
        ToolCallDelta(index=0, arguments=": 1}"),
        UsageEvent(usage=Usage(prompt_tokens=1, completion_tokens=2)),
        FinishEvent(finish_reason="tool_calls"),
    ]
    chunks = events_to_openai_chunks(events, id="x", model="m", created=1)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert chunks[2]["choices"][0]["delta"]["tool_calls"][0] == {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a"'},
    }
    assert chunks[4]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 3
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "x" for c in chunks)


def test_event_text_is_empty_for_non_text_events() -> None:
    assert TextDelta(delta="a").text == "a"
    assert ToolCallDelta(index=0).text == ""
    assert FinishEvent().text == ""
    assert UsageEvent(usage=Usage()).text == ""


def test_generation_params_track_what_was_given() -> None:
    params = GenerationParams(temperature=0, stop="END", tool_choice="lookup")
    assert params.given() == {
        "temperature": 0,
        "stop": ["END"],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
    }


def test_tool_coercion() -> None:
    tool = Tool.coerce(
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    )
    assert tool.to_openai() == {
        "type": "function",
        "function": {"name": "add", "parameters": {"type": "object"}},
    }
    with pytest.raises(InvalidInputError):
        Tool.coerce(3)
    with pytest.raises(InvalidInputError):
        Tool.coerce({"name": "has spaces"})
