"""Faults inside streamed replies: dropped connections before and after the first event,
malformed SSE, stalls before the first byte and between chunks. A stream is retried only
before its first event reached the caller; after that the error surfaces (never a replay)."""

from __future__ import annotations

import pytest

from llmkit import errors

from .fault_server import Fault, FaultServer
from .harness import RETRY, TIMEOUT, client_kwargs, run

pytestmark = pytest.mark.timeout(15)

FAST = 2.0
PROMPT = "one two three four five"  # six words with "echo:": six content chunks


@pytest.fixture(params=["rest", "openai"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_stream_baseline(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario()
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.text == f"echo: {PROMPT}"
    assert out.response is not None and out.response.text == out.text
    assert out.response.usage.completion_tokens == 6


@pytest.mark.parametrize(
    "fault",
    [Fault.drop(after=0), Fault.reset(), Fault.error(503), Fault.stall(10)],
    ids=["drop-before-first-event", "reset", "503", "stall-first-byte"],
)
def test_failure_before_the_first_event_is_retried(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario([fault])
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert out.error is None, out.error
    assert out.text == f"echo: {PROMPT}"
    assert len(server.requests(url)) == 2
    # A first-byte stall costs one first_token budget, then the retry answers at once.
    assert out.elapsed < TIMEOUT.first_token + FAST


@pytest.mark.parametrize(
    "fault", [Fault.drop(after=2), Fault.truncated(after=2)], ids=["reset", "fin"]
)
def test_connection_lost_mid_stream_surfaces_without_replay(
    server: FaultServer, mode: str, kind: str, fault: Fault
) -> None:
    url = server.scenario(then=fault)
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert out.text == "echo: one "  # what arrived before the drop, exactly once
    assert len(server.requests(url)) == 1
    assert out.elapsed < FAST


def test_malformed_sse_is_a_protocol_error(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario(then=Fault.malformed(after=2))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1
    assert out.elapsed < FAST


def test_malformed_first_event_is_a_protocol_error(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.malformed(after=0))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.ProtocolError), out.error
    assert out.events == []
    assert len(server.requests(url)) == 1  # not transient: not retried


def test_stall_before_first_byte_every_time_is_a_timeout(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.stall(10))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.events == []
    assert len(server.requests(url)) == RETRY.max_attempts
    assert out.elapsed < TIMEOUT.total + 0.5


def test_long_stall_mid_stream_is_a_timeout_without_replay(
    server: FaultServer, mode: str, kind: str
) -> None:
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=10))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1
    # Whichever budget fires (idle 0.3 s, or httpx's read = max(first_token, idle)).
    assert out.elapsed < TIMEOUT.first_token + FAST


# A gap longer than `idle` but shorter than `first_token`: only an idle check catches it.
IDLE_GAP = 0.42


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(
            "sync",
            marks=pytest.mark.xfail(
                strict=True,
                reason="sync Stream does not enforce Timeout.idle: httpx read timeout is "
                "max(first_token, idle) and Stream.__next__ has no per-event budget",
            ),
        ),
        "async",
    ],
)
def test_gap_longer_than_idle_is_a_timeout(server: FaultServer, mode: str, kind: str) -> None:
    url = server.scenario(then=Fault.stall_mid(after=2, seconds=IDLE_GAP))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url))
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.text == "echo: one "
    assert len(server.requests(url)) == 1


@pytest.mark.parametrize(
    ("kind", "dialect"),
    [
        ("openai", {}),
        ("rest", {}),
        ("rest", {"dialect": "tgi", "template": "chatml"}),
        ("rest", {"dialect": "ollama"}),
    ],
    ids=["openai", "rest-openai", "rest-tgi", "rest-ollama"],
)
def test_stream_cut_short_with_a_clean_http_end_is_an_error(
    server: FaultServer, mode: str, kind: str, dialect: dict[str, str]
) -> None:
    """A proxy that gives up on a slow upstream may end the chunked body properly; the
    reply is still incomplete and must not pass for a finished one."""
    url = server.scenario(then=Fault.cut(after=2))
    out = run(mode, f"{kind}:m", PROMPT, stream=True, **client_kwargs(kind, url, **dialect))
    assert isinstance(out.error, errors.ConnectionError), (out.error, out.response)
    assert len(out.events) == 2
