"""The compiled fast path of the ``hf`` backend (``compile=True``): static KV caches.

A single stream (a generate() call of one row) can decode with a *static* KV cache: its
tensors are allocated once at a fixed length, so every decoding step has the same shapes and
transformers compiles the model's forward with ``torch.compile`` (mode ``reduce-overhead``:
CUDA graphs, one graph replay per step instead of hundreds of kernel launches from Python).
transformers does this by itself whenever generate() is given a static cache on CUDA; it
leaves the forward uncompiled on a CPU, where the static cache alone runs.

Shapes are bucketed so recompiles stay rare: the cache length is the next power of two that
holds the prompt and ``max_tokens`` (at least 256, at most the model's context), and each
bucket's cache is kept and reset between calls, so one compilation serves every later call
that fits in it. The first call of a bucket pays the compilation; :class:`StaticCaches`
records how long that call took (:attr:`StaticCaches.warmups`) and the backend logs it.
Batches of several rows, requests that need more than the context, and vision-language
models (whose composite config and image inputs the static path was not built for) keep the
dynamic cache. :class:`CompiledDecoding` is the part of the backend that picks the cache.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...types import ChatResponse, CompletionRequest, GenerationParams

if TYPE_CHECKING:
    from .loading import LoadedModel
    from .prepare import _Prepared

__all__ = ["CompiledDecoding", "StaticCaches", "bucket_length", "static_cache_kwarg"]

logger = logging.getLogger("llmkit.backends.hf")

# The smallest cache bucket: short answers share one compiled graph.
MIN_BUCKET = 256


def bucket_length(needed: int, context: int | None, minimum: int = MIN_BUCKET) -> int | None:
    """The static cache length for ``needed`` positions, or ``None`` when none fits."""
    length = max(minimum, 1)
    while length < needed:
        length *= 2
    if context is not None and context > 0:
        if needed > context:
            return None
        length = min(length, context)
    return length


def static_cache_kwarg(model: Any) -> str:
    """The generate() keyword that takes a cache: ``cache`` in newer transformers (which
    deprecate ``past_key_values`` with a warning), ``past_key_values`` before."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


class StaticCaches:
    """Static KV caches of one model, one per length bucket, for single-row generate() calls.

    Only the generating thread uses a cache at a time (the backend's generate lock), so the
    caches need no lock of their own; the ``warmups`` record is read from other threads.
    """

    def __init__(self, model: Any, *, context: int | None) -> None:
        self._model = model
        self._context = context
        self._caches: dict[int, Any] = {}
        self._lock = threading.Lock()
        self.warmups: dict[int, float] = {}
        """Seconds the first call of each bucket took (compilation included), by length."""

    def take(self, needed: int) -> tuple[int, Any] | None:
        """A reset static cache (and its bucket length) for ``needed`` positions, or ``None``
        when the request needs more than the model's context."""
        length = bucket_length(needed, self._context)
        if length is None:
            return None
        cache = self._caches.get(length)
        if cache is None:
            from transformers import StaticCache

            cache = StaticCache(config=self._model.config, max_cache_len=length)
            self._caches[length] = cache
        else:
            cache.reset()
        return length, cache

    def first_use(self, length: int) -> bool:
        with self._lock:
            return length not in self.warmups

    def record(self, length: int, seconds: float) -> None:
        """Note the first call of a bucket (compilation and warm-up) and log it."""
        with self._lock:
            if length in self.warmups:
                return
            self.warmups[length] = seconds
        logger.info(
            "hf: first generate() with a static cache of %d positions took %.1fs "
            "(torch.compile on CUDA included)",
            length,
            seconds,
        )


class CompiledDecoding:
    """The backend's static caches (mixed into it, whose settings it reads)."""

    model: str
    settings: Any  # HuggingFaceSettings
    _static: StaticCaches | None
    _static_model: Any

    def complete(self, request: CompletionRequest) -> ChatResponse:
        raise NotImplementedError  # the backend generates

    def _static_cache(self, loaded: LoadedModel, group: Sequence[_Prepared]) -> Any:
        """``(length, cache)``: the reset static cache a single row decodes with when
        ``compile=True``, else ``None``."""
        if not self.settings.compile or len(group) != 1 or loaded.processor is not None:
            return None
        if self._static is None or self._static_model is not loaded.model:
            context = getattr(loaded.model.config, "max_position_embeddings", None)
            self._static = StaticCaches(
                loaded.model, context=context if isinstance(context, int) else None
            )
            self._static_model = loaded.model
        p = group[0]
        return self._static.take(len(p.input_ids) + p.max_new_tokens)

    @property
    def compile_warmups(self) -> dict[int, float]:
        """With ``compile=True``: seconds the first call of each static-cache length took
        (``torch.compile`` on CUDA included), by cache length; later calls of that length
        reuse the compiled graph."""
        return dict(self._static.warmups) if self._static is not None else {}

    def warmup(self, max_tokens: int = 16) -> dict[int, float]:
        """Load the model and generate one short answer of ``max_tokens`` now, so the first
        caller does not pay for it; with ``compile=True`` this compiles the static-cache
        length that a short prompt plus ``max_tokens`` falls in. Returns
        :attr:`compile_warmups` (empty without ``compile``)."""
        request = CompletionRequest(
            model=self.model,
            prompt="Hello",
            params=GenerationParams(max_tokens=max_tokens),
            extra={"min_new_tokens": max_tokens},
        )
        self.complete(request)
        return self.compile_warmups
