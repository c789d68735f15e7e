"""Several models behind one server: listed together, each request routed by its ``model``,
an unknown name a 404 that lists the served ones, chat to an embedding-only model a 400."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from llmkit import AsyncClient, RetryPolicy
from llmkit.backends.base import Capabilities
from llmkit.server import create_app, run_in_thread
from llmkit.testing import FakeBackend


@pytest.fixture
def served() -> Iterator[tuple[str, FakeBackend, FakeBackend]]:
    small = FakeBackend(["from small"], model="small")
    large = FakeBackend(["from large"], model="large")
    embedder = FakeBackend(model="vectors", capabilities=Capabilities(chat=False, embeddings=True))
    once = RetryPolicy(max_attempts=1)
    app = create_app(
        {
            "small": AsyncClient(backend=small, retry=once),
            "large": AsyncClient(backend=large, retry=once),
            "vectors": AsyncClient(backend=embedder, retry=once),
        }
    )
    with run_in_thread(app, graceful_timeout=1) as url:
        yield url, small, large


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{url}/v1", api_key="x", max_retries=0, http_client=httpx.Client()
    )


def test_models_are_listed_and_routed(served: tuple[str, FakeBackend, FakeBackend]) -> None:
    url, small, large = served
    with sdk(url) as client:
        assert [m.id for m in client.models.list()] == ["small", "large", "vectors"]
        assert client.models.retrieve("large").id == "large"
        for name in ("large", "small", "large", "fake:large"):  # the spec routes too
            r = client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "hi"}]
            )
            assert r.choices[0].message.content == f"from {name.removeprefix('fake:')}"
            assert r.model == name.removeprefix("fake:")
        chunks = list(
            client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert {c.model for c in chunks} == {"small"}
    assert len(small.requests) == 2 and len(large.requests) == 3


def test_unknown_model_is_a_404_listing_the_served(
    served: tuple[str, FakeBackend, FakeBackend],
) -> None:
    url, small, large = served
    with sdk(url) as client, pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="medium", messages=[{"role": "user", "content": "hi"}])
    message = str(info.value)
    assert "'medium'" in message and "'small'" in message and "'large'" in message
    assert not small.requests and not large.requests


def test_chat_to_an_embedding_model_is_a_clear_400(
    served: tuple[str, FakeBackend, FakeBackend],
) -> None:
    url, _, _ = served
    with sdk(url) as client, pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="vectors", messages=[{"role": "user", "content": "hi"}]
        )
    assert "embedding model" in str(info.value) and "/v1/embeddings" in str(info.value)
    with sdk(url) as client, pytest.raises(openai.BadRequestError):
        client.completions.create(model="vectors", prompt="hi")


def test_create_app_checks_its_arguments() -> None:
    client = AsyncClient(backend=FakeBackend())
    with pytest.raises(ValueError, match="at least one"):
        create_app({})
    with pytest.raises(ValueError, match="single client"):
        create_app({"a": client}, served_model="b")
