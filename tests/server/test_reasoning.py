"""``llmkit serve`` and reasoning, with the official openai SDK as the client over a real
socket: ``reasoning_content`` in replies and chunks (read from the SDK objects'
``model_extra``), ``reasoning_effort`` accepted, ``completion_tokens_details``."""

from __future__ import annotations

import openai
import pytest

from llmkit import Usage
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory
from .test_openai_sdk import async_sdk, sync_sdk

THOUGHT = "Two and two make four."
USAGE = Usage(prompt_tokens=7, completion_tokens=9, reasoning_tokens=5)


def test_chat_reply_carries_reasoning(serve: ServeFactory) -> None:
    served = serve([Reply("Four.", reasoning=THOUGHT, usage=USAGE)], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        completion = sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "2+2?"}],
            reasoning_effort="low",
        )
    message = completion.choices[0].message
    assert message.content == "Four."
    assert (message.model_extra or {})["reasoning_content"] == THOUGHT
    assert completion.usage is not None and completion.usage.completion_tokens_details
    assert completion.usage.completion_tokens_details.reasoning_tokens == 5
    assert served.fake.requests[0].params.reasoning_effort == "low"


async def test_stream_chunks_carry_reasoning(serve: ServeFactory) -> None:
    served = serve([Reply("Four.", reasoning=THOUGHT, usage=USAGE)], api_key=API_KEY)
    async with async_sdk(served.base_url) as sdk:
        stream = await sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "2+2?"}],
            reasoning_effort="high",
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == THOUGHT
    assert "".join(d.content or "" for d in deltas) == "Four."
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 5
    assert served.fake.requests[0].params.reasoning_effort == "high"


def test_reasoning_passed_back_reaches_the_backend(serve: ServeFactory) -> None:
    served = serve(["ok"], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        sdk.chat.completions.create(
            model="fake-model",
            messages=[
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "Four.", "reasoning_content": THOUGHT},  # type: ignore[misc]
                {"role": "user", "content": "3+3?"},
            ],
        )
    assert served.fake.requests[0].messages[1].reasoning == THOUGHT  # type: ignore[union-attr]


def test_invalid_effort_is_a_400_naming_the_parameter(serve: ServeFactory) -> None:
    served = serve(["never"], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk, pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"reasoning_effort": "extreme"},
        )
    assert "reasoning_effort" in str(info.value)
    assert served.fake.requests == []


def test_completions_pass_the_effort_to_the_backend(serve: ServeFactory) -> None:
    """The backend decides: a raw completion with an effort it cannot honour is a 400."""
    served = serve(["ok"], api_key=API_KEY)
    served.fake.reasoning_efforts = frozenset({"low"})
    with sync_sdk(served.base_url) as sdk:
        done = sdk.completions.create(
            model="fake-model", prompt="Once", extra_body={"reasoning_effort": "low"}
        )
        assert done.choices[0].text == "ok"
        with pytest.raises(openai.BadRequestError, match="'high' is not supported"):
            sdk.completions.create(
                model="fake-model", prompt="Once", extra_body={"reasoning_effort": "high"}
            )
    assert [r.params.reasoning_effort for r in served.fake.requests] == ["low"]
