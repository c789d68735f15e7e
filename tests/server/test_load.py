"""Load and lifecycle: backpressure (429 + Retry-After), the queue, client disconnects that
stop generation, graceful shutdown, the access log."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest

from llmkit import AsyncClient, ChatResponse, Message, RetryPolicy
from llmkit.server import create_app, run_in_thread
from llmkit.testing import FakeBackend, Reply

from .conftest import API_KEY, ServeFactory, wait_for

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
LONG = " ".join(f"w{i}" for i in range(200))

# A generation that only a stop can end early: 200 chunks 0.2 s apart (40 s), or a first
# token 60 s away. The tests wait up to STOPPED (generous for a loaded two-core machine, far
# below those) for the server to notice the client left; they bound no call's speed.
ENDLESS_CHUNK_DELAY = 0.2
FIRST_TOKEN_NEVER = 60.0
STOPPED = 10.0


async def test_backpressure_429_with_retry_after(serve: ServeFactory) -> None:
    served = serve([Reply("slow", delay=0.4), "fast"], max_in_flight=1, max_queue=0, retry_after=3)
    async with httpx.AsyncClient(base_url=served.v1) as http:
        first = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.in_flight == 1)
        second = await http.post("/chat/completions", json=CHAT)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "3"
        error = second.json()["error"]
        assert (error["type"], error["code"]) == ("rate_limit_error", "server_busy")
        assert (await first).status_code == 200
        assert (await http.post("/chat/completions", json=CHAT)).status_code == 200
    assert len(served.fake.requests) == 2  # the refused request never reached the model
    assert served.state.limiter.in_flight == 0


async def test_open_stream_holds_its_slot(serve: ServeFactory) -> None:
    served = serve([Reply("a b c", chunk_delay=0.2), "next"], max_in_flight=1, max_queue=0)
    async with httpx.AsyncClient(base_url=served.v1) as http:
        async with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s:
            assert s.status_code == 200
            busy = await http.post("/chat/completions", json=CHAT)
            assert busy.status_code == 429
            body = (await s.aread()).decode()
        assert body.endswith("data: [DONE]\n\n")
        assert (await http.post("/chat/completions", json=CHAT)).status_code == 200


async def test_queue_waits_then_refuses(serve: ServeFactory) -> None:
    served = serve([Reply("slow", delay=0.3), "queued", "late"], max_in_flight=1, max_queue=1)
    async with httpx.AsyncClient(base_url=served.v1) as http:
        first = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.in_flight == 1)
        second = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.queued == 1)
        third = await http.post("/chat/completions", json=CHAT)
        assert third.status_code == 429
        a, b = await asyncio.gather(first, second)
    assert [a.status_code, b.status_code] == [200, 200]
    assert b.json()["choices"][0]["message"]["content"] == "queued"


async def test_queue_timeout_refuses(serve: ServeFactory) -> None:
    served = serve([Reply("slow", delay=0.6), "x"], max_in_flight=1, max_queue=4, queue_timeout=0.1)
    async with httpx.AsyncClient(base_url=served.v1) as http:
        first = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.in_flight == 1)
        waited = await http.post("/chat/completions", json=CHAT)
        assert waited.status_code == 429 and "retry-after" in waited.headers
        assert (await first).status_code == 200
    assert served.state.limiter.queued == 0


def test_client_disconnect_mid_stream_stops_generation(serve: ServeFactory) -> None:
    reply = Reply(LONG, chunk_delay=ENDLESS_CHUNK_DELAY)
    served = serve([reply, "after"], max_in_flight=1, max_queue=0)
    with (
        httpx.Client(base_url=served.v1) as http,
        http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s,
    ):
        assert next(s.iter_lines()).startswith("data: ")
    # The whole reply would take 40 s; the generation stops once we are gone.
    assert wait_for(lambda: served.fake.closed_streams == 1, timeout=STOPPED)
    assert wait_for(lambda: served.state.limiter.in_flight == 0)
    assert served.state.open_streams == set()
    # The slot is free again: the next request is served, not refused.
    assert httpx.post(f"{served.v1}/chat/completions", json=CHAT).status_code == 200
    assert len(served.fake.requests) == 2


def test_client_disconnect_mid_completion_stream_stops_generation(serve: ServeFactory) -> None:
    reply = Reply(LONG, chunk_delay=ENDLESS_CHUNK_DELAY)
    served = serve([reply, "after"], max_in_flight=1, max_queue=0)
    body = {"model": "fake-model", "prompt": "count", "stream": True}
    with (
        httpx.Client(base_url=served.v1) as http,
        http.stream("POST", "/completions", json=body) as s,
    ):
        lines = s.iter_lines()
        assert '"object":"text_completion"' in next(lines)
    # The whole reply would take 40 s; the generation stops once we are gone.
    assert wait_for(lambda: served.fake.closed_streams == 1, timeout=STOPPED)
    assert wait_for(lambda: served.state.limiter.in_flight == 0)
    assert served.state.open_streams == set()
    reply = httpx.post(f"{served.v1}/completions", json={**body, "stream": False})
    assert reply.status_code == 200 and reply.json()["choices"][0]["text"] == "after"


def test_open_completion_stream_holds_its_slot(serve: ServeFactory) -> None:
    served = serve([Reply("a b c d", chunk_delay=0.3), "x"], max_in_flight=1, max_queue=0)
    body = {"model": "fake-model", "prompt": "p", "stream": True}
    with httpx.Client(base_url=served.v1) as http, http.stream("POST", "/completions", json=body):
        busy = http.post("/completions", json={**body, "stream": False})
        assert busy.status_code == 429
    assert wait_for(lambda: served.state.limiter.in_flight == 0)


def test_sdk_closing_a_stream_stops_generation(serve: ServeFactory) -> None:
    import openai

    served = serve([Reply(LONG, chunk_delay=ENDLESS_CHUNK_DELAY)])
    with openai.OpenAI(base_url=served.v1, api_key="-", max_retries=0) as sdk:
        stream = sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
        for index, _ in enumerate(stream):
            if index == 2:
                break
        stream.close()
    assert wait_for(lambda: served.fake.closed_streams == 1, timeout=STOPPED)


def test_graceful_shutdown_finishes_then_cancels() -> None:
    fake = FakeBackend([Reply("finished", delay=0.3), Reply(LONG, chunk_delay=0.05)])
    client = AsyncClient(backend=fake, retry=RetryPolicy(max_attempts=1))
    results: dict[str, Any] = {}
    with run_in_thread(create_app(client), graceful_timeout=1) as url:

        def slow_request() -> None:
            results["slow"] = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=5)

        def endless_stream() -> None:
            chunks = 0
            try:
                with httpx.stream(
                    "POST", f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=5
                ) as s:
                    for _ in s.iter_lines():
                        chunks += 1
            except httpx.HTTPError as exc:
                results["stream_error"] = exc
            results["chunks"] = chunks

        workers = [threading.Thread(target=slow_request), threading.Thread(target=endless_stream)]
        for count, worker in enumerate(workers, start=1):
            worker.start()
            assert wait_for(lambda n=count: len(fake.requests) == n)  # type: ignore[misc]
    # Leaving the block shut the server down: the short request finished, the endless
    # stream was cancelled after the grace period and its generation stopped.
    for worker in workers:
        worker.join(timeout=5)
    assert results["slow"].status_code == 200
    assert results["slow"].json()["choices"][0]["message"]["content"] == "finished"
    assert fake.closed_streams == 1
    # Cut after the 1 s grace period, not read to its end (200 events, 10 s): the events
    # are the clock here, so a loaded machine cannot fail this.
    assert results["chunks"] < 200


def test_access_log_line_without_secrets(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(["four token reply here"], api_key=API_KEY)
    with caplog.at_level(logging.INFO, logger="llmkit.server.access"):
        headers = {"Authorization": f"Bearer {API_KEY}"}
        httpx.post(f"{served.v1}/chat/completions", json=CHAT, headers=headers)
        httpx.get(f"{served.v1}/models")
        assert wait_for(lambda: len(caplog.records) >= 2)
    lines = [r.getMessage() for r in caplog.records if r.name == "llmkit.server.access"]
    assert '"POST /v1/chat/completions" 200' in lines[0]
    assert "tokens=" in lines[0] and "tokens=-" not in lines[0]
    assert '"GET /v1/models" 401' in lines[1]
    assert all(API_KEY not in line and "Bearer" not in line for line in lines)


def test_request_id_header_is_kept_or_made(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(["ok"], api_key=API_KEY)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with caplog.at_level(logging.INFO, logger="llmkit.server.access"):
        kept = httpx.post(
            f"{served.v1}/chat/completions",
            json=CHAT,
            headers={**auth, "x-request-id": "trace-7.a"},
        )
        bad = httpx.post(
            f"{served.v1}/chat/completions", json=CHAT, headers={**auth, "x-request-id": "a b"}
        )
        refused = httpx.get(f"{served.v1}/models")  # 401 from the auth middleware
        with httpx.stream(
            "POST", f"{served.v1}/chat/completions", json={**CHAT, "stream": True}, headers=auth
        ) as streamed:
            streamed.read()
        assert wait_for(lambda: len(caplog.records) >= 4)
    assert kept.headers["x-request-id"] == "trace-7.a"
    made = [bad.headers["x-request-id"], refused.headers["x-request-id"]]
    made.append(streamed.headers["x-request-id"])
    assert all(m.startswith("req_") and len(m) == 28 for m in made) and len(set(made)) == 3
    assert refused.status_code == 401 and streamed.status_code == 200
    lines = [r.getMessage() for r in caplog.records if r.name == "llmkit.server.access"]
    assert "request_id=trace-7.a" in lines[0] and f"request_id={made[0]}" in lines[1]


def test_access_log_names_the_upstream_request_id(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = ChatResponse(message=Message(role="assistant", content="ok"), request_id="up-3")
    served = serve([upstream])
    with caplog.at_level(logging.INFO, logger="llmkit.server.access"):
        reply = httpx.post(f"{served.v1}/chat/completions", json=CHAT)
        assert wait_for(lambda: len(caplog.records) >= 1)
    line = next(r.getMessage() for r in caplog.records if r.name == "llmkit.server.access")
    assert f"request_id={reply.headers['x-request-id']} upstream_request_id=up-3" in line


def test_import_llmkit_does_not_import_the_server_stack() -> None:
    code = (
        "import sys, llmkit, llmkit.cli; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'llmkit.server') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_client_leaving_a_plain_request_frees_its_slot(serve: ServeFactory, path: str) -> None:
    served = serve([Reply("too slow", delay=FIRST_TOKEN_NEVER), "ok"], max_in_flight=1, max_queue=0)
    body = {**CHAT, "prompt": "x"} if path == "/completions" else CHAT
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{served.v1}{path}", json=body, timeout=0.3)
    # The generation was cancelled when the client left, long before its 60 s were up.
    assert wait_for(lambda: served.state.limiter.in_flight == 0, timeout=STOPPED)
    assert httpx.post(f"{served.v1}{path}", json=body).status_code == 200


@pytest.mark.parametrize("stream", [True, False])
def test_client_leaving_before_the_first_token_stops_generation(
    serve: ServeFactory, stream: bool
) -> None:
    # The first event takes a minute (a long prompt, a slow upstream): a client that gives up
    # before it -- the chat page's Stop pressed early -- stops the generation then, not later.
    served = serve([Reply("late", delay=FIRST_TOKEN_NEVER), "ok"], max_in_flight=1, max_queue=0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{served.v1}/chat/completions", json={**CHAT, "stream": stream}, timeout=0.3)
    assert wait_for(lambda: served.state.limiter.in_flight == 0, timeout=STOPPED)
    if stream:
        assert wait_for(lambda: served.fake.closed_streams == 1, timeout=STOPPED)
    assert httpx.post(f"{served.v1}/chat/completions", json=CHAT).status_code == 200


async def test_client_leaving_the_queue_gives_up_its_place(serve: ServeFactory) -> None:
    served = serve([Reply("a b c", chunk_delay=0.3), "unused"], max_in_flight=1, max_queue=1)
    async with (
        httpx.AsyncClient(base_url=served.v1) as http,
        http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as s,
    ):
        queued = asyncio.create_task(http.post("/chat/completions", json=CHAT))
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.queued == 1)
        queued.cancel()  # the client gives up while its request waits for a slot
        assert await asyncio.to_thread(wait_for, lambda: served.state.limiter.queued == 0)
        await s.aread()
    # The abandoned request never reached the model, and its place was free for others.
    assert wait_for(lambda: served.state.limiter.in_flight == 0)
    assert len(served.fake.requests) == 1
