"""Helpers shared by the hf backend tests: requests, slow/EOS-forcing logits processors, and
the generate-thread census."""

from __future__ import annotations

import threading
import time
from typing import Any

from llmkit.types import ChatRequest, GenerationParams, Message


def chat_request(
    text: str = "Hello", extra: dict[str, Any] | None = None, **params: Any
) -> ChatRequest:
    return ChatRequest(
        model="tiny",
        messages=[Message.user(text)],
        params=GenerationParams(**params),
        extra=extra or {},
    )


class Slow:
    """A logits processor that makes every decoding step take ``delay`` seconds and counts
    the steps (``steps``), so a test tells a generation that was stopped from one that ran
    on by the count, not by a wall clock that a loaded machine slows down."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps += 1
        time.sleep(self.delay)
        return scores


def slow(delay: float, **extra: Any) -> dict[str, Any]:
    # A sampling key of its own (a new processor object); min_new_tokens keeps the random
    # model from ending early on EOS.
    return {"logits_processor": [Slow(delay)], "min_new_tokens": 20, **extra}


def steps_of(extra: dict[str, Any]) -> Slow:
    """The step-counting :class:`Slow` processor of a :func:`slow` request's extras."""
    processor = extra["logits_processor"][0]
    assert isinstance(processor, Slow)
    return processor


# A generation that only a stop can end early: 400 steps, no EOS before the last.
ENDLESS = 400
# Steps a generation may run past the moment it was stopped: the decoding thread can run
# ahead of a consumer that a loaded machine has not scheduled yet. Far below ENDLESS, so a
# stop that waited for the end (or never came) still fails.
STEPS_AHEAD = ENDLESS // 2


def endless(delay: float) -> dict[str, Any]:
    """Extras for a :data:`ENDLESS`-step generation of ``delay`` seconds a step."""
    return slow(delay, min_new_tokens=ENDLESS)


def generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llmkit-hf-generate"]


def wait_no_generate_threads(timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while generate_threads() and time.monotonic() < end:
        time.sleep(0.01)
    assert not generate_threads()
