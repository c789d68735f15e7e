"""The stream objects: :class:`Stream` and :class:`AsyncStream`.

What they share (:class:`_StreamState`) is the accumulation of events into the response
(one :class:`~llmkit.streaming.StreamAccumulator`, the same ``ChatResponse`` a plain call
returns), the per-event budgets (first token, idle, total) and the span. Opening a stream
runs the call's plan like any call (retries, fallbacks, slots, hooks) up to its first
event; after an event has reached the caller nothing is retried.
"""

from __future__ import annotations

import sys
import time
from builtins import TimeoutError as TimeoutError_
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .. import structured
from ..backends.base import Backend
from ..errors import ConfigError, LLMError, OutputValidationError, TimeoutError
from ..streaming import StreamAccumulator
from ..types import ChatResponse, StreamEvent, Usage
from .plan import _Call, _Target, open_backend_astream, open_backend_stream, spec_label

if TYPE_CHECKING:
    import asyncio

    from .aio import AsyncClient
    from .core import _ClientCore
    from .sync import Client
else:
    from .._lazy import lazy_module

    asyncio = lazy_module("asyncio", globals())  # only async calls need it: see _lazy

__all__ = ["AsyncStream", "Stream", "with_budget"]

T = TypeVar("T")


def open_stream(backend: Backend, request: Any) -> tuple[Iterator[Any], Any]:
    """Start a backend stream and pull its first event, so that errors surface (and can be
    retried) before the caller has seen anything."""
    iterator = open_backend_stream(backend, request)
    try:
        first = next(iterator, None)
    except BaseException:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        raise
    return iterator, first


class _StreamState(Generic[T]):
    """What :class:`Stream` and :class:`AsyncStream` share: accumulation and the response."""

    # Slots: one stream object is held per call queued behind max_concurrency.
    __slots__ = (
        "_accumulator",
        "_call",
        "_client",
        "_closed",
        "_deadline",
        "_events_seen",
        "_finished",
        "_iterator",
        "_pending",
        "_response",
        "_target",
    )

    def __init__(self, client: _ClientCore, call: _Call) -> None:
        self._client = client
        self._call = call
        self._iterator: T | None = None
        self._pending: Any = None
        self._accumulator: StreamAccumulator | None = None
        self._target: _Target | None = None
        self._finished = False
        self._closed = False
        self._response: ChatResponse | None = None
        self._events_seen = 0
        self._deadline = call.deadline  # read per event: kept rather than recomputed
        call.stream = True  # the span lives from opening the stream to its end

    def _started(self, iterator: T, first: Any, target: _Target) -> None:
        self._iterator, self._pending, self._target = iterator, first, target
        self._accumulator = StreamAccumulator(
            model=target.backend.model, backend=spec_label(target.backend)
        )
        if self._call.span is not None:
            self._call.span.stream_started(target.backend, first is not None)

    def _end_of_stream(self) -> None:
        """The backend's stream is over: finish the response now (the ``llm call`` log
        record, usage totals, ``on_response``), whether or not the caller reads
        ``response``, and end the span with the same id and request id."""
        self._finished = True
        try:
            self._finished_response()
        finally:
            self._trace_end()

    def _trace_end(self, error: BaseException | None = None) -> None:
        """End the stream's span: with ``error``, else finished or closed early."""
        span = self._call.span
        if span is None or span.ended:
            return
        if error is not None:
            span.fail(error, self._call.attempts)
            return
        response, acc = self._response, self._accumulator
        reply: ChatResponse | StreamAccumulator | None = None
        usage: Usage | None = None
        if response is not None:
            reply, usage = response, response.usage
        elif acc is not None:  # closed early: what had accumulated
            reply, usage = acc, acc.usage or Usage.estimate(self._call.prompt_text(), acc.text)
        span.stream_done(reply, usage, self._call.attempts, closed_early=not self._finished)

    def _budget(self) -> float:
        """Seconds allowed for the next event: first-token budget, then idle, within total."""
        phase = (
            self._call.timeout.first_token if self._events_seen == 0 else self._call.timeout.idle
        )
        return max(0.0, min(phase, self._deadline - time.monotonic()))

    def _deadline_error(self) -> TimeoutError:
        assert self._target is not None
        if time.monotonic() >= self._call.deadline:
            message = f"total timeout of {self._call.timeout.total:g}s exceeded while streaming"
        else:
            what = "first token" if self._events_seen == 0 else "next chunk (idle)"
            message = f"stream timed out waiting for the {what}"
        return TimeoutError(
            message, backend=self._target.backend.name, model=self._target.backend.model
        )

    def _seen(self, event: Any) -> Any:
        assert self._accumulator is not None
        self._events_seen += 1
        self._accumulator.add(event)
        return event

    def _finished_response(self) -> ChatResponse:
        """The accumulated response, finished (logged, counted) exactly once."""
        if self._response is None:
            assert self._accumulator is not None and self._target is not None
            response = self._accumulator.response(prompt_text=self._call.prompt_text())
            self._response = self._client._finish(response, self._call, self._target)
        return self._response

    def _build_response(self) -> ChatResponse:
        response = self._finished_response()
        model = self._call.response_model
        if model is not None and self._finished and response.parsed is None:
            parsed, errors = structured.validate_output(response.text, model)
            if parsed is None:
                raise OutputValidationError(
                    f"the streamed reply did not validate against {model.__name__}",
                    raw_text=response.text,
                    errors=errors,
                )
            response.parsed = parsed
        return response


