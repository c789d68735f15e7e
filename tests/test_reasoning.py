"""Reasoning through the client: types, streams, ``reasoning_effort=``, the fake backend,
``run_tools`` and telemetry (the wire formats have their own tests per backend)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmkit import (
    AsyncClient,
    Client,
    InvalidInputError,
    Message,
    ToolCall,
    UnsupportedFeatureError,
    Usage,
)
from llmkit.streaming import StreamAccumulator, to_openai_chunk
from llmkit.testing import FakeBackend, Reply
from llmkit.types import ChatResponse, ReasoningDelta, TextDelta, UsageEvent

USAGE = Usage(prompt_tokens=5, completion_tokens=12, reasoning_tokens=8)
THOUGHT = "97 is odd; not divisible by 3, 5 or 7; so it is prime."


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def chat(fake: FakeBackend, mode: str, *args: Any, **kwargs: Any) -> ChatResponse:
    if mode == "sync":
        with Client(backend=fake) as client:
            return client.chat(*args, **kwargs)
    async with AsyncClient(backend=fake) as aclient:
        return await aclient.chat(*args, **kwargs)


async def stream(
    fake: FakeBackend, mode: str, *args: Any, **kwargs: Any
) -> tuple[list[Any], ChatResponse]:
    if mode == "sync":
        with Client(backend=fake) as client, client.stream(*args, **kwargs) as s:
            return list(s), s.response
    async with AsyncClient(backend=fake) as aclient:
        async with aclient.stream(*args, **kwargs) as a:
            events = [e async for e in a]
        return events, a.response


# -- types --------------------------------------------------------------------------------


def test_reasoning_delta_has_no_text() -> None:
    event = ReasoningDelta(reasoning="thinking...")
    assert event.text == ""
    assert event.type == "reasoning"


def test_message_reads_reasoning_content_and_keeps_state_out_of_repr() -> None:
    message = Message.model_validate(
        {"role": "assistant", "content": "Yes.", "reasoning_content": THOUGHT}
    )
    assert message.reasoning == THOUGHT
    assert message.to_openai() == {"role": "assistant", "content": "Yes."}
    assert message.to_openai(reasoning_field="reasoning_content")["reasoning_content"] == THOUGHT
    big = Message(role="assistant", content="ok", provider_data={"openai": {"blob": "x" * 5000}})
    assert "xxxx" not in repr(big)
    with pytest.raises(ValueError, match="only 'assistant'"):
        Message(role="user", content="hi", reasoning="no")


def test_usage_reasoning_tokens() -> None:
    parsed = Usage.from_openai(
        {
            "prompt_tokens": 5,
            "completion_tokens": 12,
            "total_tokens": 17,
            "completion_tokens_details": {"reasoning_tokens": 8},
        }
    )
    assert parsed == USAGE
    assert USAGE.to_openai()["completion_tokens_details"] == {"reasoning_tokens": 8}
    assert (USAGE + Usage(prompt_tokens=1)).reasoning_tokens == 8
    assert (Usage(prompt_tokens=1) + Usage(prompt_tokens=1)).reasoning_tokens is None
    # Unknown reasoning counts leave the dump as it always was.
    assert "reasoning_tokens" not in Usage(prompt_tokens=1).model_dump()


def test_accumulated_stream_equals_the_whole_reply() -> None:
    reply = Reply("It is prime.", reasoning=THOUGHT, usage=USAGE)
    accumulator = StreamAccumulator(model="m", backend="fake:m")
    for event in reply.events("m"):
        accumulator.add(event)
    streamed, whole = accumulator.response(), reply.response("m", "fake:m")
    assert streamed.reasoning == whole.reasoning == THOUGHT
    assert streamed.message == whole.message
    assert streamed.usage == whole.usage == USAGE


def test_openai_chunk_and_reply_carry_reasoning_content() -> None:
    chunk = to_openai_chunk(ReasoningDelta(reasoning="hmm"), id="c", model="m", created=1)
    assert chunk["choices"][0]["delta"] == {"reasoning_content": "hmm"}
    usage_chunk = to_openai_chunk(UsageEvent(usage=USAGE), id="c", model="m", created=1)
    assert usage_chunk["usage"]["completion_tokens_details"] == {"reasoning_tokens": 8}
    body = Reply("Yes.", reasoning=THOUGHT, usage=USAGE).response("m", "fake:m").to_openai()
    assert body["choices"][0]["message"]["reasoning_content"] == THOUGHT
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 8}


# -- through the client -------------------------------------------------------------------


async def test_chat_and_stream_expose_reasoning(mode: str) -> None:
    fake = FakeBackend([Reply("It is prime.", reasoning=THOUGHT, usage=USAGE)])
    response = await chat(fake, mode, "Is 97 prime?", reasoning_effort="low")
    assert (response.reasoning, response.text) == (THOUGHT, "It is prime.")
    assert response.message.reasoning == THOUGHT
    assert response.usage.reasoning_tokens == 8
    assert fake.requests[0].params.reasoning_effort == "low"

    events, final = await stream(fake, mode, "Is 97 prime?", reasoning_effort="high")
    assert "".join(e.text for e in events) == "It is prime."  # print(ev.text) shows no reasoning
    assert "".join(e.reasoning for e in events if e.type == "reasoning") == THOUGHT
    assert final.reasoning == THOUGHT and final.usage.reasoning_tokens == 8
    assert fake.requests[1].params.reasoning_effort == "high"


async def test_an_invalid_effort_is_refused_before_sending(mode: str) -> None:
    fake = FakeBackend(["never"])
    with pytest.raises(InvalidInputError, match="reasoning_effort"):
        await chat(fake, mode, "hi", reasoning_effort="extreme")
    with pytest.raises(InvalidInputError, match="reasoning_effort"):
        Client(backend=fake, reasoning_effort="max")
    assert fake.requests == []


async def test_fake_backend_refuses_an_unsupported_effort_before_answering(mode: str) -> None:
    fake = FakeBackend(["ok"], reasoning_efforts=["low", "high"])
    with pytest.raises(UnsupportedFeatureError, match="'medium'"):
        await chat(fake, mode, "hi", reasoning_effort="medium")
    assert fake.requests == []
    assert (await chat(fake, mode, "hi", reasoning_effort="low")).text == "ok"


def test_constructor_default_effort() -> None:
    fake = FakeBackend(["ok"])
    with Client(backend=fake, reasoning_effort="minimal") as client:
        client.chat("hi")
    assert fake.requests[0].params.reasoning_effort == "minimal"


def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


async def test_run_tools_keeps_reasoning_across_the_loop(mode: str) -> None:
    call = ToolCall(id="call_1", name="weather", arguments=json.dumps({"city": "Paris"}))
    fake = FakeBackend(
        [
            Reply(tool_calls=[call], reasoning="I should look the weather up."),
            Reply("It is sunny.", reasoning="The tool said sunny."),
        ]
    )
    if mode == "sync":
        with Client(backend=fake) as client:
            final = client.run_tools("Weather in Paris?", [weather])
    else:
        async with AsyncClient(backend=fake) as aclient:
            final = await aclient.run_tools("Weather in Paris?", [weather])
    assert (final.text, final.reasoning) == ("It is sunny.", "The tool said sunny.")
    second = fake.requests[1].messages  # type: ignore[union-attr]
    assert [m.role for m in second] == ["user", "assistant", "tool"]
    assert second[1].reasoning == "I should look the weather up."
    assert second[1].tool_calls == [call]


# -- telemetry ----------------------------------------------------------------------------


def test_span_records_reasoning_tokens_never_the_text() -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fake = FakeBackend([Reply("Prime.", reasoning=THOUGHT, usage=USAGE)])
    with Client(backend=fake, tracer_provider=provider) as client:
        client.chat("Is 97 prime?", reasoning_effort="low")
        with client.stream("Is 97 prime?") as s:
            assert [e for e in s if isinstance(e, TextDelta)]
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes["gen_ai.usage.reasoning.output_tokens"] == 8
        assert THOUGHT not in repr(attributes) and "divisible" not in repr(span.events)
    assert dict(spans[0].attributes or {})["llmkit.request.reasoning_effort"] == "low"
    provider.shutdown()
