"""Retry behaviour with a fake clock: attempt counts, backoff bounds, Retry-After, deadlines."""

from __future__ import annotations

import random

import pytest

from llmkit import (
    AuthenticationError,
    BadRequestError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from llmkit.errors import ConnectionError, TimeoutError
from llmkit.testing import FakeBackend, SleepRecorder


def policy(recorder: SleepRecorder, **kwargs: object) -> RetryPolicy:
    return RetryPolicy(**kwargs).with_clock(  # type: ignore[arg-type]
        sleep=recorder.sleep,
        async_sleep=recorder.async_sleep,
        clock=recorder.clock,
        rng=random.Random(0),
    )


@pytest.mark.parametrize(
    "error",
    [
        RateLimitError("slow down"),
        ServerError("boom", status_code=503),
        TimeoutError("slow"),
        ConnectionError("reset"),
    ],
)
def test_retryable_errors_are_retried_until_success(driver, error) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([error, error, "finally"])
    response = driver.chat({"backend": fake, "retry": policy(rec, max_attempts=3)}, "hi")
    assert response.text == "finally"
    assert len(fake.requests) == 3
    assert len(rec.sleeps) == 2


@pytest.mark.parametrize(
    "error", [BadRequestError("bad", status_code=400), AuthenticationError("no", status_code=401)]
)
def test_non_retryable_errors_are_not_retried(driver, error) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([error, "never"])
    with pytest.raises(type(error)):
        driver.chat({"backend": fake, "retry": policy(rec, max_attempts=5)}, "hi")
    assert len(fake.requests) == 1
    assert rec.sleeps == []


def test_attempts_are_bounded_and_last_error_raised(driver) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([ServerError("down", status_code=500)])
    with pytest.raises(ServerError, match="down"):
        driver.chat({"backend": fake, "retry": policy(rec, max_attempts=4)}, "hi")
    assert len(fake.requests) == 4
    assert len(rec.sleeps) == 3


def test_backoff_is_exponential_jittered_and_capped(driver) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([ServerError("down")])
    p = policy(
        rec, max_attempts=7, initial_backoff=1.0, max_backoff=5.0, multiplier=2.0, jitter=0.25
    )
    with pytest.raises(ServerError):
        driver.chat({"backend": fake, "retry": p}, "hi")
    nominal = [1, 2, 4, 5, 5, 5]
    assert len(rec.sleeps) == 6
    for slept, base in zip(rec.sleeps, nominal, strict=False):
        assert 0.75 * base <= slept <= base


def test_retry_after_is_honoured_and_capped(driver) -> None:
    rec = SleepRecorder()
    fake = FakeBackend(
        [RateLimitError("wait", retry_after=7.5), RateLimitError("wait", retry_after=3600), "ok"]
    )
    response = driver.chat(
        {"backend": fake, "retry": policy(rec, max_attempts=3, max_retry_after=30)}, "hi"
    )
    assert response.text == "ok"
    assert rec.sleeps == [7.5, 30]


def test_deadline_stops_retries_before_sleeping_past_it(driver) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([ServerError("down")])
    p = policy(
        rec, max_attempts=10, initial_backoff=4.0, max_backoff=4.0, jitter=0.0, deadline=10.0
    )
    with pytest.raises(ServerError):
        driver.chat({"backend": fake, "retry": p}, "hi")
    # attempts at t=0, 4, 8; the next sleep would reach t=12 > 10, so it stops.
    assert rec.sleeps == [4.0, 4.0]
    assert len(fake.requests) == 3


def test_retry_after_beyond_the_deadline_gives_up_at_once(driver) -> None:
    rec = SleepRecorder()
    fake = FakeBackend([RateLimitError("wait", retry_after=50), "ok"])
    with pytest.raises(RateLimitError):
        driver.chat({"backend": fake, "retry": policy(rec, max_attempts=3, deadline=20)}, "hi")
    assert rec.sleeps == []


def test_policy_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValidationError):
        RetryPolicy(max_atempts=3)  # type: ignore[call-arg]
