"""One sweep over every backend's error paths: a recognisable key never leaks.

Each scenario makes the provider echo the key back (as some servers do in error messages),
then checks every place it could surface: the error's str and repr, its body, the chained
cause, the client and backend reprs, and every log record (at DEBUG).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx

from llmkit import AsyncClient, Client, LLMError, RetryPolicy

KEY = "sk-live-SECRETSWEEPKEY-9f8e7d6c5b4a3210"
ECHO = {
    "error": {
        "message": f"Incorrect API key provided: {KEY}",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
    }
}


def sse_error() -> httpx.Response:
    body = f"data: {json.dumps(ECHO)}\n\n".encode()
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


SCENARIOS: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "401": lambda r: httpx.Response(401, json=ECHO),
    "403-text": lambda r: httpx.Response(403, text=f"forbidden for key {KEY}"),
    "500-detail": lambda r: httpx.Response(
        500, json={"detail": f"crashed with Authorization: Bearer {KEY}"}
    ),
    "429": lambda r: httpx.Response(429, json=ECHO, headers={"retry-after": "0"}),
    "error-in-stream": lambda r: sse_error(),
    "connect-error": lambda r: (_ for _ in ()).throw(httpx.ConnectError(f"refused (key {KEY})")),
}

BACKENDS = {
    "openai": ("openai:gpt-4o-mini", "https://api.openai.com/v1"),
    "rest": ("rest:my-model", "http://127.0.0.1:8000/v1"),
    "rest-tgi": ("rest:my-model", "http://127.0.0.1:8000"),
    "rest-ollama": ("rest:my-model", "http://127.0.0.1:11434"),
}


def texts_of(error: BaseException) -> list[str]:
    out = [str(error), repr(error)]
    body = getattr(error, "body", None)
    if body is not None:
        out.append(json.dumps(body, default=str))
    cause, seen = error.__cause__, set()
    while cause is not None and id(cause) not in seen:  # chains can loop
        seen.add(id(cause))
        out += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return out


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_key_never_leaks(
    backend: str, scenario: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    spec, url = BACKENDS[backend]
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": url,
        "retry": RetryPolicy(max_attempts=2, initial_backoff=0),
    }
    if backend == "rest-tgi":
        options["dialect"] = "tgi"
    if backend == "rest-ollama":
        options["dialect"] = "ollama"
    stream = scenario == "error-in-stream"
    caplog.set_level(logging.DEBUG)
    with respx.mock(assert_all_called=False) as router:
        router.route(method="POST").mock(side_effect=SCENARIOS[scenario])
        error: BaseException | None = None
        reprs: list[str] = []
        try:
            if mode == "sync":
                with Client(spec, **options) as client:
                    reprs += [repr(client), repr(client.backend)]
                    if stream:
                        with client.stream("hi") as s:
                            list(s)
                    else:
                        client.chat("hi")
            else:

                async def go() -> None:
                    async with AsyncClient(spec, **options) as client:
                        reprs.extend([repr(client), repr(client.backend)])
                        if stream:
                            async with client.stream("hi") as s:
                                async for _ in s:
                                    pass
                        else:
                            await client.chat("hi")

                asyncio.run(go())
        except LLMError as exc:
            error = exc
    assert error is not None, "the scenario should have failed"
    leaks = [t for t in (texts_of(error) if error else []) + reprs if KEY in t]
    leaks += [r.getMessage() for r in caplog.records if KEY in r.getMessage()]
    leaks += [
        str(r.exc_info[1]) for r in caplog.records if r.exc_info and KEY in str(r.exc_info[1])
    ]
    assert leaks == []
