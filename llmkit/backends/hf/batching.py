"""Dynamic batching for the ``hf`` backend: concurrent requests share generate() calls.

Every call of the backend (chat, complete, stream, their async twins and ``batch()``) turns
its request into a :class:`Job` and hands it to the backend's :class:`BatchScheduler`. One
worker thread (named ``llmkit-hf-generate``, started when work arrives and gone when none is
left) takes the oldest waiting job plus every other waiting job that may share its decoding
settings (same ``key``, up to ``max_batch_size``) and runs them as one left-padded generate()
call. Requests that arrive while a batch runs wait for the next one: rows never join a
running generate() (that would be continuous batching, see the module's notes below).

Each job keeps its own row (:class:`~llmkit.backends.hf.generation.RowState`): its text goes
to its own ``on_text`` callback, it ends on its own EOS, stop string, ``max_tokens`` or
deadline, and cancelling it (a closed stream, a cancelled task, a caller's timeout) marks
only that row done, so transformers pads it while the other rows go on. When every row of a
batch is done, generate() returns at the next step. A job with ``key=None`` (a seeded
request: the random generator is shared by the rows) always runs alone.

``batch_window`` (seconds, default small) lets an idle worker wait for more requests before
it starts: requests that arrive together (a burst of HTTP requests, ``asyncio.gather``) then
land in one batch instead of the first running alone. The wait ends as soon as no request
arrived for ``batch_window`` seconds (at most twenty windows in all), or when the batch is
full. The cap is generous because a request that misses a batch waits for the whole of it:
64 requests sent at once through ``asyncio.gather`` arrive one by one (each is rendered and
tokenized first, a millisecond or more apiece); on the loaded 2-core development machine a
cap of four windows (20 ms) cut such a burst into batches of 14 and 50, a cap of twenty into
29 and 35 (the remaining split is what continuous batching would remove).

Why not transformers' continuous batching (``generate_batch`` / ``init_continuous_batching``,
transformers 5)? It takes one GenerationConfig per manager (so no per-request sampling
settings beyond temperature/top-k/top-p), has no per-request StoppingCriteria or arbitrary
LogitsProcessor (llmkit's stop strings, incremental decoding, per-row grammar constraints
and ``logits_processor`` pass-through all hang on those), switches the shared model to a
paged attention implementation while it runs, keeps its own background thread and a
paged KV cache sized up front (pass ``num_blocks`` / ``max_batch_tokens`` on CPU: its
default sizing is meant for GPU memory), and its paged kernels do not give bit-identical
greedy answers to plain generate(). On a 2-core CPU (SmolLM2-135M, 8 prompts, explicit
small cache) it was also slower than one left-padded generate(). Dynamic batching over
plain generate() keeps all of llmkit's per-request behaviour; what it gives up is rows
joining a running batch, which matters most on GPUs under steady heavy load.
"""

from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .generation import RowState

__all__ = ["BatchScheduler", "Job"]

logger = logging.getLogger("llmkit.backends.hf")

P = TypeVar("P")
# The window never delays a batch by more than this many windows in all.
_WINDOW_CAP = 20
# How many recent batch sizes the scheduler remembers (for tests and diagnostics).
_HISTORY = 1024


@dataclass(eq=False)
class Job(Generic[P]):
    """One request waiting for, or taking part in, a batched generate() call.

    ``on_text(delta)`` and ``on_done(error)`` are called from the generating thread (or the
    thread that cancels a waiting job); they must be quick and must not call the scheduler.
    ``on_done`` is called exactly once, after the row's last text.
    """

    row: RowState
    key: Hashable | None
    """Jobs with equal keys may share a generate() call; ``None``: this job runs alone."""
    payload: P
    """What the runner needs to generate this row (the backend's prepared request)."""
    on_text: Callable[[str], None] | None = None
    on_done: Callable[[BaseException | None], None] | None = None
    budget: float | None = None
    """Seconds the row may take, counted from when its batch starts (``row.limit`` is then
    lowered to that time); ``row.limit`` alone counts from submission."""
    error: BaseException | None = None
    """Set when the generate() call this job took part in failed."""
    finished: threading.Event = field(default_factory=threading.Event)
    arrived: float = 0.0
    batch: _Batch[P] | None = None
    _finish_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def text(self, delta: str) -> None:
        if self.on_text is not None:
            self.on_text(delta)

    def finish(self, error: BaseException | None = None) -> None:
        """Report the job over (idempotent: only the first call counts)."""
        with self._finish_lock:
            if self.finished.is_set():
                return
            self.error = error
            self.finished.set()
        if self.on_done is not None:
            self.on_done(error)

    def drop(self, *, timed_out: bool = False) -> None:
        """End a job that never reached generate() (cancelled or out of time while waiting)."""
        self.row.cancelled = self.row.cancelled or not timed_out
        self.row.timed_out = timed_out
        self.row.done = True
        self.row.finish_reason = self.row.finish_reason or "stop"
        self.finish(None)


