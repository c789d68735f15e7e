"""``Client.embed`` / ``AsyncClient.embed``: the same pipeline as chat (retries, fallbacks,
hooks, usage, span), large inputs split into batches kept in order, and bad input or a backend
that cannot embed refused before anything is sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmkit import (
    AsyncClient,
    Client,
    Hooks,
    Image,
    InvalidInputError,
    Message,
    RateLimitError,
    ServerError,
    UnsupportedFeatureError,
)
from llmkit.backends.base import Capabilities
from llmkit.backends.fake import fake_vector
from llmkit.testing import FakeBackend, instant_retry
from llmkit.types import EmbeddingResponse

TEXTS = ["alpha", "beta", "gamma", "delta", "epsilon"]


async def embed(client: Any, mode: str, inputs: Any, **options: Any) -> EmbeddingResponse:
    if mode == "sync":
        return client.embed(inputs, **options)  # type: ignore[no-any-return]
    return await client.embed(inputs, **options)  # type: ignore[no-any-return]


def make(mode: str, backend: Any, **kwargs: Any) -> Any:
    cls = Client if mode == "sync" else AsyncClient
    return cls(backend=backend, retry=instant_retry(), **kwargs)


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
async def test_batches_keep_input_order(mode: str) -> None:
    fake = FakeBackend(model="emb")
    r = await embed(make(mode, fake), mode, TEXTS, batch_size=2)
    assert r.vectors == [fake_vector(t, 8) for t in TEXTS]
    assert sorted(len(req.inputs) for req in fake.embed_requests) == [1, 2, 2]
    assert sorted(t for req in fake.embed_requests for t in req.inputs) == sorted(TEXTS)
    assert r.dimensions == 8 and r.backend == "fake:emb" and r.usage.prompt_tokens > 0


@pytest.mark.parametrize("mode", MODES)
async def test_each_batch_is_retried_on_its_own(mode: str) -> None:
    fake = FakeBackend(model="emb", embedding_failures=[RateLimitError("busy", retry_after=0)])
    requests: list[Any] = []
    responses: list[Any] = []
    hooks = Hooks(on_request=requests.append, on_response=responses.append)
    client = make(mode, fake, hooks=hooks)
    r = await embed(client, mode, TEXTS, batch_size=2)
    assert r.vectors == [fake_vector(t, 8) for t in TEXTS]
    assert len(fake.embed_requests) == 4  # three batches, one of them twice
    assert len(requests) == 4 and len(responses) == 3  # hooks per attempt / per batch
    assert client.usage.prompt_tokens == r.usage.prompt_tokens


@pytest.mark.parametrize("mode", MODES)
async def test_a_failing_backend_falls_back(mode: str) -> None:
    broken = FakeBackend(model="a", embedding_failures=[ServerError("down")] * 5)
    spare = FakeBackend(model="b", embedding_dimensions=4)
    cls = Client if mode == "sync" else AsyncClient
    client = cls(
        backend=broken,
        retry=instant_retry(),
        fallbacks=[cls(backend=spare, retry=instant_retry())],
    )
    r = await embed(client, mode, "hello")
    assert r.backend == "fake:b" and r.dimensions == 4


@pytest.mark.parametrize("mode", MODES)
async def test_what_cannot_be_done_is_refused_before_sending(mode: str) -> None:
    chat_only = FakeBackend(capabilities=Capabilities(embeddings=False))
    with pytest.raises(UnsupportedFeatureError, match="cannot embed"):
        await embed(make(mode, chat_only), mode, "hi")
    assert chat_only.embed_requests == []
    fake = FakeBackend()
    for bad, message in (([], "at least one"), ([1], "not a str"), ([""], "empty")):
        with pytest.raises(InvalidInputError, match=message):
            await embed(make(mode, fake), mode, bad)
    for options, message in (({"dimensions": 0}, "dimensions"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(InvalidInputError, match=message):
            await embed(make(mode, fake), mode, "x", **options)
    assert fake.embed_requests == []
    assert (await embed(make(mode, fake), mode, "x", dimensions=3)).dimensions == 3


def test_chat_refuses_what_the_backend_does_not_take() -> None:
    embedder = FakeBackend(capabilities=Capabilities(chat=False, embeddings=True))
    with pytest.raises(UnsupportedFeatureError, match="embedding model"):
        Client(backend=embedder).chat("hi")
    blind = FakeBackend()  # vision off
    with pytest.raises(UnsupportedFeatureError, match="image_url parts"):
        Client(backend=blind).chat(Message(role="user", content=["What is it?", _image()]))
    assert embedder.requests == [] and blind.requests == []


def _image() -> Any:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    return Image(png)


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider
    provider.shutdown()


def test_each_batch_has_an_embeddings_span(exporter: Any) -> None:
    spans, provider = exporter
    client = Client(backend=FakeBackend(model="emb"), tracer_provider=provider)
    client.embed(TEXTS, batch_size=3)
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["embeddings emb", "embeddings emb"]
    span = spans.get_finished_spans()[0]
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.usage.input_tokens"] > 0


@pytest.mark.parametrize("mode", MODES)
async def test_rest_batches_go_out_concurrently_and_come_back_in_order(mode: str) -> None:
    seen: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        seen.append(texts)
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": data, "model": "m", "usage": {"prompt_tokens": 1}})

    cls = Client if mode == "sync" else AsyncClient
    client = cls("rest:m", base_url="http://emb:8000/v1")
    with respx.mock(assert_all_called=True) as mock:
        mock.post("http://emb:8000/v1/embeddings").mock(side_effect=answer)
        r = await embed(client, mode, TEXTS, batch_size=2)
    assert [v[0] for v in r.vectors] == [float(len(t)) for t in TEXTS]
    assert len(seen) == 3 and r.usage.prompt_tokens == 3


class _Counting(FakeBackend):
    """Records how many embed() batches run at once."""

    def __init__(self, concurrency: int | None) -> None:
        super().__init__(model="emb")
        self.embed_concurrency = concurrency  # type: ignore[misc]
        self.active = self.peak = 0

    def _enter(self) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)

    def embed(self, request: Any) -> EmbeddingResponse:
        self._enter()
        try:
            time.sleep(0.05)
            return super().embed(request)
        finally:
            self.active -= 1

    async def aembed(self, request: Any) -> EmbeddingResponse:
        self._enter()
        try:
            await asyncio.sleep(0.05)
            return super().embed(request)
        finally:
            self.active -= 1


@pytest.mark.parametrize("mode", MODES)
async def test_an_in_process_backend_gets_one_batch_at_a_time(mode: str) -> None:
    """hf runs one forward pass at a time: concurrent batches would only queue on threads
    that each keep memory of their own (10,000 texts took 2 GB instead of 0.3)."""
    serial, parallel = _Counting(1), _Counting(None)
    for backend in (serial, parallel):
        r = await embed(make(mode, backend), mode, TEXTS, batch_size=1)
        assert r.vectors == [fake_vector(t, 8) for t in TEXTS]
    assert serial.peak == 1
    assert parallel.peak > 1  # HTTP-like backends get their batches concurrently
