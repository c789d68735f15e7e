"""The API key appears in no exception, repr or log record, not even when a server echoes it."""

from __future__ import annotations

import logging
import traceback

import httpx
import pytest
import respx
from openai_testkit import KEY, Pieces, call, chat_request, collect, sse, sse_response

import llmkit.errors as E
from llmkit.backends.openai import AzureOpenAIBackend, OpenAIBackend

# A server that repeats the key in full (some proxies and compatible servers do).
ECHO = {
    "error": {
        "message": f"Incorrect API key provided: {KEY}. Authorization: Bearer {KEY}",
        "type": "invalid_request_error",
        "code": "invalid_api_key",
        "param": KEY,
    }
}


def assert_clean(exc: BaseException, secret: str = KEY) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause), repr(getattr(cause, "body", None))]
        cause = cause.__cause__
    if isinstance(exc, E.ProviderError):
        texts.append(repr(exc.body))
    for text in texts:
        assert secret not in text
        assert secret[8:] not in text  # not even the tail


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the SDK, httpx and llmkit at their chattiest
    return caplog


def assert_logs_clean(caplog: pytest.LogCaptureFixture, secret: str = KEY) -> None:
    assert caplog.records, "expected the SDK to log at DEBUG"
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in str(record.args)


@pytest.mark.parametrize("streamed", [False, True], ids=["chat", "stream"])
async def test_401_with_the_key_echoed(
    backend: OpenAIBackend,
    mock: respx.MockRouter,
    mode: str,
    streamed: bool,
    logs: pytest.LogCaptureFixture,
) -> None:
    mock.post("/chat/completions").respond(401, json=ECHO, headers={"x-request-id": "req_401"})
    with pytest.raises(E.AuthenticationError) as info:
        if streamed:
            await collect(backend, mode, chat_request())
        else:
            await call(backend, mode, chat_request())
    assert info.value.request_id == "req_401"
    assert "Incorrect API key provided" in str(info.value)
    assert_clean(info.value)
    assert_logs_clean(logs)


async def test_key_echoed_in_a_stream_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str, logs: pytest.LogCaptureFixture
) -> None:
    mock.post("/chat/completions").mock(return_value=sse_response(sse(ECHO | {"code": 401})))
    with pytest.raises(E.ProviderError) as info:
        await collect(backend, mode, chat_request())
    assert_clean(info.value)


async def test_key_in_a_transport_error(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str
) -> None:
    failure = httpx.ReadError(f"reset while sending Authorization: Bearer {KEY}")
    mock.post("/chat/completions").mock(
        return_value=sse_response(Pieces([b": hello\n\n"], fail=failure))
    )
    with pytest.raises(E.ConnectionError) as info:
        await collect(backend, mode, chat_request())
    assert_clean(info.value)


def test_reprs_and_config_errors() -> None:
    backend = OpenAIBackend("gpt-4o-mini", api_key=KEY, base_url="http://127.0.0.1:1/v1")
    assert KEY not in repr(backend)
    assert KEY not in repr(backend._settings)
    assert KEY not in str(vars(backend).get("_settings"))
    with pytest.raises(E.ConfigError) as info:
        OpenAIBackend("gpt-4o-mini", api_key=KEY, timeout="soon")
    assert_clean(info.value)
    with pytest.raises(E.ConfigError) as info:
        OpenAIBackend("gpt-4o-mini", api_key=12345)  # wrong type: the value is not echoed
    assert "12345" not in str(info.value)
    azure = AzureOpenAIBackend(
        "d", endpoint="https://r.openai.azure.com", api_version="2024-10-21", api_key=KEY
    )
    assert KEY not in repr(azure)


async def test_successful_calls_log_no_key(
    backend: OpenAIBackend, mock: respx.MockRouter, mode: str, logs: pytest.LogCaptureFixture
) -> None:
    mock.post("/chat/completions").respond(
        json={
            "id": "x",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        }
    )
    assert (await call(backend, mode, chat_request())).text == "ok"
    assert_logs_clean(logs)
