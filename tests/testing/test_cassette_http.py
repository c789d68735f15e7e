"""Cassettes over real HTTP: record against the loopback fault server, stop it, replay.

Every backend that talks HTTP (rest in its three dialects, openai, azure) goes through the
real SDK / httpx / decoders on both sides; only the cassette's transport differs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos.fault_server import Fault, FaultServer

from llmkit import AsyncClient, Client, RetryPolicy, Timeout
from llmkit.errors import LLMError
from llmkit.testing import CassetteError, CassetteMiss, cassette, instant_retry

KEY = "sk-live-7c1d9e2f4a6b8c0d"


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        yield srv


def _dump(value: Any) -> Any:
    return value.model_dump(exclude={"raw", "created", "id"}) if value is not None else None


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        return ("ok", call())
    except LLMError as exc:  # the error's class and what it says are part of the result
        return ("error", type(exc).__name__, getattr(exc, "status_code", None), exc.message)


def run_sync(spec: str, options: dict[str, Any]) -> list[Any]:
    """One chat, one stream, one completion (where the backend has it): every result."""
    results: list[Any] = []
    options = {"retry": instant_retry(RetryPolicy(max_attempts=3)), **options}
    with Client(spec, **options) as client:
        r = _outcome(lambda: client.chat("hello there", max_tokens=20))
        results.append(r if r[0] == "error" else ("ok", _dump(r[1])))

        def stream() -> Any:
            with client.stream("tell a story") as s:
                events = [_dump(e) for e in s]
            return events, _dump(s.response)

        results.append(_outcome(stream))
        if client.backend.capabilities.completion:
            r = _outcome(lambda: client.complete("Once upon", max_tokens=5))
            results.append(r if r[0] == "error" else ("ok", _dump(r[1])))
    return results


def run_async(spec: str, options: dict[str, Any]) -> list[Any]:
    async def go() -> list[Any]:
        results: list[Any] = []
        kwargs = {"retry": instant_retry(RetryPolicy(max_attempts=3)), **options}
        async with AsyncClient(spec, **kwargs) as client:
            try:
                results.append(("ok", _dump(await client.chat("hello there", max_tokens=20))))
            except LLMError as exc:
                results.append(("error", type(exc).__name__, exc.message))
            try:
                async with client.stream("tell a story") as s:
                    events = [_dump(e) async for e in s]
                results.append(("ok", events, _dump(s.response)))
            except LLMError as exc:
                results.append(("error", type(exc).__name__, exc.message))
            if client.backend.capabilities.completion:
                results.append(("ok", _dump(await client.complete("Once upon", max_tokens=5))))
        return results

    return asyncio.run(go())


BACKENDS = {
    "rest-openai": ("rest:m", {"api_key": KEY}),
    "rest-tgi": ("rest:m", {"dialect": "tgi"}),
    "rest-ollama": ("rest:m", {"dialect": "ollama"}),
    "openai": ("openai:m", {"api_key": KEY}),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_record_then_replay_with_the_server_down(
    server: FaultServer, tmp_path: Path, backend: str, mode: str
) -> None:
    spec, options = BACKENDS[backend]
    # Each request takes the next fault: the first chat meets a 429 (and is retried).
    url = server.scenario([Fault.error(429, retry_after=0), Fault.ok(), Fault.ok()])
    options = {**options, "base_url": url}
    run = run_sync if mode == "sync" else run_async
    path = tmp_path / "c.json"

    with cassette(path) as recorder:
        recorded = run(spec, options)
    assert recorder.recording and path.exists()
    sent = len(server.requests())
    assert sent >= 3  # the 429, its retry, the stream (and the completion)
    server.stop()

    with cassette(path) as player:
        replayed = run(spec, options)
    assert not player.recording
    assert replayed == recorded
    assert player.all_played and player.play_count == sent
    assert recorded[0][0] == "ok"  # the 429 was retried on replay exactly as when recorded
    assert KEY.encode() not in path.read_bytes()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_errors_replay_as_the_same_llmkit_errors(
    server: FaultServer, tmp_path: Path, mode: str
) -> None:
    url = server.scenario([Fault.error(500), Fault.drop(after=2)])
    options = {"base_url": url, "retry": RetryPolicy(max_attempts=1)}
    path = tmp_path / "errors.json"
    run = run_sync if mode == "sync" else run_async

    with cassette(path):
        recorded = run("rest:m", options)
    server.stop()
    with cassette(path):
        replayed = run("rest:m", options)

    assert replayed == recorded
    assert recorded[0][:2] == ("error", "ServerError")
    assert recorded[1][:2] == ("error", "ConnectionError")  # the stream broke off mid-body
    stored = json.loads(path.read_text())["interactions"]
    assert stored[0]["response"]["status"] == 500
    assert len(stored[1]["response"]["chunks"]) >= 1 and "error" in stored[1]["response"]


def test_azure_key_and_deployment_url(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario().removesuffix("/v1")
    options = {"endpoint": url, "api_key": KEY, "api_version": "2024-10-21"}
    path = tmp_path / "azure.json"
    with cassette(path):
        recorded = run_sync("azure:dep", options)
    server.stop()
    with cassette(path):
        assert run_sync("azure:dep", options) == recorded
    text = path.read_text()
    assert KEY not in text
    request = json.loads(text)["interactions"][0]["request"]
    assert request["headers"]["api-key"] == "<redacted>"
    assert "api-version=2024-10-21" in request["url"]


def test_stream_bodies_are_kept_as_chunks_in_order(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "stream.json"
    with (
        cassette(path),
        Client("rest:m", base_url=url, dialect="ollama") as client,
        client.stream("one two three") as s,
    ):
        live = [e.text for e in s]
    entry = json.loads(path.read_text())["interactions"][0]["response"]
    assert entry["headers"]["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for c in entry["chunks"] for line in c.splitlines() if line]
    assert [x["message"]["content"] for x in lines if not x.get("done")] == [t for t in live if t]
    assert len(entry["chunk_times"]) == len(entry["chunks"])


def test_a_miss_raises_and_never_connects(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "miss.json"
    with cassette(path), Client("rest:m", base_url=url) as client:
        client.chat("recorded question")
    before = server.total_connections
    for spec, options in (("rest:m", {}), ("openai:m", {"api_key": KEY})):
        with (
            cassette(path, record="none"),
            Client(spec, base_url=url, retry=instant_retry(), **options) as client,
            pytest.raises(CassetteMiss) as info,
        ):
            client.chat("a question nobody recorded")
    # The server is up and listening: a connection attempt would have been counted.
    assert server.total_connections == before
    message = str(info.value)
    assert str(path) in message and "a question nobody recorded" in message
    assert "recorded question" in message  # the unplayed recording, to compare with
    assert info.value.request["json"]["messages"][0]["content"] == "a question nobody recorded"


def test_openai_2x_wrapping_keeps_the_miss() -> None:
    """openai 2.x wraps any exception its transport raises in APIConnectionError (3.x lets
    ours through): the backend unwraps an llmkit error, so a miss is never retried as a
    connection failure."""
    import openai

    from llmkit.backends.openai import OpenAIBackend

    miss = CassetteMiss("no recording", path=Path("c.json"), request={})
    wrapped = openai.APIConnectionError(request=httpx.Request("POST", "http://x/v1"))
    wrapped.__cause__ = miss
    assert OpenAIBackend("m", api_key=KEY)._map_error(wrapped, "m") is miss


def test_async_miss_raises_cassette_miss(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "amiss.json"
    with cassette(path), Client("rest:m", base_url=url) as client:
        client.chat("recorded")

    async def go() -> None:
        async with AsyncClient("openai:m", base_url=url, api_key=KEY) as client:
            await client.chat("not recorded")

    before = server.total_connections
    with cassette(path), pytest.raises(CassetteMiss):
        asyncio.run(go())
    assert server.total_connections == before


def test_secrets_never_reach_the_file(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSERVICE_TOKEN", "tok-9f8e7d6c5b4a")
    url = server.scenario()
    path = tmp_path / "secrets.json"
    configured = "project-pw-31415926"

    def calls() -> list[str]:
        tenant = {"x-tenant": "t42"}  # too short to mask by value: masked by its name
        with Client("rest:m", base_url=url, api_key=KEY, headers=tenant) as client:
            # The fault server echoes the prompt: secrets come back in the reply body too.
            first = client.chat(f"token tok-9f8e7d6c5b4a and {configured} and {KEY}").text
        query = {"key": "qk-123456789"}  # a key in the query string, Google-style
        with Client("openai:m", base_url=url, api_key=KEY, default_query=query) as client:
            second = client.chat("plain").text
        return [first, second]

    with cassette(path, secrets=[configured], filter_headers=["X-Tenant"]):
        recorded = calls()
    data = path.read_bytes()
    headers = json.loads(data)["interactions"][0]["request"]["headers"]
    assert headers["x-tenant"] == headers["authorization"] == "<redacted>"
    for secret in (KEY, "tok-9f8e7d6c5b4a", configured, "qk-123456789"):
        assert secret.encode() not in data, secret
    assert recorded[0].count(KEY) == 1  # the live answer was untouched
    with cassette(path, secrets=[configured], record="none"):
        assert calls()[1] == recorded[1]  # masked requests still match on replay


def test_record_modes(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "modes.json"
    with pytest.raises(CassetteError, match="does not exist"), cassette(path, record="none"):
        pass
    with pytest.raises(CassetteError, match="unknown record mode"):
        cassette(path, record="sometimes")  # type: ignore[arg-type]

    def chat(text: str) -> str:
        with Client("rest:m", base_url=url) as client:
            return client.chat(text).text

    with cassette(path):
        chat("first")
    with cassette(path, record="new_episodes") as c:
        assert chat("first") == "echo: first"  # replayed
        assert chat("second") == "echo: second"  # recorded
        assert c.play_count == 1 and len(c.new_interactions) == 1
    assert len(json.loads(path.read_text())["interactions"]) == 2
    sent = len(server.requests())
    with cassette(path, record="all"):
        chat("third")
    assert len(server.requests()) == sent + 1
    assert len(json.loads(path.read_text())["interactions"]) == 1  # re-recorded from scratch


def test_each_recording_plays_once_unless_repeats_are_allowed(
    server: FaultServer, tmp_path: Path
) -> None:
    url = server.scenario()
    path = tmp_path / "once.json"
    with cassette(path), Client("rest:m", base_url=url) as client:
        client.chat("same")
    server.stop()
    with cassette(path), Client("rest:m", base_url=url) as client:
        client.chat("same")
        with pytest.raises(CassetteMiss, match="1 of 1 recorded interactions already played"):
            client.chat("same")
    with cassette(path, allow_repeats=True), Client("rest:m", base_url=url) as client:
        assert client.chat("same").text == client.chat("same").text == "echo: same"


def test_ignore_fields_and_match_hook(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "match.json"
    with cassette(path), Client("rest:m", base_url=url) as client:
        client.chat("hi", user="alice")
    server.stop()
    with (
        cassette(path, record="none"),
        Client("rest:m", base_url=url) as client,
        pytest.raises(CassetteMiss),
    ):
        client.chat("hi", user="bob")
    with cassette(path, ignore_fields=["user"]), Client("rest:m", base_url=url) as client:
        assert client.chat("hi", user="bob").text == "echo: hi"

    def same_prompt(recorded: dict[str, Any], request: dict[str, Any]) -> bool:
        return recorded["json"]["messages"] == request["json"]["messages"]

    other = "http://127.0.0.1:9/other/v1"  # another host and path: only the hook decides
    with cassette(path, match=same_prompt), Client("rest:m", base_url=other) as client:
        assert client.chat("hi", temperature=0.5).text == "echo: hi"


def spy_on_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every ``time.sleep`` and ``asyncio.sleep`` (they still sleep): a test checks
    the waits a replay chose, which a loaded machine cannot change, not its wall time."""
    slept: list[float] = []
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        real_sleep(seconds)

    async def async_sleep(seconds: float, *args: Any) -> Any:
        slept.append(seconds)
        return await real_async_sleep(seconds, *args)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(asyncio, "sleep", async_sleep)
    return slept


