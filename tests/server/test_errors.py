"""Rejections and failures: auth, body limits, bad JSON and fields, unknown models and the
mapping of llmkit errors to OpenAI-shaped HTTP errors."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from llmkit import errors
from llmkit.testing import Reply
from llmkit.types import CompletionRequest

from .conftest import API_KEY, Served, ServeFactory
from .test_openai_sdk import sync_sdk

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}

BACKEND_ERRORS: dict[str, tuple[Exception, int, str | None]] = {
    "bad-request": (errors.BadRequestError("bad prompt", status_code=400), 400, None),
    "context": (
        errors.ContextLengthError("too long", status_code=400),
        400,
        "context_length_exceeded",
    ),
    "not-found": (errors.NotFoundError("no such model", status_code=404), 404, "model_not_found"),
    "rate-limit": (
        errors.RateLimitError("slow down", status_code=429, retry_after=7),
        429,
        "rate_limit_exceeded",
    ),
    "server-500": (errors.ServerError("boom", status_code=500), 502, "upstream_error"),
    "server-503": (errors.ServerError("overloaded", status_code=503), 503, "upstream_error"),
    "connection": (errors.ConnectionError("refused"), 502, "upstream_unreachable"),
    "timeout": (errors.TimeoutError("too slow"), 504, "timeout"),
    "upstream-auth": (
        errors.AuthenticationError("bad upstream key sk-abcdefghijklmnop"),
        502,
        "upstream_authentication_failed",
    ),
    "protocol": (errors.ProtocolError("garbage"), 502, "upstream_protocol_error"),
    "unsupported": (errors.UnsupportedFeatureError("no tools here"), 400, "unsupported"),
    "crash": (RuntimeError("secret internals"), 500, "internal_error"),
}


def _scripted(request: Any) -> str:
    """Raise the error the last user message (or the raw prompt) names; else answer "ok"."""
    text = request.prompt if isinstance(request, CompletionRequest) else request.messages[-1].text
    if text in BACKEND_ERRORS:
        raise BACKEND_ERRORS[text][0]
    return "ok"


@pytest.fixture(scope="module")
def shared(serve_shared: ServeFactory) -> Served:
    return serve_shared([_scripted], max_body_bytes=2048)


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    assert "Traceback" not in response.text
    return body["error"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- auth


def test_auth_required_and_enforced(serve: ServeFactory) -> None:
    served = serve(["ok"], api_key=API_KEY)
    url = f"{served.v1}/chat/completions"
    missing = httpx.post(url, json=CHAT)
    error = assert_openai_error(missing, 401)
    assert error["code"] == "invalid_api_key"
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(url, json=CHAT, headers={"Authorization": "Bearer nope"})
    assert assert_openai_error(wrong, 401)["message"] == "invalid API key"
    basic = httpx.post(url, json=CHAT, headers={"Authorization": f"Basic {API_KEY}"})
    assert basic.status_code == 401
    for path in ("/v1/models", "/openapi.json"):
        assert httpx.get(served.base_url + path).status_code == 401
    assert served.fake.requests == []  # nothing reached the model
    ok = httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {API_KEY}"})
    assert ok.status_code == 200
    assert httpx.get(served.base_url + "/health").json() == {"status": "ok"}
    with (
        sync_sdk(served.base_url, api_key="wrong-key") as sdk,
        pytest.raises(openai.AuthenticationError),
    ):
        sdk.models.list()


def test_no_key_configured_means_open(serve: ServeFactory) -> None:
    served = serve(["ok"])
    assert httpx.post(f"{served.v1}/chat/completions", json=CHAT).status_code == 200


# ---------------------------------------------------------------------------- bad requests


def test_oversize_body_is_rejected(shared: Served) -> None:
    served = shared
    before = len(served.fake.requests)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(f"{served.v1}/chat/completions", json=big)
    assert assert_openai_error(response, 413)["code"] == "request_too_large"

    def chunked() -> Any:  # no Content-Length: the limit is enforced while reading
        yield json.dumps(big).encode()

    response = httpx.post(f"{served.v1}/chat/completions", content=chunked())
    assert_openai_error(response, 413)
    assert len(served.fake.requests) == before


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b'"just a string"'],
    ids=["malformed", "empty", "array", "binary", "string"],
)
def test_bad_json_is_400(shared: Served, content: bytes) -> None:
    served = shared
    response = httpx.post(
        f"{served.v1}/chat/completions",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert assert_openai_error(response, 400)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "fake-model"}, "messages"),
        ({"model": "fake-model", "messages": []}, "messages"),
        ({**CHAT, "temperature": 7}, "temperature"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "top_p": "high"}, "top_p"),
        ({**CHAT, "stream": "sometimes"}, "stream"),
        ({**CHAT, "n": 3}, "n"),
        ({**CHAT, "logprobs": True}, "logprobs"),
        (
            {"model": "fake-model", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
        ),
        ({"model": "fake-model", "messages": [{"role": "tool", "content": "x"}]}, "messages[0]"),
        ({"model": "fake-model", "messages": ["hi"]}, "messages.0"),
    ],
)
def test_invalid_fields_are_400_with_param(
    shared: Served, body: dict[str, Any], param: str
) -> None:
    before = len(shared.fake.requests)
    response = httpx.post(f"{shared.v1}/chat/completions", json=body)
    assert assert_openai_error(response, 400)["param"] == param
    assert len(shared.fake.requests) == before


def test_invalid_tool_definition_is_400(shared: Served) -> None:
    body = {**CHAT, "tools": [{"type": "function", "function": {"name": "no spaces allowed"}}]}
    response = httpx.post(f"{shared.v1}/chat/completions", json=body)
    assert "tool" in assert_openai_error(response, 400)["message"]


def test_invalid_fields_through_the_sdk(shared: Served) -> None:
    served = shared
    with sync_sdk(served.base_url) as sdk, pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    assert info.value.param == "temperature"


def test_unknown_model_is_404(shared: Served) -> None:
    served = shared
    response = httpx.post(f"{served.v1}/chat/completions", json={**CHAT, "model": "gpt-5"})
    error = assert_openai_error(response, 404)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert "fake-model" in error["message"]
    completion = httpx.post(f"{served.v1}/completions", json={"model": "nope", "prompt": "x"})
    assert_openai_error(completion, 404)


def test_unknown_path_and_wrong_method(shared: Served) -> None:
    served = shared
    assert_openai_error(httpx.get(f"{served.v1}/audio/speech"), 404)
    assert_openai_error(httpx.get(f"{served.v1}/chat/completions"), 405)


# ---------------------------------------------------------------------------- backend failures


@pytest.mark.parametrize("name", sorted(BACKEND_ERRORS))
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_backend_errors_map_to_statuses(shared: Served, name: str, stream: bool) -> None:
    _, status, code = BACKEND_ERRORS[name]
    body = {**CHAT, "messages": [{"role": "user", "content": name}], "stream": stream}
    response = httpx.post(f"{shared.v1}/chat/completions", json=body)
    error = assert_openai_error(response, status)
    assert error["code"] == code
    assert "sk-abcdefghijklmnop" not in response.text
    assert "secret internals" not in response.text
    if status == 429:
        assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("name", sorted(BACKEND_ERRORS))
def test_backend_errors_before_a_streamed_completion_are_http_errors(
    shared: Served, name: str
) -> None:
    body = {"model": "fake-model", "prompt": name, "stream": True}
    response = httpx.post(f"{shared.v1}/completions", json=body)
    error = assert_openai_error(response, BACKEND_ERRORS[name][1])
    assert error["code"] == BACKEND_ERRORS[name][2]
    assert "sk-abcdefghijklmnop" not in response.text
    assert "secret internals" not in response.text


def test_rate_limit_reaches_the_sdk_with_retry_after(serve: ServeFactory) -> None:
    served = serve([errors.RateLimitError("slow down", status_code=429, retry_after=2.5)])
    with sync_sdk(served.base_url) as sdk, pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.response.headers["retry-after"] == "3"


def test_failure_mid_stream_is_an_error_event(serve: ServeFactory) -> None:
    failing = Reply("one two three four", fail_after=2, error=errors.ServerError("upstream died"))
    served = serve([failing])
    with sync_sdk(served.base_url) as sdk:
        stream = sdk.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "x"}], stream=True
        )
        seen = []
        with pytest.raises(openai.APIError, match="upstream died"):
            for chunk in stream:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["one ", "two "]
    assert served.fake.closed_streams == 1


def test_failure_mid_completion_stream_is_an_error_event(serve: ServeFactory) -> None:
    failing = Reply("one two three four", fail_after=2, error=errors.ServerError("upstream died"))
    served = serve([failing])
    with sync_sdk(served.base_url) as sdk:
        stream = sdk.completions.create(model="fake-model", prompt="x", stream=True)
        seen = []
        with pytest.raises(openai.APIError, match="upstream died"):
            for chunk in stream:
                seen.append(chunk.choices[0].text)
    assert seen == ["one ", "two "]
    assert served.fake.closed_streams == 1
    # The server frees the slot when its response task ends, which may be just after the
    # client has read the error event.
    deadline = time.monotonic() + 5
    while served.state.limiter.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert served.state.limiter.in_flight == 0
