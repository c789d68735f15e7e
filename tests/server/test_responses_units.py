"""The Responses event writer of ``llmkit serve``, I/O-free: every event it writes parses
with the SDK's own types, in a well-formed sequence."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from llmkit.backends._responses_wire import ResponsesSSE
from llmkit.server._responses_shapes import EventWriter, ResponsesRequestBody
from llmkit.streaming import StreamAccumulator
from llmkit.types import ChatResponse, Message, ReasoningDelta, TextDelta, ToolCall, ToolCallDelta

ADAPTER: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def events_of(data: bytes) -> list[Any]:
    out = []
    for block in data.decode().split("\n\n"):
        if block:
            kind, payload = block.split("\n", 1)
            event = ADAPTER.validate_python(json.loads(payload.removeprefix("data: ")))
            assert kind == f"event: {event.type}"
            out.append(event)
    return out


def write(events: list[Any], response: ChatResponse) -> list[Any]:
    writer = EventWriter(
        ResponsesRequestBody(model="m", input="x"), id="resp_1", model="m", created=1
    )
    data = writer.start() + b"".join(writer.feed(e) for e in events)
    return events_of(data + writer.finish(response)[0])


def test_parallel_tool_call_fragments_may_interleave() -> None:
    calls = [
        ToolCall(id="call_a", name="f", arguments='{"x": 1}'),
        ToolCall(id="call_b", name="g", arguments='{"y": 2}'),
    ]
    deltas = [
        ToolCallDelta(index=0, id="call_a", name="f"),
        ToolCallDelta(index=1, id="call_b", name="g"),
        ToolCallDelta(index=0, arguments='{"x": '),
        ToolCallDelta(index=1, arguments='{"y": 2}'),
        ToolCallDelta(index=0, arguments="1}"),
    ]
    events = write(
        deltas,
        ChatResponse(message=Message.assistant(tool_calls=calls), finish_reason="tool_calls"),
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    args: dict[int, str] = {}
    for e in events:
        if e.type == "response.function_call_arguments.delta":
            args[e.output_index] = args.get(e.output_index, "") + e.delta
    assert args == {0: '{"x": 1}', 1: '{"y": 2}'}
    final = events[-1].response
    assert [(o.call_id, o.arguments) for o in final.output] == [
        ("call_a", '{"x": 1}'),
        ("call_b", '{"y": 2}'),
    ]
    assert [e.type for e in events].count("response.output_item.done") == 2


def test_reasoning_then_text_items_in_order() -> None:
    events = write(
        [
            ReasoningDelta(reasoning="think "),
            ReasoningDelta(reasoning="hard"),
            TextDelta(delta="Hi"),
        ],
        ChatResponse(message=Message.assistant("Hi", reasoning="think hard")),
    )
    final = events[-1]
    assert final.type == "response.completed"
    assert [o.type for o in final.response.output] == ["reasoning", "message"]
    assert final.response.output[0].content[0].text == "think hard"
    assert final.response.output_text == "Hi"


def test_an_empty_reply_still_has_its_message() -> None:
    events = write([], ChatResponse(message=Message.assistant("")))
    assert [o.type for o in events[-1].response.output] == ["message"]


# What the server writes, llmkit's client reads back as the same reply (any mix of deltas).
_piece = st.text(alphabet='ab \n{}"é', min_size=1, max_size=5)
_event = st.one_of(
    st.builds(TextDelta, delta=_piece),
    st.builds(ReasoningDelta, reasoning=_piece),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, max_size=12), st.lists(st.lists(_piece, max_size=3), max_size=3))
def test_the_client_decodes_what_the_server_writes(
    content: list[Any], calls: list[list[str]]
) -> None:
    events: list[Any] = list(content)
    for index, parts in enumerate(calls):
        events.append(ToolCallDelta(index=index, id=f"call_{index}", name=f"f{index}"))
        events += [ToolCallDelta(index=index, arguments=p) for p in parts]
    original = StreamAccumulator()
    for event in events:
        original.add(event)
    expected = original.response()
    writer = EventWriter(
        ResponsesRequestBody(model="m", input="x"), id="resp_1", model="m", created=1
    )
    data = writer.start() + b"".join(writer.feed(e) for e in events) + writer.finish(expected)[0]
    stream = ResponsesSSE(backend="b")
    decoded = StreamAccumulator()
    for event in stream.feed(data) + stream.flush() + stream.decoder.finish():
        decoded.add(event)
    got = decoded.response()
    assert (got.text, got.reasoning) == (expected.text, expected.reasoning)
    assert [(c.id, c.name, c.arguments) for c in got.tool_calls] == [
        (c.id, c.name, c.arguments) for c in expected.tool_calls
    ]
    assert got.id == "resp_1"
