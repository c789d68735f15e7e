"""The openai backend under llmkit's Client/AsyncClient: retries owned by llmkit alone."""

from __future__ import annotations

import httpx
import pytest
import respx
from openai_testkit import KEY, completion_body, sent_json, sse, sse_response, text_stream_chunks

import llmkit.errors as E
from llmkit import AsyncClient, Client, RetryPolicy
from llmkit.backends.openai import OpenAIBackend


def policy(sleeps: list[float], attempts: int = 3) -> object:
    async def async_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return RetryPolicy(max_attempts=attempts, jitter=0).with_clock(
        sleep=sleeps.append, async_sleep=async_sleep
    )


def test_client_chat_and_stream(mock: respx.MockRouter) -> None:
    route = mock.post("/chat/completions").respond(json=completion_body("Bonjour"))
    with Client("openai:gpt-4o-mini", api_key=KEY) as client:
        r = client.chat("Hello", system="Be French", temperature=0.2, max_tokens=20)
        assert r.text == "Bonjour"
        assert r.backend == "openai:gpt-4o-mini"
        sent = sent_json(route)
        assert sent["messages"][0] == {"role": "system", "content": "Be French"}
        assert (sent["temperature"], sent["max_tokens"]) == (0.2, 20)

        mock.post("/chat/completions").mock(return_value=sse_response(sse(*text_stream_chunks())))
        with client.stream("Hello") as stream:
            text = "".join(event.text for event in stream)
        assert text == "Hi there!"
        assert stream.response.text == "Hi there!"
        assert stream.response.usage.total_tokens == 12


def test_retry_after_is_honoured_with_one_sdk_attempt_per_llmkit_attempt(
    mock: respx.MockRouter,
) -> None:
    route = mock.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": "2"}),
            httpx.Response(
                503, json={"error": {"message": "busy"}}, headers={"retry-after-ms": "750"}
            ),
            httpx.Response(200, json=completion_body("finally")),
        ]
    )
    sleeps: list[float] = []
    client = Client("openai:gpt-4o-mini", api_key=KEY, retry=policy(sleeps))
    assert client.chat("Hello").text == "finally"
    assert sleeps == [2.0, 0.75]
    assert route.call_count == 3  # three llmkit attempts, three HTTP requests: no SDK retries
    client.close()


def test_non_retryable_errors_are_not_retried(mock: respx.MockRouter) -> None:
    route = mock.post("/chat/completions").respond(401, json={"error": {"message": "bad key"}})
    sleeps: list[float] = []
    client = Client("openai:gpt-4o-mini", api_key=KEY, retry=policy(sleeps))
    with pytest.raises(E.AuthenticationError):
        client.chat("Hello")
    assert route.call_count == 1 and sleeps == []
    client.close()


def test_stream_retried_before_the_first_event(mock: respx.MockRouter) -> None:
    route = mock.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": "1"}),
            sse_response(sse(*text_stream_chunks())),
        ]
    )
    sleeps: list[float] = []
    client = Client(backend=OpenAIBackend("gpt-4o-mini", api_key=KEY), retry=policy(sleeps))
    with client.stream("Hello") as stream:
        assert "".join(e.text for e in stream) == "Hi there!"
    assert sleeps == [1.0] and route.call_count == 2


async def test_async_client_retry_and_stream(mock: respx.MockRouter) -> None:
    route = mock.post("/chat/completions").mock(
        side_effect=[
            httpx.Response(
                429, json={"error": {"message": "slow"}}, headers={"retry-after-ms": "10"}
            ),
            httpx.Response(200, json=completion_body("async ok")),
        ]
    )
    sleeps: list[float] = []
    async with AsyncClient("openai:gpt-4o-mini", api_key=KEY, retry=policy(sleeps)) as client:
        r = await client.chat("Hello")
        assert r.text == "async ok"
        assert sleeps == [0.01] and route.call_count == 2

        mock.post("/chat/completions").mock(return_value=sse_response(sse(*text_stream_chunks())))
        async with client.stream("Hello") as stream:
            text = "".join([event.text async for event in stream])
        assert text == "Hi there!"