@dataclass(eq=False)
class _Batch(Generic[P]):
    jobs: list[Job[P]]
    ended: threading.Event = field(default_factory=threading.Event)

    def all_finished(self) -> bool:
        return all(job.finished.is_set() for job in self.jobs)


def _own_copy(error: BaseException) -> BaseException:
    """A copy of ``error`` for one waiter: several threads re-raising one exception object
    would splice their tracebacks into each other."""
    try:
        clone = copy.copy(error)
    except Exception:
        return error
    clone.__cause__, clone.__context__ = error.__cause__, error.__context__
    clone.__traceback__ = None
    return clone


class BatchScheduler(Generic[P]):
    """Collects waiting jobs and runs them, batched, on one worker thread.

    Args:
        run: runs one batch (a generate() call): it feeds the rows, calls ``job.text`` and
            ``job.finish`` as rows progress, and raises (a typed error) when generation
            fails; jobs it leaves unfinished are finished after it returns.
        max_batch_size: the most jobs in one batch.
        window: see the module docstring (``batch_window``).
        cost, budget: bound what one batch may cost (the backend's KV-cache budget).
    """

    def __init__(
        self,
        run: Callable[[Sequence[Job[P]]], None],
        *,
        max_batch_size: int,
        window: float = 0.0,
        thread_name: str = "llmkit-hf-generate",
        cost: Callable[[Sequence[Job[P]]], float] | None = None,
        budget: float | None = None,
    ) -> None:
        self._run = run
        self.cost = cost
        """What a batch of these jobs costs (bytes of KV cache); with ``budget``, a batch
        takes only as many waiting jobs as fit, the others wait for a later batch."""
        self.budget = budget
        self.max_batch_size = max(1, max_batch_size)
        self.window = max(0.0, window)
        self.thread_name = thread_name
        self._cond = threading.Condition()
        self._pending: list[Job[P]] = []
        self._running: _Batch[P] | None = None
        self._thread: threading.Thread | None = None
        self._retired: list[threading.Thread] = []
        self._last_arrival = 0.0
        self.sizes: collections.deque[int] = collections.deque(maxlen=_HISTORY)
        """Sizes of the most recent batches, oldest first (for tests and diagnostics)."""

    # ------------------------------------------------------------------ submitting

    def submit(self, *jobs: Job[P]) -> None:
        """Queue ``jobs`` (in this order) and make sure a worker runs them."""
        if not jobs:
            return
        now = time.monotonic()
        with self._cond:
            for job in jobs:
                job.arrived = now
                self._pending.append(job)
            self._last_arrival = now
            if self._thread is None:
                thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
                self._thread = thread
                thread.start()
            self._cond.notify_all()

    @property
    def waiting(self) -> int:
        """How many jobs wait for a batch."""
        with self._cond:
            return len(self._pending)

    # ------------------------------------------------------------------ stopping

    def cancel(self, *jobs: Job[P]) -> None:
        """Stop ``jobs`` without waiting: a waiting job is dropped, a running one has its row
        marked cancelled (the generating thread ends it at the next step); finished jobs
        are left alone."""
        dropped = []
        with self._cond:
            for job in jobs:
                if job.finished.is_set():
                    continue
                if job in self._pending:
                    self._pending.remove(job)
                    dropped.append(job)
                else:
                    job.row.cancelled = True
            if dropped and not self._pending and self._running is None:
                self._retire()
            self._cond.notify_all()
        for job in dropped:
            job.drop()

    def release(self, *jobs: Job[P], timeout: float | None = None) -> None:
        """:meth:`cancel` ``jobs``, then wait (up to ``timeout`` each) until their rows no
        longer run, and for the worker thread to end if it has nothing left to do."""
        self.cancel(*jobs)
        for job in jobs:
            batch = job.batch
            if batch is None:
                continue
            job.finished.wait(timeout)
            if batch.all_finished():
                # No row left: generate() returns at its next step.
                batch.ended.wait(timeout)
        self._join_retired(timeout)

    def settled(self, *jobs: Job[P]) -> bool:
        """Whether :meth:`release` of these (cancelled) jobs would return without waiting."""
        for job in jobs:
            batch = job.batch
            if batch is None:
                continue
            if not job.finished.is_set():
                return False
            if batch.all_finished() and not batch.ended.is_set():
                return False
        with self._cond:
            return not any(t.is_alive() for t in self._retired)

    def close(self, timeout: float | None = None) -> None:
        """Drop every waiting job, cancel every running row and wait for the worker."""
        with self._cond:
            dropped, self._pending = self._pending, []
            if self._running is not None:
                for job in self._running.jobs:
                    job.row.cancelled = True
            thread = self._thread
            if self._running is None and thread is not None:
                self._retire()
            self._cond.notify_all()
        for job in dropped:
            job.drop()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._join_retired(timeout)

    # ------------------------------------------------------------------ the worker

    def _retire(self) -> None:
        """Tell the worker to end (holding the lock); :meth:`_join_retired` waits for it."""
        if self._thread is not None:
            self._retired.append(self._thread)
            self._thread = None

    def _join_retired(self, timeout: float | None) -> None:
        with self._cond:
            self._retired = [t for t in self._retired if t.is_alive()]
            retired = list(self._retired)
        me = threading.current_thread()
        for thread in retired:
            if thread is not me:
                thread.join(timeout)

    def _compatible(self, head: Job[P], job: Job[P]) -> bool:
        return job is head or (head.key is not None and job.key == head.key)

    def _fit(self, mates: list[Job[P]]) -> list[Job[P]]:
        """The longest prefix of ``mates`` whose memory cost fits the budget (the head
        always runs: a job that cannot fit alone is refused before it is queued)."""
        if self.cost is None or self.budget is None:
            return mates
        while len(mates) > 1 and self.cost(mates) > self.budget:
            mates = mates[:-1]
        return mates

    def _next_batch(self, me: threading.Thread) -> _Batch[P] | None:
        """The next batch to run, or ``None`` when the worker should end (holding the lock)."""
        expired: list[Job[P]] = []
        try:
            while True:
                if self._thread is not me:
                    return None
                now = time.monotonic()
                for job in list(self._pending):
                    if job.row.cancelled:
                        self._pending.remove(job)
                        expired.append(job)
                    elif job.row.limit is not None and now > job.row.limit:
                        job.row.timed_out = True
                        self._pending.remove(job)
                        expired.append(job)
                if not self._pending:
                    self._retire()
                    return None
                head = self._pending[0]
                candidates = [j for j in self._pending if self._compatible(head, j)]
                mates = self._fit(candidates[: self.max_batch_size])
                # Full: no more rows allowed, or no more fit the memory budget.
                full = len(mates) >= self.max_batch_size or len(mates) < len(candidates)
                if self.window > 0 and head.key is not None and not full:
                    wake = min(
                        self._last_arrival + self.window, head.arrived + _WINDOW_CAP * self.window
                    )
                    if now < wake:
                        self._cond.wait(wake - now)
                        continue
                batch = _Batch(mates)
                for job in mates:
                    self._pending.remove(job)
                    job.batch = batch
                    if job.budget is not None:
                        ends = now + job.budget
                        limit = job.row.limit
                        job.row.limit = ends if limit is None else min(limit, ends)
                self._running = batch
                self.sizes.append(len(mates))
                return batch
        finally:
            for job in expired:
                job.drop(timed_out=job.row.timed_out)

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            with self._cond:
                batch = self._next_batch(me)
            if batch is None:
                return
            error: BaseException | None = None
            try:
                self._run(batch.jobs)
            except BaseException as exc:
                error = exc
            for job in batch.jobs:
                job.finish(None if error is None else _own_copy(error))
            with self._cond:
                self._running = None
                if not self._pending and self._thread is me:
                    self._retire()
                # Set after the decision above, so release() sees whether this thread ends.
                batch.ended.set()
                self._cond.notify_all()
