"""``embed()`` through a cassette: recorded against ``llmkit serve`` over a real 127.0.0.1
socket (a FakeBackend behind it: one distinct vector per text), replayed with the server
gone and every socket connection refused; a text that was never recorded is a
``CassetteMiss``. Sync and async, ``openai:`` (the SDK's base64 vectors) and ``rest:``."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmkit import AsyncClient, Client, RetryPolicy
from llmkit.backends.fake import fake_vector
from llmkit.server import create_app, run_in_thread
from llmkit.testing import CassetteMiss, FakeBackend, cassette
from llmkit.types import EmbeddingResponse

KEY = "sk-live-0e1d2c3b4a596877"
DIMENSIONS = 16
TEXTS = ["the cat sat", "on the mat", "a third text", "and a fourth"]
SPECS = {"openai": {"api_key": KEY}, "rest": {"api_key": KEY}}


@pytest.fixture
def served() -> Iterator[tuple[str, FakeBackend]]:
    """``llmkit serve`` of a FakeBackend on a real socket; yields its /v1 URL and the fake."""
    fake = FakeBackend(model="fake-model", embedding_dimensions=DIMENSIONS)
    client = AsyncClient(backend=fake, retry=RetryPolicy(max_attempts=1))
    with run_in_thread(create_app(client, api_key=KEY, close_client=True)) as url:
        yield f"{url}/v1", fake


def embed(spec: str, url: str, mode: str, texts: list[str]) -> EmbeddingResponse:
    """One ``embed()`` of ``texts`` in batches of two (so two HTTP requests, which the async
    client sends concurrently), through the sync or the async client."""
    options: dict[str, Any] = {
        "base_url": url,
        "retry": RetryPolicy(max_attempts=1),
        **SPECS[spec],
    }
    if mode == "sync":
        with Client(f"{spec}:fake-model", **options) as client:
            return client.embed(texts, batch_size=2)

    async def go() -> EmbeddingResponse:
        async with AsyncClient(f"{spec}:fake-model", **options) as client:
            return await client.embed(texts, batch_size=2)

    return asyncio.run(go())


def close_to(got: list[list[float]], want: list[list[float]]) -> bool:
    # The openai SDK asks for base64 float32: the served vectors come back float32-rounded.
    return len(got) == len(want) and all(
        len(g) == len(w)
        and all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(g, w, strict=True))
        for g, w in zip(got, want, strict=True)
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("spec", list(SPECS))
def test_embed_records_then_replays_offline(
    served: tuple[str, FakeBackend],
    tmp_path: Path,
    spec: str,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, fake = served
    path = tmp_path / "embed.json"

    with cassette(path) as recorder:
        recorded = embed(spec, url, mode, TEXTS)
    assert recorder.recording and path.exists()
    # What the server really computed: one distinct vector per text, in input order.
    assert close_to(recorded.vectors, [fake_vector(t, DIMENSIONS) for t in TEXTS])
    assert [r.inputs for r in fake.embed_requests] in (
        [TEXTS[:2], TEXTS[2:]],
        [TEXTS[2:], TEXTS[:2]],  # the async client sends both batches at once
    )
    assert KEY.encode() not in path.read_bytes()

    # Replay with every socket connection refused (sync and asyncio both end in
    # socket.connect); the server stays up, so its request count shows nothing reached it.
    tried: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        tried.append(address)
        raise OSError("network blocked by the test")

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        with cassette(path, record="none") as player:
            replayed = embed(spec, url, mode, TEXTS)
        assert player.all_played and player.play_count == 2
        # A text nobody recorded: a typed miss naming it, and still no connection.
        with cassette(path, record="none"), pytest.raises(CassetteMiss) as info:
            embed(spec, url, mode, ["a text nobody recorded", "another one"])
    assert tried == []
    assert replayed.vectors == recorded.vectors  # the same floats, not just close ones
    assert replayed.usage == recorded.usage
    assert len(fake.embed_requests) == 2  # the replays never reached the server
    assert "a text nobody recorded" in str(info.value) and str(path) in str(info.value)
