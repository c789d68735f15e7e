"""HTTP-level faults on a plain (non-streamed) chat call: error statuses, Retry-After,
connections reset or hung up before the reply, non-HTTP bytes, truncated and malformed
bodies. Each runs through the sync and the async client, for ``rest:`` and ``openai:``."""

from __future__ import annotations

import socket

import pytest

from llmkit import RetryPolicy, errors

from .fault_server import Fault, FaultServer
from .harness import RETRY, assert_no_budget_spent, client_kwargs, run

pytestmark = pytest.mark.timeout(15)

# No scenario here waits on a timeout: each checks that no attempt timed out and that every
# wait before a retry was a short backoff (or the Retry-After asked for), not wall time.


@pytest.fixture(params=["rest", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_baseline_echo(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario()
    out = run(mode, f"{kind}:m", "hello world", **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.response is not None and out.response.text == "echo: hello world"
    assert len(server.requests(url)) == 1
    assert_no_budget_spent(out)


@pytest.mark.parametrize("statuses", [(500,), (502, 503), (500, 502, 503)])
def test_burst_of_5xx_then_success(
    server: FaultServer, mode: str, kind: str, statuses: tuple[int, ...]
) -> None:
    url = server.scenario([Fault.error(s) for s in statuses])
    retry = RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05)
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url, retry=retry))
    assert out.error is None, out.error
    assert out.response is not None and out.response.text == "echo: hello chaos"
    assert len(server.requests(url)) == len(statuses) + 1
    assert_no_budget_spent(out)


def test_persistent_503_is_a_server_error_after_every_attempt(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.error(503))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ServerError), out.error
    assert out.error.status_code == 503
    assert len(server.requests(url)) == RETRY.max_attempts
    assert_no_budget_spent(out)


def test_429_honours_retry_after(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario([Fault.error(429, retry_after=0.3)])
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert out.error is None, out.error
    log = server.requests(url)
    assert len(log) == 2
    # The second attempt waited for the server's Retry-After, not the 10 ms backoff.
    assert out.slept == [pytest.approx(0.3)]
    assert log[1].at - log[0].at >= 0.28
    assert_no_budget_spent(out, max_backoff=0.3)


def test_429_with_retry_after_past_the_deadline_fails_at_once(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.error(429, retry_after=30))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.RateLimitError), out.error
    assert out.error.retry_after == 30
    # Sleeping 30 s would overrun the 3 s total: llmkit gives up without sleeping.
    assert len(server.requests(url)) == 1
    assert out.slept == []


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, errors.BadRequestError), (404, errors.NotFoundError)],
)
def test_client_errors_are_not_retried(
    server: FaultServer, mode: str, kind: str, status: int, error: type[Exception]
) -> None:
    url = server.scenario(then=Fault.error(status))
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, error), out.error
    assert len(server.requests(url)) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault.reset(), Fault.hangup(), Fault.garbage(), Fault.truncated()],
    ids=["reset", "hangup", "garbage", "truncated"],
)
def test_broken_connection_once_then_success(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario([fault])
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.response is not None and out.response.text == "echo: hello chaos"
    assert len(server.requests(url)) == 2
    assert_no_budget_spent(out)


@pytest.mark.parametrize(
    "fault",
    [Fault.reset(), Fault.hangup(), Fault.garbage(), Fault.truncated()],
    ids=["reset", "hangup", "garbage", "truncated"],
)
def test_broken_connection_every_time_is_a_connection_error(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario(then=fault)
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert len(server.requests(url)) == RETRY.max_attempts
    assert_no_budget_spent(out)


def test_malformed_json_is_a_protocol_error_and_not_retried(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.malformed())
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert len(server.requests(url)) == 1
    assert_no_budget_spent(out)


def test_connection_refused_is_a_connection_error(mode: str, kind: str) -> None:
    # A port nobody listens on: bind one, then close it before the client connects.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    out = run(mode, f"{kind}:m", **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert_no_budget_spent(out)  # refused at once, not waited out until a connect timeout
