"""Parts of the public surface users call that no test exercised (issue 15, item 6):
``Stream.text_stream``, ``AsyncStream.text_stream``, ``AsyncStream.get_response`` (and
``Stream.response`` reading the rest of an open stream), the batch progress counter and a third-party backend found through
the ``llmkit.backends`` entry-point group."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

from llmkit import AsyncClient, Client
from llmkit import registry as _registry
from llmkit.testing import FakeBackend, Reply

CHUNKS = ["Once ", "upon ", "a time."]


def _fake() -> FakeBackend:
    return FakeBackend([Reply("".join(CHUNKS), chunks=CHUNKS)])


def test_text_stream_yields_the_text_deltas_only() -> None:
    with Client(backend=_fake()) as client, client.stream("q") as stream:
        texts = list(stream.text_stream())
        assert texts == CHUNKS  # no "" for the usage and finish events
        assert stream.response.text == "".join(CHUNKS)


def test_async_text_stream_yields_the_text_deltas_only() -> None:
    async def go() -> list[str]:
        async with AsyncClient(backend=_fake()) as client, client.stream("q") as stream:
            texts = [t async for t in stream.text_stream()]
            assert stream.response.text == "".join(CHUNKS)
            return texts

    assert asyncio.run(go()) == CHUNKS


def test_response_reads_the_rest_of_an_open_stream() -> None:
    with Client(backend=_fake()) as client, client.stream("q") as stream:
        first = next(iter(stream))
        assert first.text == "Once "
        response = stream.response  # the sync stream's property reads the rest first
        assert response.text == "".join(CHUNKS) and response.finish_reason == "stop"
        assert list(stream) == []  # nothing left


def test_async_get_response_reads_the_rest_of_an_open_stream() -> None:
    async def go() -> None:
        async with AsyncClient(backend=_fake()) as client:
            async with client.stream("q") as stream:
                response = await stream.get_response()
                assert response.text == "".join(CHUNKS)
                assert stream.response.text == response.text
            async with client.stream("q") as stream:
                await stream.__anext__()
                assert (await stream.get_response()).text == "".join(CHUNKS)

    asyncio.run(go())


def test_batch_progress_counts_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeBackend(["a", "b", "c"])
    with Client(backend=fake) as client:
        assert [r.text for r in client.batch(["1", "2", "3"], concurrency=1, progress=True)] == [
            "a",
            "b",
            "c",
        ]
    err = capsys.readouterr().err
    assert err == "".join(f"\rllmkit batch: {i}/3" for i in (1, 2, 3)) + "\n"


def test_async_batch_progress_and_silence_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    async def go(progress: bool | None) -> None:
        async with AsyncClient(backend=FakeBackend(["a", "b"])) as client:
            await client.batch(["1", "2"], concurrency=1, progress=progress)

    asyncio.run(go(True))
    assert capsys.readouterr().err == "\rllmkit batch: 1/2\rllmkit batch: 2/2\n"
    asyncio.run(go(None))  # stderr is not a terminal under pytest: no counter
    assert capsys.readouterr().err == ""


@pytest.fixture
def third_party_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed distribution (a dist-info folder on sys.path) that declares a backend
    in the ``llmkit.backends`` entry-point group, as ``pip install`` would leave it."""
    (tmp_path / "llmkit_thirdparty_echo.py").write_text(
        textwrap.dedent(
            """
            from llmkit.testing import FakeBackend

            class ShoutBackend(FakeBackend):
                name = "shout"

                def __init__(self, model, **options):
                    super().__init__(model=model)

                def chat(self, request):
                    response = super().chat(request)
                    response.message.content = response.text.upper()
                    return response
            """
        )
    )
    info = tmp_path / "llmkit_thirdparty_echo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: llmkit-thirdparty-echo\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[llmkit.backends]\nshout = llmkit_thirdparty_echo:ShoutBackend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    # The registry scans entry points once per process; start this test from a clean scan.
    monkeypatch.setattr(_registry, "_entry_points_loaded", False)
    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.delitem(sys.modules, "llmkit_thirdparty_echo", raising=False)
    return "shout"


def test_a_third_party_backend_is_found_through_its_entry_point(
    third_party_distribution: str,
) -> None:
    assert third_party_distribution in _registry.available_backends()
    with Client("shout:m") as client:
        assert type(client.backend).__name__ == "ShoutBackend"
        assert client.chat("hello").text == "HELLO"
