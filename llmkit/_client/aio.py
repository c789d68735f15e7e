"""The asynchronous driver: :class:`AsyncClient`.

It drives the same call plan as :class:`~.sync.Client` (:class:`~.plan.CallPlan`), waiting
with asyncio: request slots are :class:`~llmkit._slots.AsyncSlots` (FIFO, one future per
queued call, one timer for all deadlines), the plan's waits are awaited sleeps, and each
attempt runs under the call's total budget (``asyncio.timeout``).
"""

from __future__ import annotations

import functools
import sys
import warnings
from builtins import TimeoutError as TimeoutError_
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from typing_extensions import Unpack

from .. import _telemetry
from .._slots import AsyncSlots
from ..backends.base import Backend
from ..errors import LLMError
from ..tools import ToolBox, aexecute
from ..types import NOT_GIVEN, ChatResponse, EmbeddingResponse, NotGiven
from .batch import AsyncCollector, Progress, after_tool_turn, native_batch
from .core import ChatInput, _ClientCore, merge_embeddings
from .options import BatchOptions, ChatOptions, CompleteOptions, EmbedOptions, batch_settings
from .plan import (
    SLOT_EXPIRED,
    SLOT_HELD,
    SLOT_QUEUED,
    SLOT_USED,
    CallPlan,
    _Call,
    _Target,
    asend_chat,
    asend_complete,
    asend_embed,
)
from .streams import AsyncStream, with_budget

if TYPE_CHECKING:
    import asyncio
else:
    from .._lazy import lazy_module

    asyncio = lazy_module("asyncio", globals())  # only async calls need it: see _lazy

__all__ = ["AsyncClient"]

T = TypeVar("T")


_CLOSING: set[asyncio.Task[None]] = set()


class _CloseNotAwaited(Coroutine[Any, Any, None]):
    """What ``AsyncClient.close()`` returns: a coroutine that runs :meth:`AsyncClient.aclose`.

    ``close = aclose`` made a forgotten ``await client.close()`` a coroutine that never ran:
    nothing was closed, and nothing said so but a warning easy to miss. Dropped without an
    ``await``, this one still closes the client (on the running event loop when there is
    one, else synchronously through each backend's ``close()``) and its ``RuntimeWarning``
    says where the ``await`` is missing. A real ``Coroutine`` (send/throw/close), so
    ``asyncio.run(client.close())`` and ``create_task`` take it as they took ``aclose()``.
    """

    __slots__ = ("_client", "_coro", "_done")

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._coro: Coroutine[Any, Any, None] | None = None
        self._done = False

    def _inner(self) -> Coroutine[Any, Any, None]:
        self._done = True
        if self._coro is None:
            self._coro = self._client.aclose()
        return self._coro

    def __await__(self) -> Generator[Any, None, None]:
        return self._inner().__await__()

    def send(self, value: Any) -> Any:
        return self._inner().send(value)

    def throw(self, *args: Any) -> Any:
        return self._inner().throw(*args)

    def close(self) -> None:
        self._done = True  # closed on purpose, unstarted: nothing to warn about
        if self._coro is not None:
            self._coro.close()

    def __del__(self) -> None:
        if not self._done:
            self._done = True
            warnings.warn(
                "AsyncClient.close() was not awaited: the client was closed synchronously; "
                "write `await client.close()` (or `await client.aclose()`, or use "
                "`async with AsyncClient(...)`)",
                RuntimeWarning,
                stacklevel=2,
            )
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._client._close_owned()
                return
            task = loop.create_task(self._client.aclose())
            _CLOSING.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(_CLOSING.discard)


