"""Options, auth and secrecy: validated settings, the auth header, extra headers, no I/O at
construction, and the API key absent from errors, reprs and logs."""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpx
import pytest

from llmkit import errors
from llmkit.backends.rest import RestBackend, RestSettings
from llmkit.registry import get_backend_class

from .helpers import FAKE_KEY, Mode, chat_request, streamed

URL = "http://llm.test/v1/chat/completions"
OK = {
    "id": "x",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
}


def test_registered_under_rest() -> None:
    assert get_backend_class("rest") is RestBackend


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"base_url": "http://x", "dialekt": "tgi"},
            "unknown option.*'dialekt'.*allowed:.*dialect",
        ),
        ({"base_url": "http://x", "dialect": "vllm"}, "dialect"),
        ({"base_url": "ftp://x"}, "not an http"),
        ({"base_url": []}, "at least one"),
        ({}, "needs base_url"),
        ({"base_url": "http://x", "template": "chatml"}, "tgi dialect only"),
        ({"base_url": "http://x", "dialect": "tgi", "template": "no placeholder"}, "format string"),
        ({"base_url": "http://x", "keep_alive": "5m"}, "ollama dialect only"),
        ({"base_url": "http://x", "balance": "random"}, "balance"),
        ({"base_url": "http://x", "cooldown": -1}, "cooldown"),
        ({"base_url": "http://x", "timeout": -3}, "timeout"),
    ],
)
def test_invalid_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match):
        RestBackend("m", **options)


def test_invalid_option_never_shows_key() -> None:
    with pytest.raises(errors.ConfigError) as info:
        RestBackend("m", base_url="http://x", api_key=12345678)
    assert "12345678" not in str(info.value)


def test_http2_needs_h2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "h2", None)  # what an environment without h2 sees
    with pytest.raises(errors.ConfigError, match=r'pip install "httpx\[http2\]"'):
        RestBackend("m", base_url="http://x", http2=True)


def test_http2_reaches_the_connection_pool(respx_mock: Any) -> None:
    # The dev extra installs h2 (httpx[http2]), so this always runs in CI.
    respx_mock.post("http://x/v1/chat/completions").respond(
        json={"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}]}
    )
    backend = RestBackend("m", base_url="http://x/v1", http2=True)
    assert backend.chat(chat_request()).text == "hi"
    assert backend._client is not None
    assert backend._client._transport._pool._http2 is True  # type: ignore[attr-defined]
    plain = RestBackend("m", base_url="http://x/v1")
    plain.chat(chat_request())
    assert plain._client._transport._pool._http2 is False  # type: ignore[union-attr]
    backend.close()
    plain.close()


def test_construction_does_no_io(respx_mock: Any) -> None:
    backend = RestBackend(
        "m", base_url=["http://a.test", "http://b.test"], api_key=FAKE_KEY, timeout=5
    )
    assert backend._client is None and backend._aclient is None
    assert not respx_mock.calls
    assert backend.spec == "rest:m"
    assert FAKE_KEY not in repr(backend) and FAKE_KEY not in repr(backend.settings)
    assert backend.settings.timeout.connect == 5
    backend.close()


def test_settings_defaults() -> None:
    s = RestSettings(base_url=["http://x"])
    assert (s.dialect, s.balance, s.failover, s.stream_usage) == (
        "openai",
        "round_robin",
        True,
        True,
    )


async def test_bearer_auth_and_extra_headers(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=OK))
    backend = make_backend(api_key=FAKE_KEY, headers={"x-tenant": "blue"})
    await mode.chat(backend, chat_request())
    headers = route.calls.last.request.headers
    assert headers["authorization"] == f"Bearer {FAKE_KEY}"
    assert headers["x-tenant"] == "blue"
    assert headers["user-agent"].startswith("llmkit/")


async def test_custom_auth_header(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=streamed(b"data: [DONE]\n\n"))
    backend = make_backend(api_key=FAKE_KEY, auth_header="X-API-Key")
    await mode.stream(backend, chat_request())
    headers = route.calls.last.request.headers
    assert headers["x-api-key"] == FAKE_KEY and "authorization" not in headers


async def test_no_key_no_auth_header(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(URL).mock(return_value=httpx.Response(200, json=OK))
    await mode.chat(make_backend(), chat_request())
    assert "authorization" not in route.calls.last.request.headers


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {FAKE_KEY}"}}),
        httpx.Response(500, text=f"upstream said: Authorization: Bearer {FAKE_KEY}"),
        httpx.ConnectError(f"failed with token {FAKE_KEY}"),
    ],
    ids=["401-echo", "500-echo", "transport"],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_key_absent_from_errors_and_logs(
    failure: Any, streaming: bool, mode: Mode, make_backend: Any, respx_mock: Any, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    route = respx_mock.post(URL)
    if isinstance(failure, Exception):
        route.mock(side_effect=failure)
    else:
        route.mock(return_value=failure)
    backend = make_backend(api_key=FAKE_KEY, base_url=["http://llm.test/v1", "http://llm.test/v1"])
    with pytest.raises(errors.ProviderError) as info:
        if streaming:
            await mode.stream(backend, chat_request())
        else:
            await mode.chat(backend, chat_request())
    err = info.value
    assert route.calls.last.request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    for text in (str(err), repr(err), str(err.body), err.message):
        assert FAKE_KEY not in text
    assert caplog.records  # failover warnings and debug lines were logged ...
    assert FAKE_KEY not in caplog.text  # ... without the key
    assert "FAKEKEY" not in caplog.text


async def test_backend_reusable_after_close(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=OK))
    backend = make_backend()
    await mode.chat(backend, chat_request())
    if mode.name == "sync":
        backend.close()
    else:
        await backend.aclose()
    assert (await mode.chat(backend, chat_request())).text == "ok"


def test_async_client_per_event_loop(respx_mock: Any) -> None:
    import asyncio

    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=OK))
    backend = RestBackend("m", base_url="http://llm.test/v1", verify=False)
    # Two asyncio.run() calls: pooled connections of the first loop must not leak into the second.
    assert asyncio.run(backend.achat(chat_request())).text == "ok"
    assert asyncio.run(backend.achat(chat_request())).text == "ok"
    backend.close()


def test_environment_fills_base_url_and_key(monkeypatch: Any, respx_mock: Any) -> None:
    monkeypatch.setenv("LLMKIT_REST_BASE_URL", "http://e1.test/v1, http://e2.test")
    monkeypatch.setenv("LLMKIT_REST_API_KEY", FAKE_KEY)
    backend = RestBackend("m", verify=False)
    assert [r.api for r in backend.replicas] == ["http://e1.test/v1", "http://e2.test/v1"]
    route = respx_mock.post("http://e1.test/v1/chat/completions").mock(
        return_value=httpx.Response(200, json=OK)
    )
    assert backend.chat(chat_request()).text == "ok"
    assert route.calls.last.request.headers["authorization"] == f"Bearer {FAKE_KEY}"
    # Explicit options win over the environment.
    explicit = RestBackend("m", base_url="http://x.test", api_key="other-key-123")
    assert explicit.replicas[0].root == "http://x.test"
    assert explicit._headers["authorization"] == "Bearer other-key-123"
    backend.close()
    explicit.close()
