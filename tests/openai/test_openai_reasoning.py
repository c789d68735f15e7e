"""Reasoning over the official SDK (respx at the transport): reasoning fields of the replies
of DeepSeek / vLLM / OpenRouter, ``completion_tokens_details``, ``reasoning_effort`` and the
round trip of an assistant message, in sync and async mode."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from openai_testkit import (
    BASE,
    KEY,
    call,
    chat_request,
    chunk,
    collect,
    completion_body,
    completion_request,
    sent_json,
    sse,
    sse_response,
)

from llmkit import Client, InvalidInputError, Message, ToolCall, UnsupportedFeatureError
from llmkit.backends.openai import OpenAIBackend
from llmkit.streaming import StreamAccumulator
from llmkit.types import ChatRequest, GenerationParams

THOUGHT = "The user greets me. I greet back."
DETAILS = {"completion_tokens_details": {"reasoning_tokens": 7}}


def reasoning_body(field: str = "reasoning_content", **message: Any) -> dict[str, Any]:
    body = completion_body("Hello!", usage=(9, 10))
    body["choices"][0]["message"].update({field: THOUGHT, **message})
    body["usage"].update(DETAILS)
    return body


def accumulate(events: list[Any]) -> Any:
    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    return acc.response()


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reply_with_a_reasoning_field(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str, field: str
) -> None:
    """DeepSeek / vLLM / llama.cpp send ``reasoning_content``; OpenRouter, Groq and newer
    vLLM ``reasoning``."""
    mock.post("/chat/completions").respond(json=reasoning_body(field))
    response = await call(backend, mode, chat_request())
    assert (response.reasoning, response.text) == (THOUGHT, "Hello!")
    assert response.usage.reasoning_tokens == 7
    assert response.message.provider_data == {"openai": {"reasoning_field": field}}


async def test_stream_with_reasoning_content(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    chunks = [chunk({"role": "assistant", "content": None, "reasoning_content": ""})]
    chunks += [chunk({"reasoning_content": w, "content": None}) for w in THOUGHT.split(" ")[:1]]
    chunks += [chunk({"reasoning_content": " " + w}) for w in THOUGHT.split(" ")[1:]]
    chunks += [chunk({"content": "Hel"}), chunk({"content": "lo!"})]
    chunks.append(chunk({}, finish_reason="stop"))
    usage_chunk = chunk(None, usage=(9, 10))
    usage_chunk["usage"].update(DETAILS)
    chunks.append(usage_chunk)
    mock.post("/chat/completions").mock(return_value=sse_response(sse(*chunks)))
    events = await collect(backend, mode, chat_request())
    assert [e.type for e in events][:2] == ["reasoning", "reasoning"]
    assert "".join(e.text for e in events) == "Hello!"
    final = accumulate(events)
    assert (final.reasoning, final.text, final.usage.reasoning_tokens) == (THOUGHT, "Hello!", 7)


async def test_inline_think_tags_from_a_server_without_a_reasoning_parser(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    body = completion_body(f"<think>\n{THOUGHT}\n</think>\n\nHello!")
    mock.post("/chat/completions").respond(json=body)
    response = await call(backend, mode, chat_request())
    assert (response.reasoning, response.text) == (THOUGHT, "Hello!")
    pieces = ["<thi", "nk>\n", THOUGHT[:10], THOUGHT[10:] + "\n</th", "ink>\n\nHel", "lo!"]
    chunks = [chunk({"content": p}) for p in pieces] + [chunk({}, finish_reason="stop")]
    mock.post("/chat/completions").mock(return_value=sse_response(sse(*chunks)))
    final = accumulate(await collect(backend, mode, chat_request()))
    assert (final.reasoning, final.text) == (THOUGHT, "Hello!")


async def test_reasoning_effort_is_sent_as_is(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body())
    for effort in ("none", "minimal", "low", "medium", "high"):
        await call(backend, mode, chat_request(reasoning_effort=effort))
        assert sent_json(route)["reasoning_effort"] == effort
    await call(backend, mode, chat_request())
    assert "reasoning_effort" not in sent_json(route)


async def test_unsupported_effort_raises_before_sending(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    route = mock.post("/completions").respond(json={})
    with pytest.raises(UnsupportedFeatureError, match="reasoning_effort"):
        await call(backend, mode, completion_request(reasoning_effort="low"))
    assert not route.called


def test_invalid_effort_raises_before_sending(mock: respx.MockRouter) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body())
    with (
        Client("openai:gpt-5", api_key=KEY) as client,
        pytest.raises(InvalidInputError, match="reasoning_effort"),
    ):
        client.chat("hi", reasoning_effort="maximum")
    assert not route.called


def conversation(*messages: Message) -> ChatRequest:
    return ChatRequest(model="deepseek-chat", messages=list(messages), params=GenerationParams())


CALL = ToolCall(id="call_1", name="weather", arguments='{"city": "Paris"}')


async def test_round_trip_sends_reasoning_only_within_the_tool_exchange(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    """DeepSeek's thinking mode needs the reasoning back while a tool-call exchange goes on,
    and answers 400 to reasoning on earlier turns."""
    route = mock.post("/chat/completions").respond(json=completion_body())
    earlier = Message.assistant("Hi!", reasoning="old thoughts")
    calling = Message.assistant(tool_calls=[CALL], reasoning="I need the weather.")
    result = Message.tool("sunny", tool_call_id="call_1")
    await call(
        backend, mode, conversation(Message.user("hi"), earlier, Message.user("weather?"), calling, result)
    )  # fmt: skip
    sent = sent_json(route)["messages"]
    assert "reasoning_content" not in sent[1]
    assert sent[3]["reasoning_content"] == "I need the weather."
    assert sent[3]["tool_calls"][0]["id"] == "call_1"
    # Once a new user turn starts, the earlier exchange's reasoning is dropped too.
    await call(
        backend, mode, conversation(Message.user("w?"), calling, result, Message.user("thanks"))
    )
    assert all("reasoning_content" not in m for m in sent_json(route)["messages"])


async def test_round_trip_uses_the_field_the_server_sent(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    details = [{"type": "reasoning.encrypted", "data": "opaque=="}]
    reply = reasoning_body(
        "reasoning",
        content=None,
        tool_calls=[CALL.to_openai()],
        reasoning_details=details,
    )
    route = mock.post("/chat/completions").respond(json=reply)
    first = await call(backend, mode, chat_request("weather?"))
    assert first.tool_calls == [CALL] and first.reasoning == THOUGHT
    tool = Message.tool("sunny", tool_call_id="call_1")
    await call(backend, mode, conversation(Message.user("weather?"), first.message, tool))
    sent = sent_json(route)["messages"][1]
    assert sent["reasoning"] == THOUGHT and "reasoning_content" not in sent
    assert sent["reasoning_details"] == details


def test_client_stream_reasoning_end_to_end(mock: respx.MockRouter) -> None:
    chunks = [chunk({"reasoning": "Short."}), chunk({"content": "Yes."})]
    chunks.append(chunk({}, finish_reason="stop"))
    route = mock.post("/chat/completions").mock(return_value=sse_response(sse(*chunks)))
    with (
        Client("openai:gpt-5", api_key=KEY) as client,
        client.stream("Is 97 prime?", reasoning_effort="low") as s,
    ):
        printed = "".join(event.text for event in s)
    assert printed == "Yes."
    assert s.response.reasoning == "Short."
    assert sent_json(route)["reasoning_effort"] == "low"
    assert isinstance(route.calls.last.request, httpx.Request)
    assert BASE in str(route.calls.last.request.url)


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_run_tools_sends_deepseek_its_reasoning_back(
    mock: respx.MockRouter, mode: str
) -> None:
    """The multi-turn tool loop that breaks elsewhere: DeepSeek's thinking mode answers 400
    unless the tool-calling turn's reasoning comes back with the tool result."""
    add_call = {"id": "call_1", "type": "function",
                "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'}}  # fmt: skip
    first = reasoning_body(content=None, tool_calls=[add_call])
    first["choices"][0]["finish_reason"] = "tool_calls"
    route = mock.post("/chat/completions")
    route.side_effect = [
        httpx.Response(200, json=first),
        httpx.Response(200, json=reasoning_body()),
    ]
    if mode == "sync":
        with Client("openai:deepseek-reasoner", api_key=KEY) as client:
            final = client.run_tools("2+2?", [add])
    else:
        from llmkit import AsyncClient

        async with AsyncClient("openai:deepseek-reasoner", api_key=KEY) as aclient:
            final = await aclient.run_tools("2+2?", [add])
    assert (final.text, final.reasoning) == ("Hello!", THOUGHT)
    sent = sent_json(route)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert sent[1]["reasoning_content"] == THOUGHT and sent[1]["tool_calls"][0]["id"] == "call_1"
    assert sent[2] == {"role": "tool", "content": "4", "tool_call_id": "call_1"}
