"""The official openai SDK (sync and async, plain and streamed) against ``llmkit serve``
over a real socket; replies are parsed by the SDK's own types."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion import Completion

from llmkit import Usage
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory

USAGE = Usage(prompt_tokens=7, completion_tokens=3)


def sync_sdk(base_url: str, api_key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{base_url}/v1", api_key=api_key, max_retries=0, http_client=httpx.Client()
    )


def async_sdk(base_url: str, api_key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1",
        api_key=api_key,
        max_retries=0,
        http_client=httpx.AsyncClient(),
    )


def test_sync_chat(serve: ServeFactory) -> None:
    served = serve([Reply("Paris is the capital.", usage=USAGE)], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        completion = sdk.chat.completions.create(
            model="fake-model",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Capital of France?"},
            ],
            temperature=0.2,
            max_tokens=20,
            stop=["\n"],
            seed=3,
        )
    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "fake-model"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Paris is the capital."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 3)
    assert completion.usage.total_tokens == 10
    request = served.fake.requests[0]
    assert [m.role for m in request.messages] == ["system", "user"]  # type: ignore[union-attr]
    assert request.params.temperature == 0.2
    assert request.params.max_tokens == 20
    assert request.params.stop == ["\n"]
    assert request.params.seed == 3


def test_sync_stream_with_usage(serve: ServeFactory) -> None:
    served = serve([Reply("one two three", usage=USAGE)], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "count"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)


def test_stream_without_include_usage_sends_no_usage(serve: ServeFactory) -> None:
    served = serve([Reply("a b", usage=USAGE)])
    with sync_sdk(served.base_url) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert all(c.usage is None and c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "a b"


def test_stream_estimates_usage_when_backend_reports_none(serve: ServeFactory) -> None:
    served = serve(["twelve chars"])
    with sync_sdk(served.base_url) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


async def test_async_chat_and_stream(serve: ServeFactory) -> None:
    served = serve([Reply("async hello", usage=USAGE), Reply("streamed async reply")])
    async with async_sdk(served.base_url) as sdk:
        completion = await sdk.chat.completions.create(
            model="fake:fake-model",  # the full spec is accepted too
            messages=[{"role": "user", "content": "hi"}],
        )
        assert completion.choices[0].message.content == "async hello"
        stream = await sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == (
        "streamed async reply"
    )
    assert parts[-1].usage is not None and parts[-1].usage.total_tokens > 0


def test_tool_calls_round_trip(serve: ServeFactory) -> None:
    call = {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    served = serve([Reply(tool_calls=[call]), Reply(tool_calls=[call]), "It is sunny."])
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Paris?"}]
    with sync_sdk(served.base_url) as sdk:
        completion = sdk.chat.completions.create(
            model="fake-model", messages=messages, tools=tools, tool_choice="auto"
        )
        choice = completion.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls is not None
        assert choice.message.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]
        chunks = list(
            sdk.chat.completions.create(
                model="fake-model", messages=messages, tools=tools, stream=True
            )
        )
        args = "".join(
            tc.function.arguments or ""
            for c in chunks
            for tc in (c.choices[0].delta.tool_calls or [])
            if tc.function
        )
        assert args == '{"city": "Paris"}'
        # The SDK's own message object, sent back as history (it carries refusal/audio/...).
        history = [
            *messages,
            choice.message.model_dump(),
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ]
        final = sdk.chat.completions.create(model="fake-model", messages=history, tools=tools)
    assert final.choices[0].message.content == "It is sunny."
    assert [m.role for m in served.fake.requests[-1].messages] == [  # type: ignore[union-attr]
        "user",
        "assistant",
        "tool",
    ]
    assert served.fake.requests[0].params.tools is not None


def test_completions_plain_and_stream(serve: ServeFactory) -> None:
    reply = Reply(" upon a time", chunks=[" upon", " a", " time"], usage=USAGE)
    served = serve([reply, reply])
    with sync_sdk(served.base_url) as sdk:
        completion = sdk.completions.create(model="fake-model", prompt="Once", max_tokens=5)
        assert isinstance(completion, Completion)
        assert completion.object == "text_completion"
        assert completion.choices[0].text == " upon a time"
        assert completion.usage is not None and completion.usage.total_tokens == 10
        chunks = list(
            sdk.completions.create(
                model="fake-model",
                prompt="Once",
                max_tokens=5,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert all(isinstance(c, Completion) and c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    assert {c.model for c in chunks} == {"fake-model"}
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts == [" upon", " a", " time", ""]  # one chunk per piece, then the finish
    assert "".join(texts) == completion.choices[0].text
    finish = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish == [None, None, None, "stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)
    for request in served.fake.requests:
        assert request.prompt == "Once"  # type: ignore[union-attr]
        assert request.params.max_tokens == 5


async def test_async_streamed_completion_without_usage(serve: ServeFactory) -> None:
    served = serve([Reply("one two three", finish_reason="length")])
    async with async_sdk(served.base_url) as sdk:
        stream = await sdk.completions.create(model="fake-model", prompt="count", stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and c.choices for c in chunks)
    assert [c.choices[0].text for c in chunks] == ["one ", "two ", "three", ""]
    assert chunks[-1].choices[0].finish_reason == "length"
    assert served.fake.requests[0].prompt == "count"  # type: ignore[union-attr]


def test_models_list_and_retrieve(serve: ServeFactory) -> None:
    served = serve(api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        models = sdk.models.list()
        assert [m.id for m in models.data] == ["fake-model"]
        assert sdk.models.retrieve("fake-model").id == "fake-model"
        with pytest.raises(openai.NotFoundError):
            sdk.models.retrieve("gpt-4")


def test_served_model_name_and_max_tokens_cap(serve: ServeFactory) -> None:
    served = serve(["ok"], served_model="my-model", max_tokens_cap=64)
    with sync_sdk(served.base_url) as sdk:
        a = sdk.chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "x"}], max_tokens=10_000
        )
        sdk.chat.completions.create(model="my-model", messages=[{"role": "user", "content": "x"}])
        sdk.chat.completions.create(
            model="my-model", messages=[{"role": "user", "content": "x"}], max_completion_tokens=8
        )
        with pytest.raises(openai.NotFoundError) as info:
            sdk.chat.completions.create(
                model="other-model", messages=[{"role": "user", "content": "x"}]
            )
    assert a.model == "my-model"
    assert [r.params.max_tokens for r in served.fake.requests] == [64, 64, 8]
    assert info.value.code == "model_not_found"