def test_realtime_replay_keeps_the_recorded_pace(
    server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.scenario([Fault.drip(0.1)])
    path = tmp_path / "pace.json"
    with cassette(path), Client("rest:m", base_url=url) as client, client.stream("a b c") as s:
        live = [e.text for e in s]
    server.stop()
    for realtime in (False, True):
        with monkeypatch.context() as patch:
            slept = spy_on_sleeps(patch)
            with (
                cassette(path, realtime=realtime),
                Client("rest:m", base_url=url) as client,
                client.stream("a b c") as s,
            ):
                assert [e.text for e in s] == live
        waits = [w for w in slept if w > 0]
        if realtime:  # the recorded pace: a drip of 0.1 s before each of the events
            assert sum(waits) >= 0.25, waits
        else:
            assert waits == []


def test_decorator_sync_and_async(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    path = tmp_path / "deco.json"

    @cassette(path)
    def sync_call() -> str:
        with Client("rest:m", base_url=url) as client:
            return client.chat("deco").text

    @cassette(tmp_path / "adeco.json")
    async def async_call() -> str:
        async with AsyncClient("rest:m", base_url=url) as client:
            return (await client.chat("adeco")).text

    assert sync_call() == "echo: deco"
    assert asyncio.run(async_call()) == "echo: adeco"
    server.stop()
    assert sync_call() == "echo: deco"  # the same decorated function, now replaying
    assert asyncio.run(async_call()) == "echo: adeco"


def test_clients_are_httpx_own_outside_a_cassette(server: FaultServer, tmp_path: Path) -> None:
    """The seam costs nothing when unused: no wrapper in the request path."""
    url = server.scenario()
    with Client("rest:m", base_url=url) as client:
        client.chat("before")
        http = client.backend._sync_client()  # type: ignore[attr-defined]
        assert type(http._transport) is httpx.HTTPTransport
        with cassette(tmp_path / "x.json"):
            assert type(http._transport).__name__ == "CassetteTransport"
            client.chat("during")  # a client built before the cassette is covered
        assert type(http._transport) is httpx.HTTPTransport
    assert len(json.loads((tmp_path / "x.json").read_text())["interactions"]) == 1


def test_nested_cassettes_restore_the_outer_one(server: FaultServer, tmp_path: Path) -> None:
    url = server.scenario()
    outer, inner = tmp_path / "outer.json", tmp_path / "inner.json"
    with cassette(outer), Client("rest:m", base_url=url) as client:
        client.chat("outer 1")
        with cassette(inner):
            client.chat("inner")
        client.chat("outer 2")

    def asked(path: Path) -> list[str]:
        stored = json.loads(path.read_text())["interactions"]
        return [i["request"]["json"]["messages"][0]["content"] for i in stored]

    assert asked(outer) == ["outer 1", "outer 2"]
    assert asked(inner) == ["inner"]
    with pytest.raises(CassetteError, match="already active"):
        c = cassette(outer)
        with c, c:
            pass


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stalled_stream_replays_as_a_timeout(
    server: FaultServer, tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync client's budget breaks the read; the async client cancels it. Either way
    the replay raises the same TimeoutError after the same events, without the wait."""
    url = server.scenario([Fault.stall_mid(after=2, seconds=5), Fault.stall(seconds=5)])
    options = {
        "base_url": url,
        "retry": RetryPolicy(max_attempts=1),
        "timeout": Timeout(first_token=0.5, idle=0.3),
    }
    path = tmp_path / "stall.json"

    def run() -> list[Any]:
        out: list[Any] = []
        if mode == "sync":
            with Client("rest:m", **options) as client:
                for prompt in ("slow story", "no answer"):
                    seen: list[str] = []
                    try:
                        with client.stream(prompt) as s:
                            seen.extend(e.text for e in s)
                    except LLMError as exc:
                        out.append((seen, type(exc).__name__))
            return out

        async def go() -> None:
            async with AsyncClient("rest:m", **options) as client:
                for prompt in ("slow story", "no answer"):
                    seen: list[str] = []
                    try:
                        async with client.stream(prompt) as s:
                            async for e in s:
                                seen.append(e.text)
                    except LLMError as exc:
                        out.append((seen, type(exc).__name__))

        asyncio.run(go())
        return out

    with cassette(path):
        recorded = run()
    server.stop()
    # No real waiting: the replay sleeps for none of the recorded waits (a realtime replay
    # would sleep the chunks' pace). Every sleep is seen, not timed.
    with monkeypatch.context() as patch:
        slept = spy_on_sleeps(patch)
        with cassette(path):
            replayed = run()
    assert [s for s in slept if s > 0] == []
    assert [r[1] for r in recorded] == ["TimeoutError", "TimeoutError"]
    assert recorded[0][0]  # some events arrived before the stall
    assert replayed == recorded
