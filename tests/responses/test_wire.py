"""The Responses wire mapping, I/O-free: request bodies, replies, and stream decoding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

import llmkit.errors as E
from llmkit.backends._responses_wire import (
    PROVIDER_KEY,
    ResponsesEventDecoder,
    ResponsesSSE,
    parse_response,
    responses_body,
)
from llmkit.streaming import StreamAccumulator
from llmkit.types import ChatRequest, GenerationParams, Message, ToolCall, normalize_messages

from .kit import (
    call_item,
    failed_event,
    message_item,
    reasoning_item,
    response_obj,
    sse,
    stream_events,
)

OUTPUTS = {
    "text": [message_item("Hello there, friend!")],
    "reasoning": [reasoning_item(["First I think.", "Then I answer."]), message_item("42.")],
    "tools": [
        reasoning_item(["Need weather."], encrypted="gAAAA-enc"),
        call_item("get_weather", '{"city": "Paris"}'),
        call_item("get_time", '{"tz": "CET"}', call_id="call_2", id="fc_2"),
    ],
}


def request(
    messages: Any = "Hi", *, model: str = "gpt-5", extra: Any = None, **params: Any
) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=normalize_messages(messages),
        params=GenerationParams(**params),
        extra=extra or {},
    )


# ------------------------------------------------------------------ the kit is OpenAI-shaped


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_kit_payloads_parse_with_the_sdk_types(name: str) -> None:
    Response.model_validate(response_obj(OUTPUTS[name]))
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in stream_events(OUTPUTS[name]):
        adapter.validate_python(event)


# ------------------------------------------------------------------ request bodies


def test_body_maps_history_tools_and_options() -> None:
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        Message.assistant(
            tool_calls=[ToolCall(id="call_9", name="get_weather", arguments='{"city":"Paris"}')]
        ),
        Message.tool('{"temp": 21}', tool_call_id="call_9"),
        Message.assistant("It is 21C."),
        {"role": "user", "content": "Thanks"},
    ]
    tool = {
        "type": "function",
        "function": {"name": "get_weather", "parameters": {"type": "object"}},
    }
    body = responses_body(
        request(
            history,
            tools=[tool],
            tool_choice="get_weather",
            max_tokens=64,
            temperature=0.2,
            reasoning_effort="low",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "W", "schema": {"type": "object"}, "strict": True},
            },
        ),
        model="gpt-5",
    )
    assert body["instructions"] == "Be brief."
    assert body["input"] == [
        {"type": "message", "role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_9",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_9", "output": '{"temp": 21}'},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "It is 21C.", "annotations": []}],
        },
        {"type": "message", "role": "user", "content": "Thanks"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "parameters": {"type": "object"},
            "strict": False,
        }
    ]
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert body["max_output_tokens"] == 64
    assert "max_tokens" not in body and "messages" not in body
    assert body["temperature"] == 0.2
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}, "strict": True}
    }
    assert "include" not in body  # stored by default: no encrypted reasoning asked for


def test_image_parts_become_input_parts() -> None:
    msg = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What?"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        ],
    }
    body = responses_body(request([msg]), model="m")
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": "What?"},
        {"type": "input_image", "image_url": "https://x/cat.png", "detail": "auto"},
    ]


@pytest.mark.parametrize("option", [{"stop": ["\n"]}, {"seed": 1}])
def test_chat_only_options_are_refused_before_sending(option: dict[str, Any]) -> None:
    with pytest.raises(E.UnsupportedFeatureError, match="Responses API has no"):
        responses_body(request(**option), model="m")


def test_max_output_tokens_floor() -> None:
    with pytest.raises(E.InvalidInputError, match="minimum of 16"):
        responses_body(request(max_tokens=8), model="m", min_output_tokens=16)
    assert responses_body(request(max_tokens=8), model="m")["max_output_tokens"] == 8


def test_extra_passes_through_and_store_false_asks_for_encrypted_reasoning() -> None:
    body = responses_body(
        request(extra={"store": False, "previous_response_id": "resp_1"}), model="gpt-5"
    )
    assert body["store"] is False and body["previous_response_id"] == "resp_1"
    assert body["include"] == ["reasoning.encrypted_content"]
    # A non-reasoning model rejects that include; only an explicit effort asks for it there.
    assert "include" not in responses_body(request(extra={"store": False}), model="gpt-4o")
    with_effort = responses_body(
        request(extra={"store": False}, reasoning_effort="low"), model="gpt-4o"
    )
    assert with_effort["include"] == ["reasoning.encrypted_content"]
    # The caller's own include is kept, not duplicated.
    mine = responses_body(
        request(extra={"store": False, "include": ["reasoning.encrypted_content", "x"]}),
        model="o4-mini",
    )
    assert mine["include"] == ["reasoning.encrypted_content", "x"]


def test_encrypted_reasoning_goes_back_before_the_item_it_produced() -> None:
    first = parse_response(response_obj(OUTPUTS["tools"]), backend="openai:gpt-5")
    assert first.message.provider_data == {
        PROVIDER_KEY: {
            "reasoning_items": [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Need weather."}],
                    "encrypted_content": "gAAAA-enc",
                }
            ]
        }
    }
    history = [
        Message.user("Weather and time?"),
        first.message,
        Message.tool("21C", tool_call_id="call_1"),
        Message.tool("10:00", tool_call_id="call_2"),
    ]
    items = responses_body(request(history), model="gpt-5")["input"]
    assert [i["type"] for i in items] == [
        "message",
        "reasoning",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
    ]
    assert items[1]["encrypted_content"] == "gAAAA-enc"
    assert items[2]["call_id"] == "call_1" and "id" not in items[2]  # never the fc_ item id


def test_reasoning_without_encrypted_content_is_not_sent_back() -> None:
    plain = parse_response(response_obj(OUTPUTS["reasoning"]), backend="b")
    assert plain.message.provider_data is None
    items = responses_body(
        request([Message.user("q"), plain.message, Message.user("more")]), model="m"
    )["input"]
    assert [i["type"] for i in items] == ["message", "message", "message"]


# ------------------------------------------------------------------ replies


def test_parse_text_reasoning_and_usage() -> None:
    r = parse_response(
        response_obj(OUTPUTS["reasoning"], usage=(12, 40, 30)), backend="openai:gpt-5"
    )
    assert r.text == "42."
    assert r.reasoning == "First I think.\n\nThen I answer."
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.reasoning_tokens) == (
        12,
        40,
        30,
    )
    assert (r.id, r.model, r.finish_reason) == ("resp_abc", "gpt-5-2025-08-07", "stop")


def test_parse_tool_calls_and_finish_reasons() -> None:
    r = parse_response(response_obj(OUTPUTS["tools"]), backend="b")
    assert [(c.id, c.name, c.parsed_arguments) for c in r.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"}),
        ("call_2", "get_time", {"tz": "CET"}),
    ]
    assert r.finish_reason == "tool_calls" and r.message.content is None
    cut = parse_response(
        response_obj(OUTPUTS["text"], status="incomplete", incomplete="max_output_tokens"),
        backend="b",
    )
    assert cut.finish_reason == "length"


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("rate_limit_exceeded", E.RateLimitError),
        ("server_error", E.ServerError),
        ("invalid_prompt", E.BadRequestError),
    ],
)
def test_failed_response_is_a_typed_error(code: str, error: type[Exception]) -> None:
    failed = response_obj([], status="failed", error={"code": code, "message": "nope"})
    with pytest.raises(error, match="nope"):
        parse_response(failed, backend="b")


def test_malformed_reply_is_a_protocol_error() -> None:
    with pytest.raises(E.ProtocolError):
        parse_response({"id": "resp_1", "object": "response", "output": "oops"}, backend="b")
    with pytest.raises(E.ProtocolError):
        parse_response(
            {"id": "resp_1", "object": "response", "output": [{"type": "function_call"}]},
            backend="b",
        )


# ------------------------------------------------------------------ streams


def decode(data: bytes, pieces: list[int] | None = None) -> list[Any]:
    stream = ResponsesSSE(backend="b")
    cuts = sorted(set(pieces or []))
    events: list[Any] = []
    start = 0
    for cut in [*cuts, len(data)]:
        events.extend(stream.feed(data[start:cut]))
        start = cut
    events.extend(stream.flush())
    assert stream.done
    return events + stream.decoder.finish()


def accumulate(events: list[Any]) -> Any:
    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    return acc.response()


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_a_stream_accumulates_to_the_non_streamed_reply(name: str) -> None:
    whole = parse_response(response_obj(OUTPUTS[name]), backend="b")
    streamed = accumulate(decode(sse(stream_events(OUTPUTS[name]))))
    assert streamed.message == whole.message
    assert (streamed.finish_reason, streamed.id, streamed.usage) == (
        whole.finish_reason,
        whole.id,
        whole.usage,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_any_split_of_the_bytes_decodes_the_same(cuts: list[int]) -> None:
    data = sse(stream_events(OUTPUTS["tools"]))
    expected = decode(data)
    assert decode(data, [c % len(data) for c in cuts]) == expected


def test_unknown_events_are_ignored_and_the_cut_reply_has_no_finish() -> None:
    events = stream_events(OUTPUTS["text"])
    events.insert(3, {"type": "response.brand_new_thing", "sequence_number": 99, "x": 1})
    assert accumulate(decode(sse(events))).text == "Hello there, friend!"
    partial = ResponsesSSE(backend="b")
    partial.feed(sse(stream_events(OUTPUTS["text"], terminal=False)))
    assert not partial.done


def test_incomplete_stream_ends_with_length() -> None:
    events = stream_events(OUTPUTS["text"], status="incomplete", incomplete="max_output_tokens")
    assert accumulate(decode(sse(events))).finish_reason == "length"


def test_error_events_raise_after_the_events_before_them() -> None:
    events = stream_events(OUTPUTS["text"], terminal=False)
    data = sse(events) + sse([failed_event("rate_limit_exceeded", "slow down", seq=len(events))])
    stream = ResponsesSSE(backend="b")
    delivered = stream.feed(data)
    assert "".join(e.text for e in delivered) == "Hello there, friend!"
    with pytest.raises(E.RateLimitError, match="slow down"):
        stream.flush()
    decoder = ResponsesEventDecoder(backend="b")
    with pytest.raises(E.ServerError, match="boom"):
        decoder.feed(
            {
                "type": "error",
                "code": "server_error",
                "message": "boom",
                "param": None,
                "sequence_number": 3,
            }
        )


def test_malformed_event_is_a_protocol_error() -> None:
    with pytest.raises(E.ProtocolError, match="malformed JSON"):
        ResponsesSSE(backend="b").feed(b"event: response.output_text.delta\ndata: {nope\n\n")


def test_flat_responses_tools_are_accepted_as_llmkit_tools() -> None:
    from llmkit.types import Tool

    tool = Tool.coerce({"type": "function", "name": "f", "parameters": {"type": "object"}})
    assert (tool.name, tool.parameters) == ("f", {"type": "object"})


def test_one_user_text_is_sent_as_a_plain_string() -> None:
    assert responses_body(request("Hi"), model="m")["input"] == "Hi"
    with_system = responses_body(request([Message.system("S"), Message.user("Hi")]), model="m")
    assert (with_system["instructions"], with_system["input"]) == ("S", "Hi")
    parts = responses_body(
        request([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]), model="m"
    )
    assert parts["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    ]
    developer = responses_body(request([{"role": "developer", "content": "D"}]), model="m")
    assert developer["input"] == [{"type": "message", "role": "developer", "content": "D"}]