class Stream(_StreamState[Iterator[Any]]):
    """A streamed answer (of :meth:`Client.stream` or :meth:`Client.stream_complete`):
    iterate for events (each has ``.text``), then read ``.response``.

    Leaving the ``with`` block (or calling :meth:`close`) before the end closes the
    underlying request or stops local generation.
    """

    __slots__ = ()
    _client: Client

    def __enter__(self) -> Stream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if self._iterator is None:
            if self._closed:
                raise ConfigError("this stream is closed")
            (iterator, first), target = self._client._run(self._call, open_stream)
            self._started(iterator, first, target)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> StreamEvent:
        # Once per token: the common case (open, nothing pending, not ended) reads two
        # attributes and the clock, and adds the event to the accumulator in place.
        iterator = self._iterator
        if iterator is None or self._pending is not None or self._finished or self._closed:
            return self._next_special()
        if time.monotonic() >= self._deadline:
            error = self._deadline_error()
            self._trace_end(error)
            self.close()
            raise error
        try:
            event = next(iterator)
        except StopIteration:
            self._end_of_stream()
            raise
        except BaseException as error:
            self._trace_end(error)
            self.close()
            raise
        self._events_seen += 1
        self._accumulator.add(event)  # type: ignore[union-attr]
        return event  # type: ignore[no-any-return]

    def _next_special(self) -> StreamEvent:
        """:meth:`__next__` before the stream is open, for the event read when it opened,
        and after its end."""
        if self._iterator is None:
            self._open()
        if self._pending is not None:
            event, self._pending = self._pending, None
            return self._seen(event)  # type: ignore[no-any-return]
        if self._finished or self._closed:
            raise StopIteration
        return self.__next__()

    def close(self) -> None:
        """Stop the stream and release its connection (or generation thread)."""
        if self._closed:
            return
        self._closed = True
        self._trace_end()  # a no-op unless the caller left early
        if self._iterator is not None and not self._finished:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                close()

    @property
    def response(self) -> ChatResponse:
        """The accumulated response. If the stream is still open, the rest is read first;
        after an early close it holds what arrived until then."""
        self._open()
        if not self._finished and not self._closed:
            for _ in self:
                pass
        return self._build_response()

    def text_stream(self) -> Iterator[str]:
        """Just the text deltas."""
        for event in self:
            if event.text:
                yield event.text


# ======================================================================================
# async


async def with_budget(awaitable: Awaitable[T], seconds: float, error: Callable[[], LLMError]) -> T:
    if sys.version_info >= (3, 11):
        # asyncio.timeout cancels in place; wait_for would wrap every call in a new Task.
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError_:
            raise error() from None
    try:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, timeout=seconds)
    except asyncio.TimeoutError:
        raise error() from None