class AsyncClient(_ClientCore):
    """The asynchronous client: the same surface as :class:`Client`, awaitable."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backends this client created."""
        if self._closed:
            return
        self._closed = True
        for target in getattr(self, "_targets", []):
            if target.owned:
                await target.backend.aclose()

    def close(self) -> Coroutine[Any, Any, None]:
        """Close the backends this client created: ``await client.close()``, the same as
        :meth:`aclose`. Not awaited, the client is closed synchronously and a
        ``RuntimeWarning`` names the missing ``await``."""
        return _CloseNotAwaited(self)

    def _setup_concurrency(self) -> None:
        # asyncio primitives belong to one event loop; made on first use in each loop.
        self._slots_by_loop: dict[asyncio.AbstractEventLoop, AsyncSlots] = {}

    def _async_slots(self) -> AsyncSlots:
        loop = asyncio.get_running_loop()
        slots = self._slots_by_loop.get(loop)
        if slots is None:
            for old in [lp for lp in self._slots_by_loop if lp.is_closed()]:
                del self._slots_by_loop[old]
            slots = self._slots_by_loop[loop] = AsyncSlots(self._max_concurrency)
        return slots

    # A call waits for its slot in the caller's own coroutine (chat, complete, a stream's
    # open), awaiting the slot's future directly: a call queued behind max_concurrency then
    # holds its validated input and that future, and no frames of _run and _attempt. The
    # first attempt uses the slot; later attempts take their own.

    def _queue_ahead(self, call: _Call) -> asyncio.Future[bool] | None:
        """Take a slot for ``call`` now, or queue it: the future to await, then pass to
        :meth:`_seat`. Pair with :meth:`_leave` in a ``finally``."""
        waiter = self._async_slots().acquire(call.deadline)
        call.slot = SLOT_HELD if waiter is None else SLOT_QUEUED
        return waiter

    @staticmethod
    def _seat(call: _Call, acquired: bool) -> None:
        # Past its deadline, the call's first attempt raises the queue timeout (inside _run,
        # so hooks and the span see it as they see every failure).
        call.slot = SLOT_HELD if acquired else SLOT_EXPIRED

    def _leave(self, call: _Call, waiter: asyncio.Future[bool] | None) -> None:
        """Give back a slot the call took ahead but never used (it failed before its first
        attempt, or was cancelled while queued or just after a slot was handed over)."""
        if call.slot == SLOT_HELD:
            call.slot = SLOT_USED
            self._async_slots().release()
        elif call.slot == SLOT_QUEUED and waiter is not None:
            self._async_slots().abandon(waiter)

    # -- the driver ------------------------------------------------------------------------

    async def _run(
        self, call: _Call, op: Callable[[Backend, Any], Awaitable[T]]
    ) -> tuple[T, _Target]:
        """One logical call: the plan decides, this sends and sleeps (see Client._run)."""
        token = self._trace_enter(call)
        try:
            plan = CallPlan(self, call)
            while True:
                try:
                    return await self._attempt(plan, op), plan.target
                except LLMError as error:
                    wait = plan.after(error)
                    if wait is None:
                        raise
                if wait:
                    await plan.target.retry.async_sleep(wait)
        except BaseException as error:
            self._after_failure(error, call)
            raise
        finally:
            if token is not None:
                _telemetry.CallSpan.deactivate(token)

    async def _attempt(self, plan: CallPlan, op: Callable[[Backend, Any], Awaitable[T]]) -> T:
        call = plan.call
        wait = plan.prepare(queue_expired=call.slot == SLOT_EXPIRED)
        if wait:
            await self._rate_limit.async_sleep(wait)  # type: ignore[union-attr]
        target = plan.target
        slots = self._async_slots()
        if call.slot == SLOT_HELD:
            call.slot = SLOT_USED  # the slot the call queued for; released below
        else:
            waiter = slots.acquire(call.deadline)
            if waiter is not None:  # queued behind max_concurrency
                try:
                    acquired = await waiter
                except asyncio.CancelledError:
                    slots.abandon(waiter)
                    raise
                if not acquired:
                    raise call.queue_timeout(target)
        try:
            request = plan.request()
            if sys.version_info >= (3, 11):
                # Inline rather than through with_budget: one coroutine less per call.
                try:
                    async with asyncio.timeout(call.seconds_left()):
                        result = await op(target.backend, request)
                except TimeoutError_:
                    raise call.total_timeout(target) from None
            else:  # pragma: no cover - Python 3.10
                result = await with_budget(
                    op(target.backend, request),
                    call.seconds_left(),
                    functools.partial(call.total_timeout, target),
                )
        except BaseException as error:
            target.record(error)
            raise
        finally:
            slots.release()
        target.record(None)
        return result

    # -- the surface -------------------------------------------------------------------------

    async def chat(self, messages: ChatInput, **options: Unpack[ChatOptions]) -> ChatResponse:
        """Send a conversation and return the answer (see :meth:`Client.chat`)."""
        return await self._chat(self._prepare_chat(messages, options), asend_chat)  # type: ignore[arg-type]

    async def _chat(
        self, call: _Call, op: Callable[[Backend, Any], Awaitable[ChatResponse]]
    ) -> ChatResponse:
        """A chat call with its structured-output re-asks; it waits for its first slot here
        (see _queue_ahead)."""
        first, waiter = call, self._queue_ahead(call)
        try:
            if waiter is not None:
                self._seat(call, await waiter)
            while True:
                response, target = await self._run(call, op)
                response = self._finish(response, call, target)
                if call.response_model is None:
                    return response
                next_call = self._structured_next(response, call)
                if next_call is None:
                    return response
                call = next_call
        finally:
            self._leave(first, waiter)

    def stream(self, messages: ChatInput, **options: Unpack[ChatOptions]) -> AsyncStream:
        """An :class:`AsyncStream` (use ``async with``); arguments are validated now."""
        return AsyncStream(self, self._prepare_chat(messages, options))  # type: ignore[arg-type]

    async def complete(self, prompt: str, **options: Unpack[CompleteOptions]) -> ChatResponse:
        """Raw text completion (``prompt -> continuation``), for base models."""
        call = self._prepare_complete(prompt, options)  # type: ignore[arg-type]
        waiter = self._queue_ahead(call)
        try:
            if waiter is not None:
                self._seat(call, await waiter)
            response, target = await self._run(call, asend_complete)
        finally:
            self._leave(call, waiter)
        return self._finish(response, call, target)

    def stream_complete(self, prompt: str, **options: Unpack[CompleteOptions]) -> AsyncStream:
        """An :class:`AsyncStream` of a raw completion (use ``async with``); see
        :meth:`Client.stream_complete`. Arguments are validated now."""
        call = self._prepare_complete(prompt, options, "stream_complete")  # type: ignore[arg-type]
        return AsyncStream(self, call)

    async def batch(
        self,
        inputs: Sequence[ChatInput],
        **options: Unpack[BatchOptions],
    ) -> list[Any]:
        """Answer many inputs, ``concurrency`` at a time, in input order; each input is its
        own call through the pipeline (see :meth:`Client.batch`)."""
        chat_options: dict[str, Any] = dict(options)
        native = native_batch(self.backend)
        concurrency, return_exceptions, progress = batch_settings(
            chat_options, native, self._max_concurrency
        )
        tracker = Progress(len(inputs), progress)
        gate = asyncio.Semaphore(concurrency)
        op: Callable[[Backend, Any], Awaitable[ChatResponse]] = asend_chat
        if native:
            op = AsyncCollector(self.backend).send

        async def one(item: ChatInput) -> Any:
            async with gate:
                try:
                    return await self._chat(self._prepare_chat(item, dict(chat_options)), op)
                except LLMError as error:
                    if not return_exceptions:
                        raise
                    return error
                finally:
                    tracker.step()

        tasks = [asyncio.ensure_future(one(item)) for item in inputs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            tracker.close()

    async def embed(
        self, inputs: str | Sequence[str], **options: Unpack[EmbedOptions]
    ) -> EmbeddingResponse:
        """Vectors for a text or a list of texts, in input order (see :meth:`Client.embed`);
        the batches of a large input are sent concurrently, within ``max_concurrency``."""
        calls = self._prepare_embed(inputs, dict(options))
        workers = self._embed_concurrency(len(calls))
        if workers == 1:
            return merge_embeddings([await self._embed_batch(call) for call in calls])
        results: list[EmbeddingResponse | None] = [None] * len(calls)
        indices = iter(range(len(calls)))

        async def work() -> None:  # each worker sends batches in turn until none is left
            for index in indices:
                results[index] = await self._embed_batch(calls[index])

        tasks = [asyncio.ensure_future(work()) for _ in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()  # after a failure, the other workers stop
        return merge_embeddings([r for r in results if r is not None])

    async def _embed_batch(self, call: _Call) -> EmbeddingResponse:
        waiter = self._queue_ahead(call)
        try:
            if waiter is not None:
                self._seat(call, await waiter)
            response, target = await self._run(call, asend_embed)
        finally:
            self._leave(call, waiter)
        return self._finish_embed(response, call, target)

    async def run_tools(
        self,
        messages: ChatInput,
        tools: Sequence[Any],
        *,
        max_turns: int = 8,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        **chat_options: Any,
    ) -> ChatResponse:
        """The async tool loop (see :meth:`Client.run_tools`); the calls of one turn run
        concurrently (coroutine tools awaited, plain functions in worker threads)."""
        box = ToolBox(tools)
        conversation = self._conversation(messages, variables)
        response: ChatResponse | None = None
        for _ in range(max(1, max_turns)):
            response = await self.chat(conversation, tools=box.tools, **chat_options)
            if not response.tool_calls:
                return response
            chat_options = after_tool_turn(chat_options)
            results = await asyncio.gather(
                *(aexecute(call, box.by_name) for call in response.tool_calls)
            )
            conversation = [*conversation, response.message, *results]
        assert response is not None
        return response
