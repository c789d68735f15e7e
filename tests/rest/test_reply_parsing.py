"""``parse_chat_completion`` builds a plain text reply directly; every reply must come out
exactly as :meth:`ChatResponse.from_openai` (the general path) reads it."""

from __future__ import annotations

from typing import Any

import pytest

from llmkit._thinking import split_think
from llmkit.backends._openai_wire import parse_chat_completion
from llmkit.backends.rest.dialect_openai import OpenAIDialect
from llmkit.backends.rest.wire import WireOptions
from llmkit.errors import ProtocolError
from llmkit.types import ChatRequest, ChatResponse, Message

BASE: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "m",
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def reply(message: dict[str, Any], **top: Any) -> dict[str, Any]:
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {**BASE, "choices": [choice], **top}


def general(data: dict[str, Any], think_tags: str) -> ChatResponse:
    response = ChatResponse.from_openai(data, backend="rest:m")
    message = response.message
    if message.reasoning is None and think_tags != "off" and isinstance(message.content, str):
        reasoning, text = split_think(message.content, inside=think_tags == "open")
        if reasoning is not None or text != message.content:
            message.reasoning = reasoning
            message.content = text if (text or not message.tool_calls) else None
    return response


REPLIES = [
    reply({"role": "assistant", "content": "Hello"}),
    reply({"content": "no role"}),
    reply({"role": "assistant", "content": "", "refusal": None, "annotations": []}),
    reply({"role": "assistant", "content": "x", "tool_calls": []}),
    reply({"role": "assistant", "content": "  <think>why</think> answer"}),
    reply({"role": "assistant", "content": "why</think>answer"}),
    reply({"role": "assistant", "content": "a", "reasoning_content": "r"}),
    reply({"role": "assistant", "content": "a", "name": "bot"}),
    reply({"role": "assistant", "content": None}),
    reply({"role": "assistant", "content": "u"}, usage=None, id=None),
    reply(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        }
    ),
]


@pytest.mark.parametrize("think_tags", ["auto", "open", "off"])
@pytest.mark.parametrize("data", REPLIES)
def test_same_response_as_the_general_path(data: dict[str, Any], think_tags: Any) -> None:
    got = parse_chat_completion(data, backend="rest:m", think_tags=think_tags)
    want = general(data, think_tags)
    if data.get("id") is None:  # a fresh id each time
        got.id = want.id = "x"
        got.created = want.created
    assert got == want
    assert got.model_fields_set == want.model_fields_set
    assert got.message.model_fields_set == want.message.model_fields_set


@pytest.mark.parametrize(
    "data",
    [
        reply({"role": "user", "content": "x"}) | {"choices": [{"message": {"role": 3}}]},
        {**BASE, "choices": []},
        {**BASE, "choices": ["text"]},
        reply({"role": "assistant", "content": 5}),
    ],
)
def test_malformed_replies_are_typed_errors(data: dict[str, Any]) -> None:
    dialect = OpenAIDialect(WireOptions(spec="rest:m"))
    with pytest.raises(ProtocolError):
        dialect.chat(ChatRequest(model="m", messages=[Message.user("hi")]), stream=False).parse(
            data, {}
        )