class _EventTimer:
    """The per-event budget of an :class:`AsyncStream`, with one timer per stream.

    ``asyncio.timeout`` around every event schedules and cancels a timer handle per token
    (several microseconds each, a good part of llmkit's cost per streamed token). Here a wait
    only records its deadline; the one pending timer, when it fires, either finds the wait
    still running past its deadline and cancels the task (as ``asyncio.timeout`` would, and
    with the same ``uncancel`` bookkeeping), or re-arms itself for the current deadline.
    Python 3.11+ (``Task.uncancel``).
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_task", "_until", "_when")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._until = self._when = 0.0
        self._cancelling = 0
        self._expired = False

    def start(self, seconds: float) -> None:
        """A wait for the next event begins; it may last ``seconds``."""
        self._task = task = asyncio.current_task(self._loop)
        self._cancelling = task.cancelling()  # type: ignore[union-attr]  # 3.11+: see above
        self._until = until = self._loop.time() + seconds
        if self._handle is None or until < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = until
            self._handle = self._loop.call_at(until, self._fire)

    def stop(self) -> bool:
        """The wait ended; whether it ran out of time (its CancelledError is ours)."""
        task, self._task = self._task, None
        if not self._expired or task is None:
            return False
        self._expired = False
        if sys.version_info >= (3, 11):
            return task.uncancel() <= self._cancelling
        return True  # pragma: no cover - only used on Python 3.11+

    def _fire(self) -> None:
        self._handle = None
        if self._task is None:
            return  # between waits: the next start() arms a timer again
        if self._until > self._when:  # this wait began after the timer was set
            self._when = self._until
            self._handle = self._loop.call_at(self._until, self._fire)
            return
        self._expired = True
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class AsyncStream(_StreamState[AsyncIterator[Any]]):
    """The async counterpart of :class:`Stream` (of :meth:`AsyncClient.stream` or
    :meth:`AsyncClient.stream_complete`); the first-token and idle budgets of the
    call's timeout are enforced on every event, so a stalled stream fails."""

    __slots__ = ("_first_token", "_idle", "_timer")
    _client: AsyncClient

    def __init__(self, client: AsyncClient, call: _Call) -> None:
        super().__init__(client, call)
        self._timer: _EventTimer | None = None
        self._first_token = call.timeout.first_token  # read per event: kept
        self._idle = call.timeout.idle

    async def __aenter__(self) -> AsyncStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> None:
        if self._iterator is not None:
            return
        if self._closed:
            raise ConfigError("this stream is closed")

        client, call = self._client, self._call
        waiter = client._queue_ahead(call)
        try:
            if waiter is not None:
                client._seat(call, await waiter)
            (iterator, first), target = await client._run(call, self._open_backend)
        finally:
            client._leave(call, waiter)
        self._started(iterator, first, target)

    async def _open_backend(self, backend: Backend, request: Any) -> tuple[AsyncIterator[Any], Any]:
        """One attempt: start the backend stream and wait for its first event (within the
        first-token budget). A method, not a closure: it is held by every queued stream."""
        iterator = open_backend_astream(backend, request)
        try:
            first = await with_budget(
                iterator.__anext__(),
                max(
                    0.0,
                    min(self._call.timeout.first_token, self._call.deadline - time.monotonic()),
                ),
                lambda: TimeoutError(
                    "stream timed out waiting for the first token",
                    backend=backend.name,
                    model=backend.model,
                ),
            )
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _aclose(iterator)
            raise
        return iterator, first

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> StreamEvent:
        # Once per token: the common case (open, nothing pending, not ended, the event
        # timer running) awaits the backend's next event directly, with no coroutine of
        # its own in between; everything else takes _anext_special.
        timer = self._timer
        if timer is None or self._pending is not None:
            return await self._anext_special()
        # The budget of this wait: idle (first token before any event), within the total.
        # Comparisons rather than min()/max(): this runs once per token. A budget already
        # spent (negative) makes the timer fire at once, as a zero one would.
        seconds = self._deadline - time.monotonic()
        phase = self._idle if self._events_seen else self._first_token
        timer.start(phase if phase < seconds else seconds)
        try:
            try:
                event = await self._iterator.__anext__()  # type: ignore[union-attr]
            except asyncio.CancelledError:
                if timer.stop():
                    raise self._deadline_error() from None
                raise
            except BaseException:
                timer.stop()
                raise
            timer.stop()
        except StopAsyncIteration:
            self._stop_timer()
            self._end_of_stream()
            raise
        except BaseException as error:
            self._trace_end(error)
            await self.aclose()
            raise
        self._events_seen += 1
        self._accumulator.add(event)  # type: ignore[union-attr]
        return event  # type: ignore[no-any-return]

    async def _anext_special(self) -> StreamEvent:
        """:meth:`__anext__` before the stream is open, for the event read when it opened,
        after its end, and on Python 3.10 (no event timer: a budget per event)."""
        if self._iterator is None:
            await self._open()
        if self._pending is not None:
            event, self._pending = self._pending, None
            return self._seen(event)  # type: ignore[no-any-return]
        if self._finished or self._closed:
            raise StopAsyncIteration
        if sys.version_info >= (3, 11):
            self._timer = _EventTimer()  # from now on __anext__ takes its common case
            return await self.__anext__()
        try:  # pragma: no cover - Python 3.10
            event = await with_budget(
                self._iterator.__anext__(),  # type: ignore[union-attr]
                self._budget(),
                self._deadline_error,
            )
        except StopAsyncIteration:  # pragma: no cover - Python 3.10
            self._end_of_stream()
            raise
        except BaseException as error:  # pragma: no cover - Python 3.10
            self._trace_end(error)
            await self.aclose()
            raise
        return self._seen(event)  # type: ignore[no-any-return]  # pragma: no cover

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    async def aclose(self) -> None:
        """Stop the stream and release its connection (or generation thread)."""
        if self._closed:
            return
        self._closed = True
        self._trace_end()  # a no-op unless the caller left early
        self._stop_timer()
        if self._iterator is not None and not self._finished:
            await _aclose(self._iterator)

    close = aclose

    async def get_response(self) -> ChatResponse:
        """The accumulated response, reading the rest of the stream first if it is open."""
        await self._open()
        if not self._finished and not self._closed:
            async for _ in self:
                pass
        return self._build_response()

    @property
    def response(self) -> ChatResponse:
        """The accumulated response once the stream has ended (or was closed); use
        ``await stream.get_response()`` to read the rest of an open stream first."""
        if self._iterator is None:
            raise ConfigError(
                "the stream has not started; iterate it (or await get_response()) first"
            )
        return self._build_response()

    async def text_stream(self) -> AsyncIterator[str]:
        """Just the text deltas."""
        async for event in self:
            if event.text:
                yield event.text


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except RuntimeError:
            # "aclose(): asynchronous generator is already running" after a cancelled
            # __anext__: the generator is finalised by the event loop instead.
            pass
