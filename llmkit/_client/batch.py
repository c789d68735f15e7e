"""What ``batch()`` and ``run_tools()`` of both clients share (no I/O).

``batch()`` itself runs every input as its own call through the call plan (its own
retries, fallbacks, hooks, request slot, span and exception object), ``concurrency`` at a
time; a backend that batches natively collects the calls in flight together (the ``hf``
backend's scheduler pads concurrent requests into one ``generate()``), so the pipeline is
not bypassed to get the speed.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Awaitable, Sequence, Sized
from typing import TYPE_CHECKING, Any, cast

from ..backends.base import Backend, SupportsBatch
from ..errors import ProtocolError
from ..types import ChatResponse

if TYPE_CHECKING:
    import asyncio
else:
    from .._lazy import lazy_module

    asyncio = lazy_module("asyncio", globals())  # only async batches need it: see _lazy

__all__ = ["AsyncCollector", "Collector", "Progress", "after_tool_turn", "native_batch"]


class Progress:
    """A tiny stderr counter for batches (no dependency; silent unless stderr is a tty)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        import sys

        self._stream = sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.done += 1
            if self.enabled:
                self._stream.write(f"\rllmkit batch: {self.done}/{self.total}")
                self._stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._stream.write("\n")
            self._stream.flush()


def after_tool_turn(chat_options: dict[str, Any]) -> dict[str, Any]:
    """The options for the turn after the model called tools: a ``tool_choice`` that forces
    a call (``"required"`` or a named tool) goes back to ``"auto"``, or the model could never
    give its final answer and the loop would only end at ``max_turns``."""
    if chat_options.get("tool_choice", "auto") in ("auto", "none"):
        return chat_options
    return {**chat_options, "tool_choice": "auto"}


def _own_error(error: BaseException, index: int) -> BaseException:
    """The error for the ``index``-th call of a failed native batch: each call gets its own
    object (its traceback, its ``__context__``, what a hook attaches to it)."""
    return error if index == 0 else copy.copy(error)


class _Waiting:
    __slots__ = ("done", "error", "request", "response")

    def __init__(self, request: Any) -> None:
        self.request = request
        self.done = threading.Event()
        self.response: ChatResponse | None = None
        self.error: BaseException | None = None


class Collector:
    """Sends the requests of a sync ``batch()`` that are ready together to the backend's
    native ``batch()`` at once; each call still runs its own plan (its retries, hooks,
    slot) and gets its own response or its own exception.

    A batch goes when as many calls wait as can (``expected()``: the unfinished inputs,
    at most ``concurrency`` and ``max_concurrency``), or ``linger`` seconds after a call
    began to wait (calls sleeping for a retry do not hold the others back longer). The
    thread that completes a batch sends it; the others wait for their answers.
    """

    def __init__(self, backend: Backend, unfinished: int, limit: int, linger: float = 0.05):
        self.backend = backend
        self._lock = threading.Lock()
        self._pending: list[_Waiting] = []
        self._unfinished = unfinished
        self._limit = limit
        self._linger = linger

    def finished(self) -> None:
        """One input of the batch is done (answered or failed for good)."""
        with self._lock:
            self._unfinished -= 1

    def send(self, backend: Backend, request: Any) -> ChatResponse:
        """The op of one attempt: through the native batch for the batching backend, a
        plain call for a fallback."""
        if backend is not self.backend:
            return backend.chat(request)
        waiting = _Waiting(request)
        with self._lock:
            self._pending.append(waiting)
            batch = self._take(len(self._pending) >= min(self._limit, self._unfinished))
        if batch:
            self._send(batch)
        elif not waiting.done.wait(self._linger):
            with self._lock:
                batch = self._take(waiting in self._pending)
            if batch:
                self._send(batch)
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        assert waiting.response is not None
        return waiting.response

    def _take(self, ready: bool) -> list[_Waiting]:
        if not ready:
            return []
        batch, self._pending = self._pending, []
        return batch

    def _send(self, batch: list[_Waiting]) -> None:
        try:
            responses = cast(SupportsBatch, self.backend).batch([w.request for w in batch])
            _check_count(responses, batch, self.backend)
        except BaseException as error:
            for index, waiting in enumerate(batch):
                waiting.error = _own_error(error, index)
                waiting.done.set()
            return
        for waiting, response in zip(batch, responses, strict=True):
            waiting.response = response
            waiting.done.set()


class AsyncCollector:
    """:class:`Collector` for asyncio: the requests of the calls that reach their send in
    the same turn of the event loop go to the backend's ``abatch()`` together."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._pending: list[tuple[Any, asyncio.Future[ChatResponse]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, backend: Backend, request: Any) -> Awaitable[ChatResponse]:
        if backend is not self.backend:
            return backend.achat(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ChatResponse] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((request, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Any, asyncio.Future[ChatResponse]]]) -> None:
        live = [(r, f) for r, f in batch if not f.done()]  # a cancelled call is not sent
        if not live:
            return
        try:
            responses = await cast(SupportsBatch, self.backend).abatch([r for r, _ in live])
            _check_count(responses, live, self.backend)
        except BaseException as error:
            for index, (_, future) in enumerate(live):
                if not future.done():
                    future.set_exception(_own_error(error, index))
            if not isinstance(error, Exception):
                raise
            return
        for (_, future), response in zip(live, responses, strict=True):
            if not future.done():
                future.set_result(response)


def _check_count(responses: Sequence[Any], batch: Sized, backend: Backend) -> None:
    if len(responses) != len(batch):
        raise ProtocolError(
            f"{type(backend).__name__}.batch() answered {len(responses)} of {len(batch)} "
            "requests; a native batch must answer each request, in order",
            backend=backend.name,
            model=backend.model,
        )


def native_batch(backend: Backend) -> bool:
    """Whether ``backend`` batches natively (implements :class:`SupportsBatch`)."""
    return isinstance(backend, SupportsBatch)
