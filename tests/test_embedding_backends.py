"""Embeddings on each HTTP backend, at the transport: the real openai SDK and llmkit's own
httpx client build the requests; respx answers in each server's shape (OpenAI float and base64,
TEI's bare list, Ollama's ``embeddings``), and faults map to llmkit's errors."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import httpx
import pytest
import respx

from llmkit import (
    InvalidInputError,
    ProtocolError,
    RateLimitError,
    ServerError,
    UnsupportedFeatureError,
)
from llmkit.backends._embeddings_wire import decode_base64_floats
from llmkit.backends.fake import FakeBackend, fake_vector
from llmkit.backends.openai import OpenAIBackend
from llmkit.backends.rest import RestBackend
from llmkit.types import EmbeddingRequest, normalize_embedding_inputs

KEY = "sk-test-EMBEDKEY-0123456789abcdef"
VECTORS = [[0.5, -0.25, 0.125], [1.0, 0.0, -1.0], [0.1, 0.2, 0.3]]
TEXTS = ["first", "second", "third"]


def b64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def openai_body(encoding: str, *, shuffled: bool = False) -> dict[str, Any]:
    items = [
        {"object": "embedding", "index": i, "embedding": b64(v) if encoding == "base64" else v}
        for i, v in enumerate(VECTORS)
    ]
    if shuffled:
        items.reverse()  # servers may answer out of order; index says where each belongs
    return {
        "object": "list",
        "data": items,
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }


def request(**kwargs: Any) -> EmbeddingRequest:
    return EmbeddingRequest(model=kwargs.pop("model", "emb"), inputs=list(TEXTS), **kwargs)


async def run(backend: Any, mode: str, req: EmbeddingRequest) -> Any:
    if mode == "sync":
        return backend.embed(req)
    return await backend.aembed(req)


def close_to(got: list[list[float]], want: list[list[float]]) -> bool:
    return all(
        abs(a - b) < 1e-6 for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True)
    )


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("encoding", ["base64", "float"])
async def test_openai_backend(mode: str, encoding: str) -> None:
    backend = OpenAIBackend("text-embedding-3-small", api_key=KEY)
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://api.openai.com/v1/embeddings").mock(
            return_value=httpx.Response(
                200, json=openai_body(encoding, shuffled=True), headers={"x-request-id": "req-9"}
            )
        )
        r = await run(backend, mode, request(model="text-embedding-3-small", dimensions=3))
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "model": "text-embedding-3-small",
        "input": TEXTS,
        "encoding_format": "base64",  # like the SDK: a quarter of the bytes
        "dimensions": 3,
    }
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert close_to(r.vectors, VECTORS)  # back in input order
    assert r.dimensions == 3 and r.usage.prompt_tokens == 6 and not r.usage.estimated
    assert r.request_id == "req-9" and r.backend == "openai:text-embedding-3-small"


@pytest.mark.parametrize("mode", MODES)
async def test_openai_backend_maps_faults(mode: str) -> None:
    backend = OpenAIBackend("emb", api_key=KEY)
    with respx.mock() as mock:
        route = mock.post("https://api.openai.com/v1/embeddings")
        route.mock(
            return_value=httpx.Response(
                429, json={"error": {"message": "slow down"}}, headers={"retry-after": "3"}
            )
        )
        with pytest.raises(RateLimitError) as info:
            await run(backend, mode, request())
        assert info.value.retry_after == 3
        route.mock(return_value=httpx.Response(500, json={"error": {"message": "boom"}}))
        with pytest.raises(ServerError):
            await run(backend, mode, request())
        route.mock(
            return_value=httpx.Response(200, json={"object": "list", "data": [{"index": 0}]})
        )
        with pytest.raises(ProtocolError, match="embedding reply"):
            await run(backend, mode, request())
    assert KEY not in str(info.value)


REST_SHAPES = {
    "openai": ("http://gpu:8000/v1/embeddings", lambda: openai_body("base64")),
    "tgi": ("http://gpu:8000/embed", lambda: VECTORS),
    "ollama": (
        "http://gpu:8000/api/embed",
        lambda: {"model": "emb", "embeddings": VECTORS, "prompt_eval_count": 6},
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", sorted(REST_SHAPES))
async def test_rest_dialects(dialect: str, mode: str) -> None:
    url, body = REST_SHAPES[dialect]
    backend = RestBackend("emb", base_url="http://gpu:8000/v1", dialect=dialect, api_key=KEY)
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(url).mock(return_value=httpx.Response(200, json=body()))
        r = await run(backend, mode, request(dimensions=3))
    sent = json.loads(route.calls.last.request.content)
    texts = sent.get("input", sent.get("inputs"))
    assert texts == TEXTS and sent["dimensions"] == 3
    assert close_to(r.vectors, VECTORS) and r.backend == "rest:emb"
    # TEI reports no token count: estimated, and flagged as such.
    assert r.usage.estimated == (dialect == "tgi") and r.usage.prompt_tokens > 0
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dialect", sorted(REST_SHAPES))
async def test_rest_wrong_vector_count_is_a_protocol_error(dialect: str, mode: str) -> None:
    url, body = REST_SHAPES[dialect]
    backend = RestBackend("emb", base_url="http://gpu:8000/v1", dialect=dialect)
    one_short = EmbeddingRequest(model="emb", inputs=[*TEXTS, "fourth"])
    with respx.mock() as mock:
        mock.post(url).mock(return_value=httpx.Response(200, json=body()))
        with pytest.raises(ProtocolError, match="expected 4 vectors, got 3"):
            await run(backend, mode, one_short)


def test_rest_fails_over_to_the_next_replica() -> None:
    backend = RestBackend("emb", base_url=["http://a:8000/v1", "http://b:8000/v1"])
    with respx.mock(assert_all_called=True) as mock:
        mock.post("http://a:8000/v1/embeddings").mock(return_value=httpx.Response(503))
        mock.post("http://b:8000/v1/embeddings").mock(
            return_value=httpx.Response(200, json=openai_body("float"))
        )
        assert close_to(backend.embed(request()).vectors, VECTORS)


def test_base64_decoding_is_exact_float32() -> None:
    values = [0.1, -2.5, 3.0e-8, 65504.0]
    packed = [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]
    assert decode_base64_floats(b64(values)) == packed
    with pytest.raises(ValueError):
        decode_base64_floats(base64.b64encode(b"abc").decode())  # not whole float32 values


async def test_fake_backend_is_deterministic_and_scriptable() -> None:
    fake = FakeBackend(embedding_failures=[RateLimitError("busy", retry_after=0)])
    with pytest.raises(RateLimitError):
        fake.embed(request())
    first = fake.embed(request())
    again = await fake.aembed(request())
    assert first.vectors == again.vectors == [fake_vector(t, 8) for t in TEXTS]
    assert len({tuple(v) for v in first.vectors}) == 3  # different texts, different vectors
    assert abs(sum(x * x for x in first.vectors[0]) - 1) < 1e-9
    assert fake.embed(request(dimensions=5)).dimensions == 5
    assert len(fake.embed_requests) == 4


def test_backends_that_cannot_embed_say_so_before_sending() -> None:
    from llmkit.backends.base import BaseBackend

    class ChatOnly(BaseBackend):
        name = "chat-only"

    with pytest.raises(UnsupportedFeatureError, match="cannot embed"):
        ChatOnly("m").embed(request())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "at least one text"),
        (["ok", 3], "input 1 is a int"),
        (["ok", "  "], "input 1 is empty"),
        (b"bytes", "str or a list of str"),
    ],
)
def test_bad_inputs_are_refused_with_the_reason(value: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        normalize_embedding_inputs(value)
    assert normalize_embedding_inputs("one") == ["one"]
