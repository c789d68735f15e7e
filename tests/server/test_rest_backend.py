"""llmkit's own ``rest:`` backend as the consumer of ``llmkit serve`` (both ends llmkit),
sync and async, plain and streamed, with errors crossing the wire intact."""

from __future__ import annotations

import pytest

from llmkit import AsyncClient, Client, RateLimitError, RetryPolicy, Usage, errors
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory

NO_RETRY = RetryPolicy(max_attempts=1)
USAGE = Usage(prompt_tokens=5, completion_tokens=4)


def test_rest_client_sync(serve: ServeFactory) -> None:
    served = serve([Reply("plain answer", usage=USAGE), Reply("streamed answer")], api_key=API_KEY)
    with Client("rest:fake-model", base_url=served.v1, api_key=API_KEY, retry=NO_RETRY) as client:
        response = client.chat("hello", system="be nice", temperature=0.1, max_tokens=9)
        assert response.text == "plain answer"
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (5, 4)
        assert response.backend == "rest:fake-model"
        with client.stream("again") as stream:
            text = "".join(event.text for event in stream)
        assert text == "streamed answer"
        assert not stream.response.usage.estimated  # usage came over the wire
    first = served.fake.requests[0]
    assert [m.role for m in first.messages] == ["system", "user"]  # type: ignore[union-attr]
    assert (first.params.temperature, first.params.max_tokens) == (0.1, 9)


async def test_rest_client_async(serve: ServeFactory) -> None:
    served = serve([Reply("async plain"), Reply("async streamed reply", chunk_delay=0.01)])
    async with AsyncClient("rest:fake-model", base_url=served.v1, retry=NO_RETRY) as client:
        assert (await client.chat("hi")).text == "async plain"
        async with client.stream("hi") as stream:
            parts = [event.text async for event in stream]
    assert "".join(parts) == "async streamed reply"


def test_rest_client_sees_mapped_errors(serve: ServeFactory) -> None:
    served = serve(
        [
            errors.RateLimitError("slow down", status_code=429, retry_after=2),
            errors.BadRequestError("nope", status_code=400),
        ]
    )
    with Client("rest:fake-model", base_url=served.v1, retry=NO_RETRY) as client:
        with pytest.raises(RateLimitError) as info:
            client.chat("x")
        assert info.value.retry_after == 2
        with pytest.raises(errors.BadRequestError, match="nope"):
            client.chat("x")
    with (
        Client("rest:other", base_url=served.v1, retry=NO_RETRY) as client,
        pytest.raises(errors.NotFoundError),
    ):
        client.chat("x")


def test_rest_client_wrong_key(serve: ServeFactory) -> None:
    served = serve(["ok"], api_key=API_KEY)
    with (
        Client("rest:fake-model", base_url=served.v1, api_key="wrong", retry=NO_RETRY) as client,
        pytest.raises(errors.AuthenticationError),
    ):
        client.chat("x")


def test_every_reply_carries_a_request_id(serve: ServeFactory) -> None:
    served = serve([Reply("plain"), Reply("streamed answer")])
    with Client("rest:fake-model", base_url=served.v1, retry=NO_RETRY) as client:
        plain = client.chat("hi")
        with client.stream("hi") as stream:
            for _ in stream:
                pass
        streamed = stream.response
    ids = [plain.request_id, streamed.request_id]
    assert all(i is not None and i.startswith("req_") for i in ids), ids
    assert ids[0] != ids[1]


async def test_every_reply_carries_a_request_id_async(serve: ServeFactory) -> None:
    served = serve([Reply("plain"), Reply("streamed answer")])
    async with AsyncClient("rest:fake-model", base_url=served.v1, retry=NO_RETRY) as client:
        plain = await client.chat("hi")
        async with client.stream("hi") as stream:
            async for _ in stream:
                pass
        streamed = stream.response
    assert plain.request_id and streamed.request_id and plain.request_id != streamed.request_id
