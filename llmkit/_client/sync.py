"""The synchronous driver: :class:`Client`.

It drives the call plan (:class:`~.plan.CallPlan`) with blocking waits: a
``threading.BoundedSemaphore`` for the request slots, ``time.sleep`` (through the retry
policy's and the rate limit's injectable clocks) for the waits the plan decides, and the
backend's sync methods for the I/O. No event loop per call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Unpack

from .. import _telemetry
from ..backends.base import Backend
from ..errors import LLMError
from ..tools import ToolBox, execute
from ..types import NOT_GIVEN, ChatResponse, EmbeddingResponse, NotGiven
from .batch import Collector, Progress, after_tool_turn, native_batch
from .core import ChatInput, _ClientCore, merge_embeddings
from .options import BatchOptions, ChatOptions, CompleteOptions, EmbedOptions, batch_settings
from .plan import CallPlan, _Call, _Target, send_chat, send_complete, send_embed
from .streams import Stream

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = ["Client"]

T = TypeVar("T")


class Client(_ClientCore):
    """The synchronous client.

    Args:
        model: a spec ``"backend:model"`` (``"openai:gpt-4o-mini"``, ``"hf:smollm2"``,
            ``"rest:my-model"``). Omitted: ``LLMKIT_MODEL``, ``LLMKIT_CONFIG``,
            ``./llmkit.toml``, then the embedded ``hf:smollm2``.
        backend: a ready backend instance instead of a spec (e.g.
            ``llmkit.testing.FakeBackend(...)``); the client does not close it.
        api_key, base_url: passed to the backend (which also reads the conventional
            environment variables, e.g. ``OPENAI_API_KEY``).
        timeout: seconds or :class:`~llmkit.Timeout`; the default for every call.
        retry: a :class:`~llmkit.RetryPolicy` (default: 3 attempts, exponential backoff).
        fallbacks: specs or clients tried in order when this backend fails with a retryable
            error after its retries.
        system: a default system prompt.
        tracing: an OpenTelemetry span per call (GenAI semantic conventions) when
            ``opentelemetry-api`` is installed (``llmkit[otel]``); ``False`` turns it off.
        tracer_provider: an OpenTelemetry ``TracerProvider`` to use instead of the global one.
        **options: ``temperature``, ``max_tokens``, ... become per-call defaults; anything
            else is a backend option (``dialect=`` for rest, ``device=`` for hf, ...).
    """

    _pool: ThreadPoolExecutor | None
    _pool_lock: threading.Lock

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backends this client created (and the threads of ``batch()``)."""
        self._close_owned()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _setup_concurrency(self) -> None:
        self._slots = threading.BoundedSemaphore(self._max_concurrency)
        self._pool = None
        self._pool_lock = threading.Lock()

    def _batch_pool(self) -> ThreadPoolExecutor:
        """The threads ``batch()`` runs its inputs on: made on first use and kept until
        :meth:`close` (starting threads for every batch costs more than a small batch of
        a natively batching backend does). ``max_concurrency`` of them: more could only
        queue for the request slots."""
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(
                    self._max_concurrency, thread_name_prefix="llmkit-batch"
                )
            return self._pool

    # -- the driver ------------------------------------------------------------------------

    def _run(self, call: _Call, op: Callable[[Backend, Any], T]) -> tuple[T, _Target]:
        """One logical call: the plan decides, this sends and sleeps."""
        token = self._trace_enter(call)
        try:
            plan = CallPlan(self, call)
            while True:
                try:
                    return self._attempt(plan, op), plan.target
                except LLMError as error:
                    wait = plan.after(error)
                    if wait is None:
                        raise
                if wait:
                    plan.target.retry.sleep(wait)
        except BaseException as error:
            self._after_failure(error, call)
            raise
        finally:
            if token is not None:
                _telemetry.CallSpan.deactivate(token)

    def _attempt(self, plan: CallPlan, op: Callable[[Backend, Any], T]) -> T:
        wait = plan.prepare()
        if wait:
            self._rate_limit.sleep(wait)  # type: ignore[union-attr]
        call, target = plan.call, plan.target
        if not self._slots.acquire(timeout=call.seconds_left()):
            raise call.queue_timeout(target)
        try:
            result = op(target.backend, plan.request())
        except BaseException as error:
            target.record(error)
            raise
        finally:
            self._slots.release()
        target.record(None)
        return result

    # -- the surface -------------------------------------------------------------------------

    def chat(self, messages: ChatInput, **options: Unpack[ChatOptions]) -> ChatResponse:
        """Send a conversation and return the answer.

        ``messages`` is a str, a :class:`~llmkit.Message`, an OpenAI-shaped dict, a list of
        those, or a :class:`~llmkit.Prompt` (with ``variables=``). Keyword arguments llmkit
        does not know are passed to the backend unchanged (see :class:`ChatOptions`).
        """
        return self._chat(self._prepare_chat(messages, options), send_chat)  # type: ignore[arg-type]

    def _chat(self, call: _Call, op: Callable[[Backend, Any], ChatResponse]) -> ChatResponse:
        """A chat call with its structured-output re-asks, each a run of the plan."""
        while True:
            response, target = self._run(call, op)
            response = self._finish(response, call, target)
            if call.response_model is None:
                return response
            next_call = self._structured_next(response, call)
            if next_call is None:
                return response
            call = next_call

    def stream(self, messages: ChatInput, **options: Unpack[ChatOptions]) -> Stream:
        """Like :meth:`chat`, but returns a :class:`Stream` of events (use it in ``with``).

        Arguments are validated now; the request is sent when the ``with`` block is entered
        (or iteration starts), and HTTP errors surface there, before the first event.
        """
        return Stream(self, self._prepare_chat(messages, options))  # type: ignore[arg-type]

    def complete(self, prompt: str, **options: Unpack[CompleteOptions]) -> ChatResponse:
        """Raw text completion (``prompt -> continuation``), for base models."""
        call = self._prepare_complete(prompt, options)  # type: ignore[arg-type]
        response, target = self._run(call, send_complete)
        return self._finish(response, call, target)

    def stream_complete(self, prompt: str, **options: Unpack[CompleteOptions]) -> Stream:
        """Like :meth:`complete`, but returns a :class:`Stream` of the continuation (use it
        in ``with``), with the same semantics as :meth:`stream`.

        Arguments are validated now; the request is sent when the ``with`` block is entered
        (or iteration starts). A backend without raw completion raises
        :class:`~llmkit.errors.UnsupportedFeatureError` there, before anything is sent.
        """
        call = self._prepare_complete(prompt, options, "stream_complete")  # type: ignore[arg-type]
        return Stream(self, call)

    def batch(
        self,
        inputs: Sequence[ChatInput],
        **options: Unpack[BatchOptions],
    ) -> list[Any]:
        """Answer many inputs, ``concurrency`` at a time, in input order.

        Each input is its own call through the whole pipeline: its own retries, fallbacks,
        hooks, request slot and span. With ``return_exceptions=True`` a failed item holds
        its own :class:`LLMError` instead of failing the whole batch. ``progress`` shows a
        counter on stderr (default: when stderr is a terminal). ``chat_options`` apply to
        every item. A backend with a native ``batch()`` (the local ``hf`` backend pads the
        inputs into one ``generate()``) receives the requests that are ready together; its
        default ``concurrency`` is 32 (at most ``max_concurrency``), so its batches fill.
        """
        chat_options: dict[str, Any] = dict(options)
        native = native_batch(self.backend)
        concurrency, return_exceptions, progress = batch_settings(
            chat_options, native, self._max_concurrency
        )
        tracker = Progress(len(inputs), progress)
        results: list[Any] = [None] * len(inputs)
        collector: Collector | None = None
        op: Callable[[Backend, Any], ChatResponse] = send_chat
        if native:
            limit = min(concurrency, self._max_concurrency)
            collector = Collector(self.backend, len(inputs), limit)
            op = collector.send

        def one(index: int) -> None:
            try:
                call = self._prepare_chat(inputs[index], dict(chat_options))
                results[index] = self._chat(call, op)
            except LLMError as error:
                if not return_exceptions:
                    raise  # the first error ends the batch
                results[index] = error
            finally:
                if collector is not None:
                    collector.finished()
                tracker.step()

        try:
            self._each_index(len(inputs), min(concurrency, len(inputs)), one)
        finally:
            tracker.close()
        return results

    def _each_index(self, count: int, workers: int, one: Callable[[int], None]) -> None:
        """``one(index)`` for each index below ``count``, on ``workers`` threads of the
        client's pool: a worker per concurrent item, each taking the next index in turn (not a
        thread per item). The first exception stops the workers after their current item and
        is raised."""
        failed: list[BaseException] = []
        indices = iter(range(count))
        take = threading.Lock()

        def work() -> None:
            while not failed:
                with take:
                    index = next(indices, None)
                if index is None:
                    return
                try:
                    one(index)
                except BaseException as error:
                    failed.append(error)
                    return

        futures = [self._batch_pool().submit(work) for _ in range(workers)]
        try:
            for future in futures:
                future.result()
        except BaseException as error:  # interrupted while waiting: the workers stop too
            failed.append(error)
            raise
        if failed:
            raise failed[0]

    def embed(
        self, inputs: str | Sequence[str], **options: Unpack[EmbedOptions]
    ) -> EmbeddingResponse:
        """Vectors for a text or a list of texts, one per input, in input order.

        Inputs longer than ``batch_size`` (default 128) are split into batches; each batch is
        a call of its own through the pipeline (retries, fallbacks, timeout, hooks, usage,
        span), and batches run concurrently on the client's threads within
        ``max_concurrency``. Bad input (no text, a non-``str`` item, an empty text) raises
        :class:`~llmkit.errors.InvalidInputError` before anything is sent.
        """
        calls = self._prepare_embed(inputs, dict(options))
        workers = self._embed_concurrency(len(calls))
        if workers == 1:
            return merge_embeddings([self._embed_batch(call) for call in calls])
        results: list[EmbeddingResponse | None] = [None] * len(calls)

        def one(index: int) -> None:
            results[index] = self._embed_batch(calls[index])

        self._each_index(len(calls), workers, one)
        return merge_embeddings([r for r in results if r is not None])

    def _embed_batch(self, call: _Call) -> EmbeddingResponse:
        response, target = self._run(call, send_embed)
        return self._finish_embed(response, call, target)

    def run_tools(
        self,
        messages: ChatInput,
        tools: Sequence[Any],
        *,
        max_turns: int = 8,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        **chat_options: Any,
    ) -> ChatResponse:
        """Chat, run the tools the model calls, send their results back, and repeat until the
        model answers without calling a tool (at most ``max_turns`` model calls).

        ``tools`` are Python functions, pydantic models or :class:`~llmkit.Tool` objects
        built from them. A tool that raises, or is called with invalid arguments, sends the
        error text back to the model. If the model still calls tools on the last turn, that
        response is returned as it is (check ``response.tool_calls``). A ``tool_choice`` that
        forces a call applies to the first turn only; later turns use ``"auto"``.
        """
        box = ToolBox(tools)
        conversation = self._conversation(messages, variables)
        options = chat_options
        response: ChatResponse | None = None
        for _ in range(max(1, max_turns)):
            response = self.chat(conversation, tools=box.tools, **options)
            if not response.tool_calls:
                return response
            options = after_tool_turn(options)
            conversation = [*conversation, response.message]
            conversation += [execute(call, box.by_name) for call in response.tool_calls]
        assert response is not None
        return response
