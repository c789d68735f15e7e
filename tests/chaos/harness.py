"""The chaos suite's runner: drive one call through the sync ``Client`` or the
``AsyncClient`` against the fault server and record how it ended."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from llmkit import AsyncClient, ChatResponse, Client, RetryPolicy, Timeout
from llmkit.errors import LLMError

# Small budgets keep the suite fast; every scenario's bound below is derived from them.
TIMEOUT = Timeout(connect=1, first_token=0.5, idle=0.3, total=3)
RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)


@dataclass
class Outcome:
    """How one call ended: its response or its error, the events a stream delivered before
    the end, and the wall time (client construction and closing included)."""

    response: ChatResponse | None = None
    error: BaseException | None = None
    events: list[Any] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        return "".join(e.text for e in self.events) if self.events else ""


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
    started = time.monotonic()
    if mode == "sync":
        fb = [Client(f"{kind}:m", **f) for f in fallbacks or []]
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
            afb = [AsyncClient(f"{kind}:m", **f) for f in fallbacks or []]
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
