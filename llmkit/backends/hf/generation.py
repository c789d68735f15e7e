"""Generation helpers of the ``hf`` backend: decoding, stop strings, generate() settings.

The pieces here are small and mostly I/O-free so they can be tested on their own:

* :class:`IncrementalDecoder` turns token ids into text deltas one token at a time, holding
  back bytes of an unfinished UTF-8 character and word-piece prefixes, so a streamed answer
  never shows a broken character and costs O(1) decode work per token (a plain
  ``TextIteratorStreamer`` re-decodes the whole answer each token and emits on spaces only).
* :class:`StopMatcher` cuts text at the first stop string, holding back a suffix that could
  still become one, so the stop text itself is never returned (streamed or not).
* :class:`GenerationControl` is the one ``StoppingCriteria`` that drives a generate() call:
  it sees every new token of every row, feeds decoders and matchers, and ends each row on
  its own EOS, stop string, ``max_tokens``, deadline or cancellation (a row marked done is
  padded by transformers while the others go on; generate() returns once all are done).
  Streaming, non-streaming and batched calls all go through it, so their texts are built by
  the same code.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ...errors import InvalidInputError
from ...types import GenerationParams

if TYPE_CHECKING:
    import torch
    from transformers import GenerationConfig

__all__ = [
    "GenerationControl",
    "IncrementalDecoder",
    "RowState",
    "StopMatcher",
    "build_generation_config",
    "sampling_key",
]

# generate() arguments that are objects rather than GenerationConfig fields, passed through.
_PASSTHROUGH_KWARGS = frozenset({"logits_processor"})
# GenerationConfig fields that would break the one-row-per-request bookkeeping, or that
# llmkit sets itself from named parameters.
_FORBIDDEN_EXTRA = {
    "num_beams": "beam search is not supported by the hf backend",
    "num_return_sequences": "ask once per answer (or use batch()) instead",
    "stop_strings": "use the 'stop' parameter",
    "return_dict_in_generate": "llmkit reads the tokens itself",
    "max_length": "use 'max_tokens'",
    "max_new_tokens": "use 'max_tokens'",
    "max_time": "use 'timeout'",
}


class IncrementalDecoder:
    """Token ids in, text deltas out, never splitting a character or a word piece.

    It decodes a small window: the tokens since the previous emission plus the chunk before
    them as context (needed by tokenizers whose decoding of a piece depends on what precedes
    it, e.g. SentencePiece's leading spaces). A window that ends in U+FFFD is an unfinished
    multi-byte character: nothing is emitted until the next token completes it.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (often ``""``)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        text = self._decode(self.ids[self._prefix_offset :])
        if len(text) > len(prefix) and not text.endswith("\ufffd"):
            self._prefix_offset = self._read_offset
            self._read_offset = len(self.ids)
            return text[len(prefix) :]
        return ""

    def flush(self) -> str:
        """The text still held back at the end (an unfinished character decodes as U+FFFD)."""
        prefix = self._decode(self.ids[self._prefix_offset : self._read_offset])
        text = self._decode(self.ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self.ids)
        return text[len(prefix) :] if len(text) > len(prefix) else ""


class StopMatcher:
    """Cuts a text stream at the first occurrence of any stop string.

    ``feed`` returns the text that is safe to show and whether a stop string was found; a
    suffix that is the beginning of a stop string is held back until it is decided.
    """

    def __init__(self, stops: Iterable[str] = ()) -> None:
        self.stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self.stops:
            return text, False
        buf = self._pending + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._pending = ""
            return buf[: min(hits)], True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        self._pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """The held-back text: at the end of generation it is plain text after all."""
        pending, self._pending = self._pending, ""
        return pending


@dataclass
class RowState:
    """Book-keeping of one sequence (one request) inside a generate() call."""

    prompt_tokens: int
    max_new_tokens: int
    decoder: IncrementalDecoder
    matcher: StopMatcher
    parts: list[str] = field(default_factory=list)
    completion_tokens: int = 0
    done: bool = False
    finish_reason: str | None = None
    limit: float | None = None
    """A ``time.monotonic()`` value after which the row ends with :attr:`timed_out` set."""
    cancelled: bool = False
    """Set (from any thread) to end the row at the next step; the other rows go on."""
    timed_out: bool = False

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _torch() -> Any:
    import torch

    return torch


class GenerationControl:
    """The stopping criterion that watches every token of a generate() call.

    ``on_text(row, delta)`` is called (in the generating thread) for every piece of text a
    row produces, and ``on_done(row)`` once when a row ends, after its last text. A row ends
    on EOS, a stop string, its ``max_new_tokens``, its ``limit`` (then ``timed_out`` is set
    on it) or when it is marked ``cancelled``; the others go on. :meth:`cancel` makes the
    whole call stop after the current step; ``limit`` is a ``time.monotonic()`` value after
    which the whole call stops too and sets :attr:`timed_out`.
    """

    def __init__(
        self,
        rows: Sequence[RowState],
        *,
        eos_token_ids: Iterable[int],
        on_text: Callable[[int, str], None] | None = None,
        on_done: Callable[[int], None] | None = None,
        limit: float | None = None,
    ) -> None:
        self.rows = list(rows)
        self.eos_token_ids = frozenset(eos_token_ids)
        self.on_text = on_text
        self.on_done = on_done
        self.limit = limit
        self.cancelled = threading.Event()
        self.timed_out = False
        self._done: list[bool] = []
        self._done_tensor: torch.Tensor | None = None

    def cancel(self) -> None:
        """Ask the generation to stop at the next step (thread-safe)."""
        self.cancelled.set()

    # StoppingCriteria interface: generate() calls this after appending each new token.
    def __call__(self, input_ids: torch.Tensor, scores: Any = None, **kwargs: Any) -> torch.Tensor:
        th = _torch()
        new_tokens: list[int] = input_ids[:, -1].tolist()
        now = time.monotonic()
        for index, (row, token) in enumerate(zip(self.rows, new_tokens, strict=True)):
            if row.done:
                continue
            if row.cancelled:
                self._end(index, row, "stop")
            elif row.limit is not None and now > row.limit:
                row.timed_out = True
                self._end(index, row, "stop")
            else:
                self._advance(index, row, token)
        stop_all = self.cancelled.is_set()
        if self.limit is not None and now > self.limit:
            self.timed_out = stop_all = True
        done = [True] * len(self.rows) if stop_all else [row.done for row in self.rows]
        # Most steps change no row: reuse the tensor of the previous step rather than copy
        # a new one to the device every step (on a GPU that copy waits for the host).
        if done != self._done or self._done_tensor is None:
            self._done = done
            self._done_tensor = th.tensor(done, dtype=th.bool, device=input_ids.device)
        result: torch.Tensor = self._done_tensor
        return result

    def _emit(self, index: int, row: RowState, text: str) -> None:
        if text:
            row.parts.append(text)
            if self.on_text is not None:
                self.on_text(index, text)

    def _feed(self, index: int, row: RowState, delta: str) -> bool:
        text, hit = row.matcher.feed(delta)
        self._emit(index, row, text)
        return hit

    def _advance(self, index: int, row: RowState, token: int) -> None:
        row.completion_tokens += 1
        if token in self.eos_token_ids:
            self._finish(index, row, "stop")
            return
        delta = row.decoder.push(token)
        if delta and self._feed(index, row, delta):
            self._end(index, row, "stop")
            return
        if row.completion_tokens >= row.max_new_tokens:
            self._finish(index, row, "length")

    def _end(self, index: int, row: RowState, reason: str) -> None:
        """Mark a row done (no more text from it) and report it."""
        row.done = True
        row.finish_reason = reason
        if self.on_done is not None:
            self.on_done(index)

    def _finish(self, index: int, row: RowState, reason: str) -> None:
        """End a row normally: the text held back for decoding or stop strings comes out."""
        row.done = True
        row.finish_reason = reason
        if self._feed(index, row, row.decoder.flush()):
            reason = "stop"
        else:
            self._emit(index, row, row.matcher.flush())
        self._end(index, row, reason)

    def finalize(self) -> None:
        """Close rows generate() left open (model context full, or cancelled)."""
        for index, row in enumerate(self.rows):
            if row.done:
                continue
            if row.cancelled or row.timed_out:
                self._end(index, row, "stop")
            else:
                self._finish(index, row, "stop" if self.cancelled.is_set() else "length")


def _given(params: GenerationParams, name: str) -> Any:
    return getattr(params, name) if name in params.model_fields_set else None


def build_generation_config(
    base: GenerationConfig,
    params: GenerationParams,
    extra: Mapping[str, Any],
    *,
    max_new_tokens: int,
    pad_token_id: int | None,
) -> tuple[GenerationConfig, dict[str, Any]]:
    """The GenerationConfig (and extra generate() kwargs) for one request.

    Decoding is greedy unless the caller asks for sampling: ``temperature > 0`` (or ``top_p``
    alone, or ``do_sample=True`` in ``extra``). ``temperature=0`` is greedy. Greedy by
    default makes a local model's answers reproducible; this is documented on the backend.
    ``extra`` may set any other GenerationConfig field (``repetition_penalty``, ``top_k``,
    ``min_p``, ``no_repeat_ngram_size``, ...) and ``logits_processor``.
    """
    config = copy.deepcopy(base)
    known = set(config.to_dict())
    kwargs: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    for key, value in extra.items():
        if key in _FORBIDDEN_EXTRA:
            raise InvalidInputError(f"hf: option {key!r} is not supported: {_FORBIDDEN_EXTRA[key]}")
        if key in _PASSTHROUGH_KWARGS:
            kwargs[key] = value
        elif key in known:
            overrides[key] = value
        else:
            raise InvalidInputError(
                f"hf: unknown generation option {key!r}; pass a transformers GenerationConfig "
                "field (repetition_penalty, top_k, min_p, no_repeat_ngram_size, ...) or "
                "logits_processor"
            )
    temperature = _given(params, "temperature")
    top_p = _given(params, "top_p")
    if "do_sample" in overrides:
        sample = bool(overrides.pop("do_sample"))
    elif temperature is not None:
        sample = temperature > 0
    else:
        sample = top_p is not None
    config.do_sample = sample
    if sample:
        config.temperature = temperature if temperature else (base.temperature or 1.0)
        config.top_p = top_p if top_p is not None else (base.top_p or 1.0)
        # OpenAI-style sampling has no top-k cut; a model's own top_k would silently apply.
        config.top_k = overrides.pop("top_k", None)
    else:
        # Unset sampling knobs so transformers does not warn that they are ignored.
        config.temperature = None
        config.top_p = None
        config.top_k = None
    for key, value in overrides.items():
        setattr(config, key, value)
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    if pad_token_id is not None:
        config.pad_token_id = pad_token_id
    return config, kwargs


def sampling_key(params: GenerationParams, extra: Mapping[str, Any]) -> str:
    """Requests with equal keys can share one batched generate() call."""
    parts = {
        name: getattr(params, name)
        for name in ("temperature", "top_p", "seed")
        if name in params.model_fields_set
    }
    return repr(sorted(parts.items())) + repr(sorted((k, repr(v)) for k, v in extra.items()))
