from __future__ import annotations

import pytest

from llmkit import errors
from llmkit.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContextLengthError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TimeoutError,
    error_from_status,
    parse_retry_after,
    redact,
)


@pytest.mark.parametrize(
    ("status", "cls", "retryable"),
    [
        (400, BadRequestError, False),
        (401, AuthenticationError, False),
        (403, PermissionDeniedError, False),
        (404, NotFoundError, False),
        (408, TimeoutError, True),
        (409, ConflictError, True),
        (422, BadRequestError, False),
        (429, RateLimitError, True),
        (500, ServerError, True),
        (503, ServerError, True),
        (418, BadRequestError, False),
    ],
)
def test_status_table(status: int, cls: type, retryable: bool) -> None:
    err = error_from_status(
        status, {"error": {"message": "nope"}}, {"X-Request-Id": "req_1"}, backend="rest", model="m"
    )
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.status_code == status and err.request_id == "req_1"
    assert err.backend == "rest" and err.model == "m"
    assert str(err) == f"[rest:m] nope (status {status}, request id req_1)"


def test_context_length_is_recognised() -> None:
    err = error_from_status(
        400, {"error": {"message": "too long", "code": "context_length_exceeded"}}
    )
    assert isinstance(err, ContextLengthError) and isinstance(err, BadRequestError)
    tgi = error_from_status(
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048",
            "error_type": "validation",
        },
    )
    assert isinstance(tgi, ContextLengthError)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"detail": "Model not loaded"}, "Model not loaded"),
        ({"detail": [{"loc": ["body"], "msg": "bad"}]}, '[{"loc": ["body"], "msg": "bad"}]'),
        ("plain text failure", "plain text failure"),
        ({"error": "ollama says no"}, "ollama says no"),
        (None, "HTTP 502"),
    ],
)
def test_error_body_shapes(body: object, message: str) -> None:
    assert error_from_status(502 if body is None else 400, body).message == message


def test_retry_after_headers() -> None:
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert (
        parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0)
        == 10.0
    )
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None
    err = error_from_status(429, {}, {"Retry-After": "2"})
    assert err.retry_after == 2.0


def test_cause_is_kept() -> None:
    try:
        try:
            raise ValueError("inner")
        except ValueError as exc:
            raise ServerError("outer") from exc
    except ServerError as err:
        assert isinstance(err.__cause__, ValueError)


def test_secrets_are_redacted_from_messages_and_bodies() -> None:
    key = "sk-live-abcdefghijklmnop1234"
    err = error_from_status(
        401,
        {"error": {"message": f"Incorrect API key provided: {key}"}},
        backend="openai",
        secrets=[key],
    )
    for text in (str(err), repr(err), str(err.body)):
        assert key not in text and "abcdefghijklmnop" not in text
    assert "abcdefghijk123" not in redact("Authorization: Bearer abcdefghijk123")
    assert redact("sent with Bearer abcdefghijk123") == "sent with Bearer ***"
    assert redact("hf_abcdefghijklmnopqrstu token") == "hf_*** token"


def test_usage_mistakes_are_value_errors() -> None:
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.InvalidInputError, errors.ConfigError)
    assert not issubclass(errors.ConfigError, errors.ProviderError)


def test_instance_can_override_retryable() -> None:
    err = TimeoutError("spent", retryable=False)
    assert not err.retryable and TimeoutError("x").retryable


def test_error_inside_a_stream_is_redacted() -> None:
    from llmkit.backends._openai_wire import error_in_payload

    key = "sk-proj-abcdefghijklmnop1234"
    err = error_in_payload({"error": {"message": f"key {key} revoked"}}, backend="rest", model="m")
    assert err is not None and err.retryable
    assert key not in str(err) and key not in repr(err.body) and "sk-***" in str(err)
    custom = "my-private-token-value"
    err = error_in_payload(
        {"error": {"message": f"bad {custom}", "code": 401}},
        backend="rest",
        model="m",
        secrets=[custom],
    )
    assert err is not None and custom not in str(err) and err.status_code == 401
