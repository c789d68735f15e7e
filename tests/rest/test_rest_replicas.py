"""Replicas: client-side balancing, cool-down after failures, failover (for streams only
before the first event), and the health() helper -- sync and async."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmkit import errors
from llmkit.backends.rest.replicas import ReplicaSet, split_base_url

from .helpers import Mode, chat_request, streamed, texts

URLS = ["http://r1.test/v1", "http://r2.test/v1", "http://r3.test/v1"]


def reply(text: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "x",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        },
    )


def stream_reply(text: str, **kwargs: Any) -> httpx.Response:
    data = {
        "id": "x",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}],
    }
    return streamed(b"data: " + json.dumps(data).encode() + b"\n\ndata: [DONE]\n\n", **kwargs)


def routes(respx_mock: Any, n: int = 3) -> list[Any]:
    return [respx_mock.post(f"http://r{i}.test/v1/chat/completions") for i in range(1, n + 1)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_split_base_url() -> None:
    assert split_base_url("http://h:8000") == ("http://h:8000", "http://h:8000/v1")
    assert split_base_url("http://h:8000/v1/") == ("http://h:8000", "http://h:8000/v1")
    assert split_base_url("https://gw/team/v2") == ("https://gw/team", "https://gw/team/v2")
    assert split_base_url("https://gw/v1beta") == ("https://gw", "https://gw/v1beta")
    assert split_base_url("http://v1") == ("http://v1", "http://v1/v1")  # a host, not a version


def test_replica_set_round_robin_and_cooldown() -> None:
    clock = Clock()
    rs = ReplicaSet(URLS, cooldown=10, clock=clock)
    picked = []
    for _ in range(4):
        r = rs.acquire()
        assert r is not None
        picked.append(r.root)
        rs.release(r)
    assert picked == ["http://r1.test", "http://r2.test", "http://r3.test", "http://r1.test"]
    r2 = rs.replicas[1]
    rs.failed(r2)
    seen = []
    for _ in range(4):
        r = rs.acquire()
        assert r is not None
        seen.append(r.root)
        rs.release(r)
    assert "http://r2.test" not in seen
    clock.now += 10.5  # the cool-down is over
    seen = []
    for _ in range(3):
        r = rs.acquire()
        assert r is not None
        seen.append(r.root)
        rs.release(r)
    assert sorted(seen) == ["http://r1.test", "http://r2.test", "http://r3.test"]


def test_replica_set_all_cooling_tries_soonest() -> None:
    clock = Clock()
    rs = ReplicaSet(URLS[:2], cooldown=10, clock=clock)
    rs.failed(rs.replicas[1])
    clock.now += 1
    rs.failed(rs.replicas[0])
    r = rs.acquire()
    assert r is rs.replicas[1]  # recovers first
    assert rs.acquire(exclude=rs.replicas) is None


def test_replica_set_least_in_flight() -> None:
    rs = ReplicaSet(URLS, balance="least_in_flight")
    a = rs.acquire()
    b = rs.acquire()
    assert a is not None and b is not None and a is not b
    rs.release(a)
    c = rs.acquire()  # r1 is free again, r2 busy, r3 free: fewest in flight wins
    assert c is not None and c is not b
    assert b.in_flight == 1


async def test_round_robin(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    for i, route in enumerate(routes(respx_mock), start=1):
        route.mock(return_value=reply(f"r{i}"))
    backend = make_backend(base_url=URLS)
    answers = [(await mode.chat(backend, chat_request())).text for _ in range(6)]
    assert answers == ["r1", "r2", "r3", "r1", "r2", "r3"]


async def test_least_in_flight_avoids_busy_replica(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    r1, r2 = routes(respx_mock, 2)
    r1.mock(side_effect=lambda req: stream_reply("one"))
    r2.mock(side_effect=lambda req: reply("two"))
    backend = make_backend(base_url=URLS[:2], balance="least_in_flight")
    # Hold a stream open on r1; the next calls must all go to r2.
    if mode.name == "sync":
        held: Any = backend.stream(chat_request())
        first = next(held)
    else:
        held = backend.astream(chat_request())
        first = await held.__anext__()
    assert first.text == "one"
    assert [r.in_flight for r in backend.replicas] == [1, 0]
    for _ in range(3):
        assert (await mode.chat(backend, chat_request())).text == "two"
    if mode.name == "sync":
        held.close()
    else:
        await held.aclose()
    assert [r.in_flight for r in backend.replicas] == [0, 0]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.RemoteProtocolError("server disconnected"),
        httpx.Response(502, text="Bad Gateway"),
        httpx.Response(503, json={"detail": "overloaded"}),
    ],
    ids=["connect", "connect-timeout", "disconnect", "502", "503"],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_failover_then_cooldown(
    failure: Any, streaming: bool, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    r1, r2 = routes(respx_mock, 2)
    if isinstance(failure, Exception):
        r1.mock(side_effect=failure)
    else:
        r1.mock(return_value=failure)
    r2.mock(side_effect=lambda req: stream_reply("from r2") if streaming else reply("from r2"))
    clock = Clock()
    backend = make_backend(base_url=URLS[:2], cooldown=30)
    backend._replicas.clock = clock

    async def call() -> str:
        if streaming:
            return texts(await mode.stream(backend, chat_request()))
        return (await mode.chat(backend, chat_request())).text

    assert await call() == "from r2"
    assert r1.call_count == 1 and r2.call_count == 1
    assert backend.replicas[0].failures == 1
    # r1 is cooling down: round-robin would pick it next, but it is skipped.
    assert await call() == "from r2"
    assert await call() == "from r2"
    assert r1.call_count == 1
    clock.now += 31  # cool-down over: r1 is tried again (and fails over again)
    assert await call() == "from r2"
    assert r1.call_count == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(400, json={"detail": "bad"}), httpx.Response(429), httpx.ReadTimeout("slow")],
    ids=["400", "429", "read-timeout"],
)
async def test_no_failover_for_request_errors(
    failure: Any, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    r1, r2 = routes(respx_mock, 2)
    if isinstance(failure, Exception):
        r1.mock(side_effect=failure)
    else:
        r1.mock(return_value=failure)
    r2.mock(return_value=reply("r2"))
    backend = make_backend(base_url=URLS[:2])
    with pytest.raises(errors.ProviderError):
        await mode.chat(backend, chat_request())
    assert not r2.called
    assert backend.replicas[0].failures == 0


async def test_all_replicas_fail(
    mode: Mode, make_backend: Any, respx_mock: Any, caplog: Any
) -> None:
    for route in routes(respx_mock):
        route.mock(side_effect=httpx.ConnectError("connection refused"))
    backend = make_backend(base_url=URLS)
    with pytest.raises(errors.ConnectionError, match="replica http://r") as info:
        await mode.chat(backend, chat_request())
    assert info.value.retryable  # the client's retry policy takes it from here
    assert [r.failures for r in backend.replicas] == [1, 1, 1]
    assert sum("cooling down" in rec.getMessage() for rec in caplog.records) == 3


async def test_failover_disabled(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    r1, r2 = routes(respx_mock, 2)
    r1.mock(side_effect=httpx.ConnectError("refused"))
    r2.mock(return_value=reply("r2"))
    backend = make_backend(base_url=URLS[:2], failover=False)
    with pytest.raises(errors.ConnectionError):
        await mode.chat(backend, chat_request())
    assert not r2.called
    assert (await mode.chat(backend, chat_request())).text == "r2"  # r1 is cooling down


async def test_stream_failover_before_first_event(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    r1, r2 = routes(respx_mock, 2)
    r1.mock(return_value=stream_reply("never", error=httpx.ReadError("reset"), fail_at=0))
    r2.mock(return_value=stream_reply("from r2"))
    backend = make_backend(base_url=URLS[:2])
    assert texts(await mode.stream(backend, chat_request())) == "from r2"


async def test_no_stream_failover_after_first_event(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    r1, r2 = routes(respx_mock, 2)
    first = b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"par"}}]}\n\n'
    r1.mock(return_value=streamed([first, first], error=httpx.ReadError("reset"), fail_at=1))
    r2.mock(return_value=stream_reply("from r2"))
    backend = make_backend(base_url=URLS[:2])
    seen: list[Any] = []
    with pytest.raises(errors.ConnectionError):
        if mode.name == "sync":
            for event in backend.stream(chat_request()):
                seen.append(event)
        else:
            async for event in backend.astream(chat_request()):
                seen.append(event)
    assert texts(seen) == "par"
    assert not r2.called
    assert backend.replicas[0].failures == 1  # still counted against the replica


async def test_health(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    urls = ["http://h1.test/v1", "http://h2.test", "http://h3.test/v1", "http://h4.test/v1"]
    respx_mock.get("http://h1.test/health").mock(return_value=httpx.Response(200))
    respx_mock.get("http://h2.test/health").mock(return_value=httpx.Response(404))
    respx_mock.get("http://h2.test/v1/models").mock(
        return_value=httpx.Response(200, json={"data": []})
    )
    respx_mock.get("http://h3.test/health").mock(side_effect=httpx.ConnectError("refused"))
    respx_mock.get("http://h4.test/health").mock(
        return_value=httpx.Response(503, json={"status": "loading model"})
    )
    backend = make_backend(base_url=urls)
    report = await mode.health(backend)
    assert [h.url for h in report] == [
        "http://h1.test",
        "http://h2.test",
        "http://h3.test",
        "http://h4.test",
    ]
    assert [h.healthy for h in report] == [True, True, False, False]
    assert [h.endpoint for h in report] == ["/health", "/v1/models", None, "/health"]
    assert report[0].status_code == 200 and report[0].latency_s is not None
    assert "refused" in (report[2].error or "") and report[2].cooling_down
    assert report[3].status_code == 503 and report[3].cooling_down
    # A replica that is healthy again leaves its cool-down.
    respx_mock.get("http://h3.test/health").mock(return_value=httpx.Response(200))
    report = await mode.health(backend)
    assert report[2].healthy and not report[2].cooling_down


async def test_credentials_in_url_stay_out_of_reports(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    respx_mock.get("http://h1.test/health").mock(return_value=httpx.Response(200))
    backend = make_backend(base_url="http://user:s3cr3t-pass@h1.test/v1")
    report = await mode.health(backend)
    assert report[0].url == "http://h1.test" and report[0].healthy
    assert "s3cr3t" not in repr(backend)


async def test_stream_cut_short_fails_over(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    r1, r2 = routes(respx_mock, 2)
    r1.mock(return_value=streamed(b": nothing but a comment\n\n"))  # ends with no reply
    r2.mock(return_value=stream_reply("from r2"))
    backend = make_backend(base_url=URLS[:2])
    assert texts(await mode.stream(backend, chat_request())) == "from r2"
    assert backend.replicas[0].failures == 1
