"""Cassettes for in-process backends (``hf:`` and any other listed in ``backends=``): calls
recorded at the backend level, replayed without constructing the backend at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llmkit import AsyncClient, Client, RateLimitError
from llmkit import registry as _registry
from llmkit.backends.base import Capabilities
from llmkit.errors import LLMError
from llmkit.testing import CassetteMiss, FakeBackend, Reply, cassette, instant_retry


class Counted(FakeBackend):
    """A scripted in-process backend that counts how often it is constructed."""

    name: ClassVar[str] = "counted"
    built: ClassVar[int] = 0

    def __init__(self, model: str, **options: Any) -> None:
        type(self).built += 1
        super().__init__(
            [
                RateLimitError("slow down", retry_after=0),
                Reply("hello world", usage={"prompt_tokens": 2, "completion_tokens": 2}),
                Reply("streamed answer", chunks=["streamed ", "answer"]),
                Reply("continued"),
                Reply("boom", fail_after=1, error=RateLimitError("mid-stream")),
            ],
            model=model,
            capabilities=Capabilities(streaming=True, completion=True, tools=True),
            **options,
        )


@pytest.fixture
def counted() -> Iterator[type[Counted]]:
    _registry.register_backend("counted", Counted)
    Counted.built = 0
    yield Counted
    _registry._registered.pop("counted", None)


def _dump(value: Any) -> Any:
    # A stream's response id is made up by the client when the backend sends none.
    return value.model_dump(exclude={"raw", "created", "id"})


def run_sync() -> list[Any]:
    out: list[Any] = []
    with Client("counted:m", retry=instant_retry()) as client:
        out.append(_dump(client.chat("hi")))  # a 429 first, retried
        with client.stream("story") as s:
            out.append([_dump(e) for e in s])
        out.append(_dump(s.response))
        out.append(_dump(client.complete("Once")))
        try:
            with client.stream("break") as s:
                out.append([e.text for e in s])
        except LLMError as exc:
            out.append((type(exc).__name__, exc.message))
    return out


def run_async() -> list[Any]:
    async def go() -> list[Any]:
        out: list[Any] = []
        async with AsyncClient("counted:m", retry=instant_retry()) as client:
            out.append(_dump(await client.chat("hi")))
            async with client.stream("story") as s:
                out.append([_dump(e) async for e in s])
            out.append(_dump(s.response))
            out.append(_dump(await client.complete("Once")))
            try:
                async with client.stream("break") as s:
                    out.append([e.text async for e in s])
            except LLMError as exc:
                out.append((type(exc).__name__, exc.message))
        return out

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_in_process_calls_replay_without_constructing_the_backend(
    counted: type[Counted], tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "inproc.json"
    run = run_sync if mode == "sync" else run_async
    with cassette(path, backends=["counted"]):
        recorded = run()
    assert counted.built == 1
    with cassette(path, backends=["counted"]) as player:
        replayed = run()
    assert counted.built == 1  # never constructed on replay
    assert replayed == recorded
    assert player.all_played
    assert recorded[0]["message"]["content"] == "hello world"
    assert recorded[-1] == ("RateLimitError", "mid-stream")
    data = json.loads(path.read_text())
    assert data["backends"]["counted:m"]["capabilities"]["completion"] is True
    calls = [i["request"]["call"] for i in data["interactions"]]
    assert calls == ["chat", "chat", "stream", "complete", "stream"]
    assert data["interactions"][0]["error"]["type"] == "RateLimitError"


def test_in_process_miss_and_unknown_backend(counted: type[Counted], tmp_path: Path) -> None:
    path = tmp_path / "inproc.json"
    with cassette(path, backends=["counted"]), Client("counted:m", retry=instant_retry()) as c:
        c.chat("hi")
    with cassette(path, backends=["counted"], record="none"):
        with pytest.raises(CassetteMiss, match="has no recording of backend 'counted:other'"):
            Client("counted:other")
        with Client("counted:m") as client, pytest.raises(CassetteMiss, match="something else"):
            client.chat("something else")
    assert counted.built == 1


def test_backends_not_listed_are_left_alone(counted: type[Counted], tmp_path: Path) -> None:
    with cassette(tmp_path / "x.json"), Client("counted:m", retry=instant_retry()) as client:
        assert isinstance(client.backend, Counted)
    assert not (tmp_path / "x.json").exists()  # nothing went through a cassette


def test_new_episodes_builds_the_backend_only_for_a_miss(
    counted: type[Counted], tmp_path: Path
) -> None:
    path = tmp_path / "episodes.json"
    with cassette(path, backends=["counted"]), Client("counted:m", retry=instant_retry()) as c:
        first = c.chat("hi").text  # the script's 429, retried: two recordings
    assert counted.built == 1
    with (
        cassette(path, backends=["counted"], record="new_episodes") as episodes,
        Client("counted:m", retry=instant_retry()) as client,
    ):
        assert client.chat("hi").text == first  # replayed: nothing built
        assert counted.built == 1
        client.complete("Once")  # not in the file: the real backend is built now
        assert counted.built == 2
    # The new backend's script starts with its 429 again: two new recordings.
    assert episodes.play_count == 2 and len(episodes.new_interactions) == 2
    calls = [i["request"]["call"] for i in json.loads(path.read_text())["interactions"]]
    assert calls == ["chat", "chat", "complete", "complete"]
