"""In-process checks of the pieces: the limiter, the error table, the OpenAPI document."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from llmkit import errors
from llmkit.server import is_loopback
from llmkit.server._errors import error_reply_for
from llmkit.server._limits import ConcurrencyLimiter, Overloaded

from .conftest import API_KEY, ServeFactory

# ---------------------------------------------------------------------------- limiter


async def test_limiter_hands_slots_over_in_order() -> None:
    limiter = ConcurrencyLimiter(max_in_flight=1, max_queue=2, queue_timeout=None)
    await limiter.acquire()
    order: list[str] = []

    async def waiter(name: str) -> None:
        await limiter.acquire()
        order.append(name)

    tasks = [asyncio.create_task(waiter("a")), asyncio.create_task(waiter("b"))]
    await asyncio.sleep(0)
    assert (limiter.in_flight, limiter.queued) == (1, 2)
    with pytest.raises(Overloaded):
        await limiter.acquire()
    limiter.release()
    for _ in range(10):  # the waiter resumes through wait_for and shield
        await asyncio.sleep(0)
    assert order == ["a"] and limiter.in_flight == 1
    limiter.release()
    await asyncio.gather(*tasks)
    assert order == ["a", "b"]
    limiter.release()
    assert (limiter.in_flight, limiter.queued) == (0, 0)


async def test_limiter_cancelled_waiter_leaves_the_queue() -> None:
    limiter = ConcurrencyLimiter(max_in_flight=1, max_queue=1, queue_timeout=None)
    await limiter.acquire()
    task = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.queued == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.queued == 0
    limiter.release()
    assert limiter.in_flight == 0  # the slot went back to the pool, not to the dead waiter


async def test_limiter_queue_timeout() -> None:
    limiter = ConcurrencyLimiter(max_in_flight=1, max_queue=1, queue_timeout=0.05)
    await limiter.acquire()
    with pytest.raises(Overloaded, match="no generation slot"):
        await limiter.acquire()
    assert limiter.queued == 0 and limiter.in_flight == 1


def test_limiter_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimiter(0, 1, None)
    with pytest.raises(ValueError):
        ConcurrencyLimiter(1, -1, None)


# ---------------------------------------------------------------------------- errors


def test_error_table_never_leaks_secrets_or_internals() -> None:
    reply = error_reply_for(errors.ServerError("upstream said Bearer abcdefghijklmnopqrstuv"))
    assert reply.status == 502 and "abcdefghijklmnopqrstuv" not in reply.message
    crash = error_reply_for(ValueError("db password is hunter2"))
    assert (crash.status, crash.message) == (500, "internal server error")
    assert error_reply_for(errors.ServerError("x", status_code=503)).headers["retry-after"] == "1"


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert not is_loopback("example.com")


# ---------------------------------------------------------------------------- openapi, health


def test_openapi_document(serve: ServeFactory) -> None:
    served = serve(api_key=API_KEY)
    document = httpx.get(
        f"{served.base_url}/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert document["openapi"].startswith("3.")
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"} <= set(
        document["paths"]
    )
    schemas = document["components"]["schemas"]
    assert "messages" in schemas["ChatCompletionRequest"]["properties"]
    assert document["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_completions_validation(serve: ServeFactory) -> None:
    served = serve(["ok"], max_tokens_cap=None)
    url = f"{served.v1}/completions"
    assert httpx.post(url, json={"model": "fake-model", "prompt": ["a", "b"]}).status_code == 400
    assert httpx.post(url, json={"model": "fake-model"}).json()["error"]["param"] == "prompt"
    echo = httpx.post(url, json={"model": "fake-model", "prompt": "a", "echo": True})
    assert echo.json()["error"]["param"] == "echo"
    ok = httpx.post(url, json={"model": "fake-model", "prompt": ["only one"]})
    assert ok.status_code == 200
    assert served.fake.requests[0].params.max_tokens is None  # no cap configured
