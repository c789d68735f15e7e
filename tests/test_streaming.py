"""Property tests: however a reply is split into deltas, it accumulates to the same result."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit import Client
from llmkit.streaming import StreamAccumulator
from llmkit.testing import FakeBackend, Reply, fake_client
from llmkit.types import FinishEvent, TextDelta, ToolCall, ToolCallDelta, Usage, UsageEvent


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


tool_args = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.text(max_size=10)), max_size=4
)


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=200),
    text_cuts=st.lists(st.integers(min_value=0), max_size=30),
    calls=st.lists(tool_args, max_size=3),
    arg_cuts=st.lists(st.integers(min_value=0), max_size=10),
    interleave=st.randoms(use_true_random=False),
)
def test_random_splits_accumulate_to_the_same_response(
    text, text_cuts, calls, arg_cuts, interleave
) -> None:
    expected_calls = [
        ToolCall(id=f"call_{i}", name=f"tool_{i}", arguments=json.dumps(args))
        for i, args in enumerate(calls)
    ]
    # Per-call delta lists: the first brings id and name; argument fragments follow.
    per_call = []
    for index, call in enumerate(expected_calls):
        pieces = split(call.arguments, arg_cuts)
        deltas = [
            ToolCallDelta(
                index=index, id=call.id, name=call.name, arguments=pieces[0] if pieces else ""
            )
        ]
        deltas += [ToolCallDelta(index=index, arguments=p) for p in pieces[1:]]
        per_call.append(deltas)
    text_events = [TextDelta(delta=p) for p in split(text, text_cuts)]
    # Parallel calls interleave arbitrarily, but each call's own deltas keep their order.
    queues = [text_events, *per_call]
    events = []
    while any(queues):
        q = interleave.choice([q for q in queues if q])
        events.append(q.pop(0))
    usage = Usage(prompt_tokens=3, completion_tokens=4)
    events += [
        UsageEvent(usage=usage),
        FinishEvent(finish_reason="tool_calls" if calls else "stop", id="r1", model="m"),
    ]

    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    response = acc.response()
    assert response.text == text
    assert response.tool_calls == expected_calls
    assert response.usage == usage
    assert response.id == "r1" and response.model == "m"

    # And the same reply through the client: streamed == non-streamed.
    reply = Reply(text, tool_calls=expected_calls, chunks=split(text, text_cuts), usage=usage)
    client = fake_client([reply, reply])
    chat = client.chat("q")
    with client.stream("q") as stream:
        list(stream)
    assert stream.response.message == chat.message
    assert stream.response.usage == chat.usage
    assert stream.response.finish_reason == chat.finish_reason


def test_accumulator_estimates_usage_when_none_arrived() -> None:
    acc = StreamAccumulator()
    acc.add(TextDelta(delta="hello world"))
    response = acc.response(prompt_text="a question")
    assert response.usage.estimated and response.usage.completion_tokens == 3


def test_repeated_tool_name_is_not_doubled() -> None:
    acc = StreamAccumulator()
    acc.add(ToolCallDelta(index=0, id="c", name="f", arguments="{"))
    acc.add(ToolCallDelta(index=0, name="f", arguments="}"))
    assert acc.tool_calls() == [ToolCall(id="c", name="f", arguments="{}")]


def test_fake_backend_requests_are_recorded() -> None:
    fake = FakeBackend()
    client = Client(backend=fake)
    assert client.chat("echo this").text == "echo this"
    assert len(fake.requests) == 1
