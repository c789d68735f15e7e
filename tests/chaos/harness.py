"""The chaos suite's runner: drive one call through the sync ``Client`` or the
``AsyncClient`` against the fault server and record how it ended."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from llmkit import AsyncClient, ChatResponse, Client, Hooks, RetryPolicy, Timeout
from llmkit.errors import LLMError
from llmkit.errors import TimeoutError as LLMTimeoutError

# Small budgets keep the suite fast; every scenario's bound below is derived from them.
TIMEOUT = Timeout(connect=1, first_token=0.5, idle=0.3, total=3)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


# Wall-clock room for a loaded two-core CI machine (five pytest processes at once, the fault
# server sharing the GIL): client construction, closing and scheduling.
HEADROOM = 2.0


@dataclass
class Outcome:
    """How one call ended: its response or its error, the events a stream delivered before
    the end, the errors that were retried and the waits the retry policy chose before each
    retry (so tests check *why* a call took what it took, not the seconds), and the wall
    time (client construction and closing included)."""

    response: ChatResponse | None = None
    error: BaseException | None = None
    events: list[Any] = field(default_factory=list)
    retried: list[BaseException] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events) if self.events else ""

    @property
    def timeouts(self) -> list[BaseException]:
        """Every :class:`llmkit.errors.TimeoutError` of the call: retried ones, then the final."""
        return [e for e in [*self.retried, self.error] if isinstance(e, LLMTimeoutError)]


def assert_no_budget_spent(out: Outcome, max_backoff: float | None = None) -> None:
    """The call never waited on a time budget: no attempt ended in a timeout, and every wait
    before a retry was the policy's short backoff. This replaces a wall-clock bound on
    scenarios that involve no timeout: it fails for a fault handled by waiting a budget out
    (or a backoff gone wrong) on any machine, and never for a slow machine."""
    assert not out.timeouts, out.timeouts
    cap = RETRY.max_backoff if max_backoff is None else max_backoff
    assert all(wait <= cap for wait in out.slept), out.slept


def assert_within(out: Outcome, budget: float) -> None:
    """The one wall-clock check a budget test keeps, next to the phase its error names: the
    call ended within twice its ``budget`` plus :data:`HEADROOM`, far below the 10 s stall
    (or trickle) it would last were the budget not enforced."""
    assert out.elapsed < 2 * budget + HEADROOM, (out.elapsed, budget, out.error)


def _observed(kwargs: dict[str, Any], out: Outcome) -> dict[str, Any]:
    """``kwargs`` with hooks and a retry policy that record into ``out`` what was retried and
    how long the policy chose to wait (it still really waits)."""

    def sleep(seconds: float) -> None:
        out.slept.append(seconds)
        time.sleep(seconds)

    async def async_sleep(seconds: float) -> None:
        out.slept.append(seconds)
        await asyncio.sleep(seconds)

    observed = dict(kwargs)
    retry = kwargs.get("retry")
    if isinstance(retry, RetryPolicy):
        observed["retry"] = retry.with_clock(sleep=sleep, async_sleep=async_sleep)
    observed["hooks"] = Hooks(on_retry=lambda error, attempt: out.retried.append(error))
    return observed


def client_kwargs(kind: str, url: str | list[str], **overrides: Any) -> dict[str, Any]:
    """Constructor arguments for a ``rest:`` or ``openai:`` client aimed at the fault server."""
    kwargs: dict[str, Any] = {
        "base_url": url,
        "timeout": TIMEOUT,
        "retry": RETRY,
        # Loading the CA bundle costs ~70 ms per HTTP client; these URLs are plain http.
        "verify": False,
    }
    if kind == "openai":
        kwargs["api_key"] = "sk-test"
    kwargs.update(overrides)
    return kwargs


def run(
    mode: str,
    spec: str,
    prompt: str = "hello chaos",
    *,
    stream: bool = False,
    complete: bool = False,
    fallbacks: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Outcome:
    """Make one call (``chat`` or a fully read ``stream``; with ``complete``, ``complete``
    or a fully read ``stream_complete`` of the raw prompt) and record how it ended.

    ``kwargs`` go to the client constructor; ``fallbacks`` are constructor kwargs of fallback
    clients (built of the same kind, sync or async, as the primary one).
    """
    kind = spec.split(":", 1)[0]
    out = Outcome()
    kwargs = _observed(kwargs, out)
    fallbacks = [_observed(f, out) for f in fallbacks or []]
    started = time.monotonic()
    if mode == "sync":
        fb = [Client(f"{kind}:m", **f) for f in fallbacks]
        try:
            with Client(spec, fallbacks=fb, **kwargs) as client:
                if stream:
                    opened = client.stream_complete(prompt) if complete else client.stream(prompt)
                    with opened as s:
                        for event in s:
                            out.events.append(event)
                    out.response = s.response
                else:
                    out.response = client.complete(prompt) if complete else client.chat(prompt)
        except LLMError as exc:
            out.error = exc
        finally:
            for c in fb:
                c.close()
    else:

        async def go() -> None:
            afb = [AsyncClient(f"{kind}:m", **f) for f in fallbacks]
            try:
                async with AsyncClient(spec, fallbacks=afb, **kwargs) as client:
                    if stream:
                        aopened = (
                            client.stream_complete(prompt) if complete else client.stream(prompt)
                        )
                        async with aopened as s:
                            async for event in s:
                                out.events.append(event)
                        out.response = s.response
                    elif complete:
                        out.response = await client.complete(prompt)
                    else:
                        out.response = await client.chat(prompt)
            except LLMError as exc:
                out.error = exc
            finally:
                for c in afb:
                    await c.aclose()

        asyncio.run(go())
    out.elapsed = time.monotonic() - started
    return out


# What each budget's TimeoutError says (the sync budgets, the async client's timers and the
# transports' own read timeouts word it differently; each names its phase).
_PHASES = {
    "total": re.compile(r"total timeout|deadline", re.IGNORECASE),
    # httpx's own read timeout on the async path: before the reply it can only be the
    # first-token budget, but the message names both (see the report of issue 15).
    "read": re.compile(r"read \(first token / idle\) timeout", re.IGNORECASE),
    "idle": re.compile(r"idle", re.IGNORECASE),
    "first_token": re.compile(r"first.token|read timeout", re.IGNORECASE),
}


def phase_of(error: BaseException | None) -> str:
    """Which budget a :class:`TimeoutError` names (``"total"``, ``"idle"``,
    ``"first_token"``, or ``"read"`` for the transport's read timeout), so a test can assert *which* one fired, not just that one did."""
    text = str(error)
    for phase, pattern in _PHASES.items():
        if pattern.search(text):
            return phase
    return f"unknown: {text}"


def phases(out: Outcome) -> list[str]:
    """The phase of every timeout of the call, retried ones first (see :func:`phase_of`)."""
    return [phase_of(e) for e in out.timeouts]
