"""Reasoning for in-process models: the chat template's thinking switch, and ``<think>``
tags in the generated text (I/O-free; no torch here).

**The switch.** Chat templates of reasoning models read a variable of their own:
Qwen3-style templates ``enable_thinking`` (a boolean), gpt-oss-style ones
``reasoning_effort`` (``"low"``/``"medium"``/``"high"``). Which one a template has is read
from the template text, and ``reasoning_effort=`` is mapped onto it:

===================  =====================================  ===============================
template reads       ``reasoning_effort``                   sent to the template
===================  =====================================  ===============================
``enable_thinking``  ``"none"``                             ``enable_thinking=False``
``enable_thinking``  any other level                        ``enable_thinking=True`` (the
                                                            model has one thinking mode)
``reasoning_effort`` ``"low"``, ``"medium"``, ``"high"``    ``reasoning_effort=<level>``
``reasoning_effort`` ``"none"``, ``"minimal"``              UnsupportedFeatureError
neither              any                                    UnsupportedFeatureError
===================  =====================================  ===============================

**The round trip.** An assistant message's reasoning is handed to the template as
``reasoning_content`` (Qwen3) or ``thinking`` (gpt-oss) when the template reads that field;
the template itself decides which turns keep it. Otherwise it is left out.

**The reply.** The text is decoded with :class:`~llmkit._thinking.ThinkTagDecoder`; when
the rendered prompt ends inside an open ``<think>`` (DeepSeek-R1-style templates open it),
the reply starts in the reasoning. Reasoning tokens are counted by tokenizing the reasoning
text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from ..._thinking import ThinkTagDecoder, split_think
from ...errors import UnsupportedFeatureError
from ...types import (
    ChatResponse,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    UsageEvent,
)

__all__ = [
    "ReasoningFilter",
    "reasoning_key",
    "stream_filter",
    "template_switch",
    "with_reasoning",
]

_LEVELS = ("low", "medium", "high")


def _reads(template: str | None, name: str) -> bool:
    return bool(template) and re.search(rf"\b{name}\b", str(template)) is not None


def template_switch(template: str | None, effort: str | None, model: str) -> dict[str, Any]:
    """The keyword arguments for ``apply_chat_template`` that ask the template for
    ``effort`` (``{}`` when no effort was given); raises
    :class:`~llmkit.errors.UnsupportedFeatureError` when the template cannot honour it."""
    if effort is None:
        return {}
    if _reads(template, "enable_thinking"):
        return {"enable_thinking": effort != "none"}
    if _reads(template, "reasoning_effort"):
        if effort not in _LEVELS:
            raise UnsupportedFeatureError(
                f"hf:{model}: the chat template takes reasoning_effort 'low', 'medium' or "
                f"'high'; {effort!r} cannot be honoured"
            )
        return {"reasoning_effort": effort}
    raise UnsupportedFeatureError(
        f"hf:{model}: the chat template has no thinking switch (neither enable_thinking nor "
        "reasoning_effort), so reasoning_effort cannot be honoured; drop it"
    )


def reasoning_key(template: str | None) -> str | None:
    """The message field the template reads reasoning from (``None``: it reads none)."""
    for key in ("reasoning_content", "thinking"):
        if _reads(template, key):
            return key
    return None


def with_reasoning(
    response: ChatResponse, inside: bool | None, count: Callable[[str], int]
) -> ChatResponse:
    """``response`` with ``<think>`` reasoning moved out of its text (and counted);
    ``inside`` tells where the reply starts (``None``: a raw completion, left alone)."""
    if inside is None:
        return response
    reasoning, text = split_think(response.message.text, inside=inside)
    if reasoning is None and text == response.message.text:
        return response
    response.message = Message(role="assistant", content=text, reasoning=reasoning)
    if reasoning is not None:
        response.usage.reasoning_tokens = count(reasoning)
    return response


def stream_filter(inside: bool | None, count: Callable[[str], int]) -> ReasoningFilter | None:
    """The filter for a chat stream (``None`` for a raw completion's)."""
    return None if inside is None else ReasoningFilter(inside, count)


class ReasoningFilter:
    """A stream's text events through the tag decoder; the usage event gets the count of
    the reasoning tokens. Feed every event to :meth:`push`."""

    def __init__(self, inside: bool, count: Callable[[str], int]) -> None:
        self._tags = ThinkTagDecoder(inside=inside)
        self._count = count
        self._reasoning: list[str] = []
        self._flushed = False

    def push(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, TextDelta):
            return self._seen(self._tags.feed(event.delta))
        out: list[StreamEvent] = []
        if not self._flushed:
            self._flushed = True
            out = self._seen(self._tags.flush())
        if isinstance(event, UsageEvent) and self._reasoning:
            usage = event.usage.model_copy(
                update={"reasoning_tokens": self._count("".join(self._reasoning))}
            )
            event = UsageEvent(usage=usage)
        out.append(event)
        return out

    def _seen(self, events: list[StreamEvent]) -> list[StreamEvent]:
        for event in events:
            if isinstance(event, ReasoningDelta):
                self._reasoning.append(event.reasoning)
        return events

    def run(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """``events`` filtered; closing the result closes ``events``."""
        try:
            for event in events:
                yield from self.push(event)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
