"""The same faults in the native dialects of the ``rest`` backend: TGI (``/generate``,
``/generate_stream``: SSE without ``[DONE]``) and Ollama (``/api/chat``: NDJSON lines)."""

from __future__ import annotations

from typing import Any

import pytest

from llmkit import errors

from .fault_server import Fault, FaultServer
from .harness import (
    RETRY,
    TIMEOUT,
    assert_no_budget_spent,
    assert_within,
    client_kwargs,
    phases,
    run,
)

pytestmark = pytest.mark.timeout(15)

PROMPT = "alpha beta gamma delta"

DIALECTS = {
    # A template sends chat to TGI's native /generate endpoints instead of its OpenAI API.
    "tgi": {"dialect": "tgi", "template": "chatml"},
    "ollama": {"dialect": "ollama"},
}


@pytest.fixture(params=sorted(DIALECTS))
def dialect(request: pytest.FixtureRequest) -> dict[str, Any]:
    return DIALECTS[request.param]


def kwargs(url: str | list[str], dialect: dict[str, Any]) -> dict[str, Any]:
    return client_kwargs("rest", url, **dialect)


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_native_baseline(
    server: FaultServer, mode: str, dialect: dict[str, Any], stream: bool
) -> None:
    url = server.scenario()
    out = run(mode, "rest:m", PROMPT, stream=stream, **kwargs(url, dialect))
    assert out.error is None, out.error
    assert out.response is not None and PROMPT in out.response.text
    path = server.requests(url)[0].path
    assert path in ("/generate", "/generate_stream", "/api/chat")


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
@pytest.mark.parametrize(
    "fault",
    [Fault.error(503), Fault.error(429, retry_after=0), Fault.reset(), Fault.hangup()],
    ids=["503", "429", "reset", "hangup"],
)
def test_native_transient_failure_then_success(
    server: FaultServer, mode: str, dialect: dict[str, Any], stream: bool, fault: Fault
) -> None:
    url = server.scenario([fault])
    out = run(mode, "rest:m", PROMPT, stream=stream, **kwargs(url, dialect))
    assert out.error is None, out.error
    assert out.response is not None and PROMPT in out.response.text
    assert len(server.requests(url)) == 2
    assert_no_budget_spent(out)


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_native_malformed_reply_is_a_protocol_error(
    server: FaultServer, mode: str, dialect: dict[str, Any], stream: bool
) -> None:
    url = server.scenario(then=Fault.malformed(after=1))
    out = run(mode, "rest:m", PROMPT, stream=stream, **kwargs(url, dialect))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert len(server.requests(url)) == 1


@pytest.mark.parametrize(
    "fault", [Fault.drop(after=2), Fault.truncated(after=2)], ids=["reset", "fin"]
)
def test_native_stream_broken_mid_way_is_a_connection_error(
    server: FaultServer, mode: str, dialect: dict[str, Any], fault: Fault
) -> None:
    url = server.scenario(then=fault)
    out = run(mode, "rest:m", PROMPT, stream=True, **kwargs(url, dialect))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert len(out.events) == 2  # delivered once, never replayed
    assert len(server.requests(url)) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
def test_native_stall_is_a_timeout(
    server: FaultServer, mode: str, dialect: dict[str, Any], stream: bool
) -> None:
    url = server.scenario(then=Fault.stall(10))
    out = run(mode, "rest:m", PROMPT, stream=stream, **kwargs(url, dialect))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert len(server.requests(url)) == RETRY.max_attempts
    assert len(out.timeouts) == RETRY.max_attempts
    assert set(phases(out)) <= {"first_token", "read"}, out.timeouts
    assert_within(out, RETRY.max_attempts * TIMEOUT.first_token)


def test_native_stall_mid_stream_is_a_timeout(
    server: FaultServer, mode: str, dialect: dict[str, Any]
) -> None:
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=10))
    out = run(mode, "rest:m", PROMPT, stream=True, **kwargs(url, dialect))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert len(out.events) == 2
    # The idle budget (0.3 s) ended it; without it the total (3 s) would, naming itself.
    assert phases(out) == ["idle"], out.timeouts
