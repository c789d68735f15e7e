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
    """A logits processor that makes every decoding step take ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        time.sleep(self.delay)
        return scores


def slow(delay: float, **extra: Any) -> dict[str, Any]:
    # A sampling key of its own (a new processor object); min_new_tokens keeps the random
    # model from ending early on EOS.
    return {"logits_processor": [Slow(delay)], "min_new_tokens": 20, **extra}


def generate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "llmkit-hf-generate"]


def wait_no_generate_threads(timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while generate_threads() and time.monotonic() < end:
        time.sleep(0.01)
    assert not generate_threads()
