"""Faults inside streamed raw completions (``stream_complete``): the OpenAI-compatible
``/v1/completions`` (``rest`` and ``openai`` backends), TGI's ``/generate_stream`` and
Ollama's ``/api/generate``. As for chat streams: retried only before the first event, a
stall is a typed timeout within the budget, and a drop after an event is never replayed."""

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

PROMPT = "one two three four five"  # six words with "echo:": six text chunks

# target -> (spec, client options, the endpoint a streamed completion must reach)
TARGETS: dict[str, tuple[str, dict[str, Any], str]] = {
    "rest-openai": ("rest:m", {}, "/v1/completions"),
    "openai": ("openai:m", {}, "/v1/completions"),
    "rest-tgi": ("rest:m", {"dialect": "tgi"}, "/generate_stream"),
    "rest-ollama": ("rest:m", {"dialect": "ollama"}, "/api/generate"),
}


@pytest.fixture(params=sorted(TARGETS))
def target(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], str]:
    return TARGETS[request.param]


def stream_complete(
    mode: str, target: tuple[str, dict[str, Any], str], url: str, **overrides: Any
) -> Any:
    spec, options, _ = target
    kwargs = client_kwargs(spec.split(":", 1)[0], url, **{**options, **overrides})
    return run(mode, spec, PROMPT, stream=True, complete=True, **kwargs)


def test_streamed_completion_baseline(
    server: FaultServer, mode: str, target: tuple[str, dict[str, Any], str]
) -> None:
    url = server.scenario()
    out = stream_complete(mode, target, url)
    assert out.error is None, out.error
    assert [e.text for e in out.events if e.text] == [
        "echo: ",
        *(f"{w} " for w in PROMPT.split()[:-1]),
        "five",
    ]
    assert out.response is not None and out.response.text == f"echo: {PROMPT}"
    assert out.response.usage.completion_tokens == 6
    (record,) = server.requests(url)
    assert record.path == target[2] and record.stream and record.prompt == PROMPT


def test_stall_before_the_first_chunk_is_retried(
    server: FaultServer, mode: str, target: tuple[str, dict[str, Any], str]
) -> None:
    url = server.scenario([Fault.stall(10)])
    out = stream_complete(mode, target, url)
    assert out.error is None, out.error
    assert out.text == f"echo: {PROMPT}"
    assert len(server.requests(url)) == 2
    # Cut by the first-token budget, then retried (a stall waited out answers by itself).
    assert phases(out) in (["first_token"], ["read"]), out.retried


def test_stall_before_the_first_chunk_every_time_is_a_timeout(
    server: FaultServer, mode: str, target: tuple[str, dict[str, Any], str]
) -> None:
    url = server.scenario(then=Fault.stall(10))
    out = stream_complete(mode, target, url)
    assert isinstance(out.error, errors.TimeoutError), out.error
    assert out.events == []
    assert len(server.requests(url)) == RETRY.max_attempts
    assert len(out.timeouts) == RETRY.max_attempts
    assert set(phases(out)) <= {"first_token", "read"}, out.timeouts
    assert_within(out, RETRY.max_attempts * TIMEOUT.first_token)


def test_drop_mid_stream_is_a_connection_error_without_replay(
    server: FaultServer, mode: str, target: tuple[str, dict[str, Any], str]
) -> None:
    url = server.scenario(then=Fault.drop(after=2))
    out = stream_complete(mode, target, url)
    assert isinstance(out.error, errors.ConnectionError), out.error
    assert out.text == "echo: one "  # what arrived before the drop, exactly once
    assert len(server.requests(url)) == 1
    assert_no_budget_spent(out)
