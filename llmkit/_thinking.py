"""Inline reasoning in the reply text: ``<think>...</think>answer``, decoded incrementally.

Models such as DeepSeek-R1, QwQ and Qwen3 write their reasoning into the reply itself,
between ``<think>`` and ``</think>``. Servers with a reasoning parser (vLLM
``--reasoning-parser``, llama.cpp, Ollama) move it into a field of their own; TGI, servers
without one, and in-process ``hf`` models do not. Every backend that may see inline tags runs
the reply text through :class:`ThinkTagDecoder`, which is I/O-free and incremental:

* a leading ``<think>`` (after optional whitespace) opens the reasoning, ``</think>`` closes
  it, and the rest is the answer; a reply that does not start with the tag is text, decided
  as soon as its first characters rule the tag out (so plain replies stream undelayed);
* ``inside=True`` starts in the reasoning, for a reply whose chat template already wrote the
  opening tag (the reply then only has ``</think>``);
* tags split across chunks are found: the decoder holds back a chunk's tail while it could
  still be the start of a tag;
* whitespace around the reasoning and before the answer is dropped (templates put newlines
  around the tags), so streaming a reply in any split gives the same reasoning and text as
  decoding it whole with :func:`split_think`.
"""

from __future__ import annotations

from typing import Literal

from .types import ReasoningDelta, StreamEvent, TextDelta

__all__ = ["CLOSE_TAG", "OPEN_TAG", "ThinkTagDecoder", "opens_thinking", "split_think"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

_State = Literal["start", "reasoning", "after", "text"]


def _partial_suffix(text: str, tag: str) -> int:
    """The length of the longest tail of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkTagDecoder:
    """Reply text in, :class:`~llmkit.types.ReasoningDelta` and
    :class:`~llmkit.types.TextDelta` events out (see the module docstring).

    Call :meth:`feed` with each piece of text as it arrives and :meth:`flush` once at the end
    (it releases anything held back: an unclosed reasoning block stays reasoning).
    """

    __slots__ = ("_pending", "_reasoning_started", "_state")

    def __init__(self, *, inside: bool = False) -> None:
        self._state: _State = "reasoning" if inside else "start"
        self._pending = ""
        self._reasoning_started = False

    @property
    def passthrough(self) -> bool:
        """Whether the rest of the reply is plain text (callers may skip the decoder)."""
        return self._state == "text"

    def feed(self, text: str) -> list[StreamEvent]:
        """The events ``text`` completes (possibly none: a tag may still be arriving)."""
        if self._state == "text":
            return [TextDelta(delta=text)] if text else []
        out: list[StreamEvent] = []
        self._step(text, out)
        return out

    def flush(self) -> list[StreamEvent]:
        """The events left at the end of the reply."""
        out: list[StreamEvent] = []
        pending, self._pending = self._pending, ""
        if self._state == "start" and pending:
            out.append(TextDelta(delta=pending))  # e.g. "<thi": not a tag after all
        elif self._state == "reasoning":
            self._reasoning(pending.rstrip(), out)
        self._state = "text"
        return out

    def _step(self, text: str, out: list[StreamEvent]) -> None:
        if self._state == "start":
            pending = self._pending + text
            head = pending.lstrip()
            if head.startswith(OPEN_TAG):
                self._state, self._pending = "reasoning", ""
                text = head[len(OPEN_TAG) :]
            elif OPEN_TAG.startswith(head):  # empty, or a tag still arriving
                self._pending = pending
                return
            else:
                self._state, self._pending = "text", ""
                out.append(TextDelta(delta=pending))
                return
        if self._state == "reasoning":
            pending = self._pending + text
            end = pending.find(CLOSE_TAG)
            if end < 0:
                # Hold back what may be the start of the closing tag, and trailing
                # whitespace (dropped if the tag follows it).
                keep = _partial_suffix(pending, CLOSE_TAG)
                body = pending[: len(pending) - keep].rstrip()
                self._pending = pending[len(body) :]
                self._reasoning(body, out)
                return
            self._reasoning(pending[:end].rstrip(), out)
            self._state, self._pending = "after", ""
            text = pending[end + len(CLOSE_TAG) :]
        if self._state == "after":
            text = text.lstrip()
            if not text:
                return
            self._state = "text"
        if text:
            out.append(TextDelta(delta=text))

    def _reasoning(self, text: str, out: list[StreamEvent]) -> None:
        if not self._reasoning_started:
            text = text.lstrip()
        if text:
            self._reasoning_started = True
            out.append(ReasoningDelta(reasoning=text))


def split_think(text: str, *, inside: bool = False) -> tuple[str | None, str]:
    """A whole reply as ``(reasoning or None, answer text)``, decoded exactly as a stream of
    it would be."""
    decoder = ThinkTagDecoder(inside=inside)
    reasoning: list[str] = []
    answer: list[str] = []
    for event in [*decoder.feed(text), *decoder.flush()]:
        if isinstance(event, ReasoningDelta):
            reasoning.append(event.reasoning)
        elif isinstance(event, TextDelta):
            answer.append(event.delta)
    return ("".join(reasoning) or None), "".join(answer)


def opens_thinking(prompt: str) -> bool:
    """Whether a rendered prompt ends inside an open ``<think>`` block (the chat template
    started the reasoning, so the reply begins inside it)."""
    tail = prompt.rstrip()
    start = tail.rfind(OPEN_TAG)
    return start >= 0 and CLOSE_TAG not in tail[start:]
