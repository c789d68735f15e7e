"""Dynamic batching in the hf backend: concurrent independent calls share generate() calls.

Batching is asserted on the scheduler's record of batch sizes, never on timing. To make the
grouping deterministic on a loaded machine, most tests first occupy the model with a slow
"blocker" stream (its own sampling key, so it runs alone); the requests under test then
queue up behind it, and are released together when the blocker is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hf_testkit import Slow, chat_request, generate_threads, slow, wait_no_generate_threads

from llmkit import errors
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.timeouts import Timeout
from llmkit.types import ChatRequest, CompletionRequest, GenerationParams, TextDelta

PROMPTS = ["Hello", "What is the capital of France?", "Tell me a story", "café 🙂"]


pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def backend(tiny_llama_dir: Path) -> Iterator[HuggingFaceBackend]:
    """A backend of its own per test, so its batch record starts empty."""
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_new_tokens=24)
    backend.load()
    yield backend
    backend.close()


def sizes(backend: HuggingFaceBackend) -> list[int]:
    return list(backend._scheduler.sizes)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


@contextlib.contextmanager
def model_busy(backend: HuggingFaceBackend, waiting: int) -> Iterator[None]:
    """Keep the model busy with a slow stream until ``waiting`` requests queue behind it."""
    blocker = backend.stream(chat_request("Hello", max_tokens=400, extra=slow(0.05)))
    assert isinstance(next(blocker), TextDelta)
    try:
        yield
        wait_until(lambda: backend._scheduler.waiting >= waiting)
    finally:
        blocker.close()  # type: ignore[attr-defined]


class PadWatch:
    """A logits processor that never lets a row pick the pad token, and records how many
    rows transformers padded (rows marked done) at each step; optionally slow."""

    def __init__(self, pad: int, delay: float = 0.0) -> None:
        self.pad, self.delay = pad, delay
        self.padded: list[int] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.padded.append(int((input_ids[:, -1] == self.pad).sum()))
        scores[:, self.pad] = -float("inf")
        if self.delay:
            time.sleep(self.delay)
        return scores


class Boom:
    """A logits processor that fails at its third step."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps += 1
        if self.steps == 3:
            raise RuntimeError("boom")
        return scores


def mixed_requests() -> list[ChatRequest | CompletionRequest]:
    """Greedy requests with one sampling key but different lengths, stops and kinds."""
    requests: list[ChatRequest | CompletionRequest] = [
        chat_request(p, max_tokens=6 + 3 * i) for i, p in enumerate(PROMPTS)
    ]
    requests.append(chat_request("Hello", max_tokens=20, stop=["e"]))
    requests.append(
        CompletionRequest(
            model="tiny", prompt="Once upon a time", params=GenerationParams(max_tokens=7)
        )
    )
    return requests


def one_by_one(backend: HuggingFaceBackend, requests: list[Any]) -> list[tuple[str, str, Any]]:
    out = []
    for r in requests:
        response = backend.complete(r) if isinstance(r, CompletionRequest) else backend.chat(r)
        out.append((response.text, response.finish_reason, response.usage))
    return out


def test_concurrent_threads_are_batched_and_answer_as_one_by_one(
    backend: HuggingFaceBackend,
) -> None:
    requests = mixed_requests()
    expected = one_by_one(backend, requests)
    assert sizes(backend) == [1] * len(requests)  # one at a time: nothing to batch

    def run(i: int) -> tuple[str, str, Any]:
        r = requests[i]
        if isinstance(r, CompletionRequest):
            response = backend.complete(r)
            return response.text, response.finish_reason, response.usage
        if i % 2:  # streams and plain calls share batches
            events = list(backend.stream(r))
            text = "".join(e.text for e in events)
            return text, events[-1].finish_reason, events[-2].usage  # type: ignore[union-attr]
        response = backend.chat(r)
        return response.text, response.finish_reason, response.usage

    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=len(requests)) as pool:
        with model_busy(backend, waiting=len(requests)):
            futures = [pool.submit(run, i) for i in range(len(requests))]
        results = [f.result(timeout=60) for f in futures]
    assert results == expected
    # The blocker, then every queued request in one generate() call.
    assert sizes(backend)[before:] == [1, len(requests)]
    wait_no_generate_threads()


async def test_concurrent_tasks_are_batched_and_answer_as_one_by_one(
    backend: HuggingFaceBackend,
) -> None:
    requests = mixed_requests()
    expected = one_by_one(backend, requests)

    async def run(i: int) -> tuple[str, str, Any]:
        r = requests[i]
        if isinstance(r, CompletionRequest):
            response = await backend.acomplete(r)
            return response.text, response.finish_reason, response.usage
        if i % 2:
            events = [e async for e in backend.astream(r)]
            text = "".join(e.text for e in events)
            return text, events[-1].finish_reason, events[-2].usage  # type: ignore[union-attr]
        response = await backend.achat(r)
        return response.text, response.finish_reason, response.usage

    before = len(sizes(backend))
    blocker = backend.astream(chat_request("Hello", max_tokens=400, extra=slow(0.05)))
    assert isinstance(await blocker.__anext__(), TextDelta)
    tasks = [asyncio.create_task(run(i)) for i in range(len(requests))]
    while backend._scheduler.waiting < len(requests):
        await asyncio.sleep(0.005)
    await blocker.aclose()  # type: ignore[attr-defined]
    results = await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert results == expected
    assert sizes(backend)[before:] == [1, len(requests)]


async def test_requests_arriving_together_share_a_batch_thanks_to_the_window(
    tiny_llama_dir: Path,
) -> None:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", batch_window=0.2)
    backend.load()
    try:
        requests = [chat_request(p, max_tokens=8) for p in PROMPTS]
        results = await asyncio.gather(*(backend.achat(r) for r in requests))
        assert sizes(backend) == [len(requests)]
        assert [r.text for r in results] == [backend.chat(r).text for r in requests]
    finally:
        backend.close()


def test_closing_one_stream_ends_only_its_row(backend: HuggingFaceBackend) -> None:
    pad = backend.tokenizer.pad_token_id
    watch = PadWatch(pad)
    extra = {"logits_processor": [watch], "min_new_tokens": 30}
    requests = [chat_request(p, max_tokens=30, extra=extra) for p in PROMPTS[:3]]
    expected = [backend.chat(r).text for r in requests]
    watch.padded.clear()
    watch.delay = 0.02
    closed_after: list[int] = []

    def consume(i: int) -> str:
        stream = backend.stream(requests[i])
        if i != 1:
            return "".join(e.text for e in stream)
        seen = [next(stream) for _ in range(3)]
        stream.close()  # type: ignore[attr-defined]
        # Where the batch was when close() returned (checked below): not its end (30).
        closed_after.append(len(watch.padded))
        return "".join(e.text for e in seen)

    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=3) as pool:
        with model_busy(backend, waiting=3):
            futures = [pool.submit(consume, i) for i in range(3)]
        texts = [f.result(timeout=60) for f in futures]
    assert sizes(backend)[before:] == [1, 3]
    # The other rows ran to their end, with the answers they get alone.
    assert texts[0] == expected[0] and texts[2] == expected[2]
    assert expected[1].startswith(texts[1]) and len(texts[1]) < len(expected[1])
    # The closed row was padded from (about) when it was closed; the others never were.
    step = closed_after[0]
    assert step < 25
    assert max(watch.padded) == 1
    assert all(n == 1 for n in watch.padded[step + 2 :])
    wait_no_generate_threads()


def test_closing_every_stream_of_a_batch_stops_generate(backend: HuggingFaceBackend) -> None:
    pad = backend.tokenizer.pad_token_id
    watch = PadWatch(pad, delay=0.02)
    extra = {"logits_processor": [watch], "min_new_tokens": 300}
    requests = [chat_request(p, max_tokens=300, extra=extra) for p in PROMPTS[:2]]
    streams = [backend.stream(r) for r in requests]
    first: list[Future[Any]] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        with model_busy(backend, waiting=2):
            first = [pool.submit(next, s) for s in streams]
        assert all(isinstance(f.result(timeout=30), TextDelta) for f in first)
    assert sizes(backend)[-1] == 2
    for stream in streams:
        stream.close()  # type: ignore[attr-defined]
    # The last close waited for generate() to return and the worker to end.
    assert not generate_threads()
    assert len(watch.padded) < 100


def test_a_timeout_of_one_request_leaves_the_others_intact(backend: HuggingFaceBackend) -> None:
    extra = {"min_new_tokens": 40}
    requests = [chat_request(p, max_tokens=40, extra=extra) for p in PROMPTS[:3]]
    expected = [backend.chat(r).text for r in requests]
    # The same (score-neutral) slow processor for all: one sampling key, ~2 s per batch.
    shared = {"logits_processor": [Slow(0.05)], "min_new_tokens": 40}
    for r in requests:
        r.extra = shared
    requests[1].timeout = Timeout(first_token=1.0)

    def run(i: int) -> Any:
        try:
            return backend.chat(requests[i]).text
        except errors.TimeoutError as exc:
            return exc

    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=3) as pool:
        with model_busy(backend, waiting=3):
            futures = [pool.submit(run, i) for i in range(3)]
        results = [f.result(timeout=60) for f in futures]
    assert sizes(backend)[before:] == [1, 3]
    assert isinstance(results[1], errors.TimeoutError)
    assert results[0] == expected[0] and results[2] == expected[2]
    wait_no_generate_threads()


def test_different_sampling_settings_are_not_mixed(backend: HuggingFaceBackend) -> None:
    greedy = [chat_request(p, max_tokens=6) for p in PROMPTS[:2]]
    sampled = [chat_request(p, max_tokens=6, temperature=0.7) for p in PROMPTS[:2]]
    interleaved = [greedy[0], sampled[0], greedy[1], sampled[1]]
    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = []
        with model_busy(backend, waiting=4):
            for r in interleaved:
                futures.append(pool.submit(backend.chat, r))
                # Submit in order, so the oldest request is a greedy one.
                wait_until(lambda n=len(futures): backend._scheduler.waiting >= n)
        for f in futures:
            f.result(timeout=60)
    # The oldest request with its kind first, then the other kind: never one batch of 4.
    assert sizes(backend)[before:] == [1, 2, 2]
    assert [r.text for r in backend.batch(greedy)] == [backend.chat(r).text for r in greedy]


def test_a_seeded_request_runs_alone(backend: HuggingFaceBackend) -> None:
    request = chat_request("Tell me a story", max_tokens=10, temperature=1.0, seed=7)
    alone = backend.chat(request).text
    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=3) as pool:
        with model_busy(backend, waiting=3):
            futures = [pool.submit(backend.chat, request) for _ in range(3)]
        texts = [f.result(timeout=60).text for f in futures]
    assert sizes(backend)[before:] == [1, 1, 1, 1]
    assert texts == [alone] * 3
    # batch() keeps them apart too.
    before = len(sizes(backend))
    assert [r.text for r in backend.batch([request, request])] == [alone, alone]
    assert sizes(backend)[before:] == [1, 1]


def test_a_failing_generate_fails_every_request_of_its_batch(
    backend: HuggingFaceBackend,
) -> None:
    extra = {"logits_processor": [Boom()]}
    requests = [chat_request(p, max_tokens=10, extra=extra) for p in PROMPTS[:3]]

    def run(i: int) -> Any:
        try:
            if i == 1:
                return "".join(e.text for e in backend.stream(requests[i]))
            return backend.chat(requests[i]).text
        except errors.LLMError as exc:
            return exc

    before = len(sizes(backend))
    with ThreadPoolExecutor(max_workers=3) as pool:
        with model_busy(backend, waiting=3):
            futures = [pool.submit(run, i) for i in range(3)]
        results = [f.result(timeout=60) for f in futures]
    assert sizes(backend)[before:] == [1, 3]
    assert all(isinstance(r, errors.ServerError) for r in results), results
    assert all("boom" in str(r) for r in results)
    assert len({id(r) for r in results}) == 3  # each caller raises its own copy
    wait_no_generate_threads()
    assert backend.chat(chat_request(max_tokens=2)).usage.completion_tokens == 2


def test_close_while_batches_run_leaves_no_thread(tiny_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu")
    backend.load()
    # Threads of earlier tests (asyncio executors) may still be on their way out.
    baseline = set(threading.enumerate())
    shared = {"logits_processor": [Slow(0.02)], "min_new_tokens": 300}
    running = [chat_request(p, max_tokens=300, extra=shared) for p in PROMPTS[:2]]
    queued = [chat_request(p, max_tokens=300, extra=slow(0.02)) for p in PROMPTS[2:]]
    results: list[Any] = []

    def run(request: ChatRequest) -> None:
        try:
            results.append(backend.chat(request))
        except errors.LLMError as exc:  # pragma: no cover - reported below
            results.append(exc)

    callers = [threading.Thread(target=run, args=(r,)) for r in running]
    with model_busy(backend, waiting=2):
        for t in callers:
            t.start()
    wait_until(lambda: backend._scheduler.waiting == 0)  # the two run as one batch
    late = [threading.Thread(target=run, args=(r,)) for r in queued]
    for t in late:
        t.start()
    wait_until(lambda: backend._scheduler.waiting == 2)  # these wait for the next batches
    backend.close()
    # The running batch was stopped, not waited for (300 steps; see also "stop" below).
    assert shared["logits_processor"][0].steps < 300 // 2
    for t in callers + late:
        t.join(10)
        assert not t.is_alive()
    assert not backend.is_loaded
    # Every caller got its (cut short) answer; nothing is left running.
    assert len(results) == 4 and all(r.finish_reason == "stop" for r in results), results
    assert sizes(backend)[-1] == 2
    assert not generate_threads()
    assert not set(threading.enumerate()) - baseline
    assert backend.chat(chat_request(max_tokens=2)).text  # loads again on demand
    backend.close()
    assert not generate_threads()


def test_batch_gives_each_generate_call_the_first_token_budget(tiny_llama_dir: Path) -> None:
    # One row per generate(): 4 calls of ~0.5 s, each within a 1.5 s budget, 2 s+ in all.
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_batch_size=1)
    backend.load()
    try:
        shared = {"logits_processor": [Slow(0.05)], "min_new_tokens": 10}
        requests = [chat_request(p, max_tokens=10, extra=shared) for p in PROMPTS]
        for r in requests:
            r.timeout = Timeout(first_token=1.5)
        start = time.monotonic()
        responses = backend.batch(requests)
        # A lower bound (a loaded machine only makes it truer): the batch did outlast a
        # budget that a whole-batch first-token timer would have enforced.
        assert time.monotonic() - start > 1.5
        assert [r.usage.completion_tokens for r in responses] == [10] * 4
        assert sizes(backend) == [1, 1, 1, 1]
        # A deadline, though, holds for the whole call.
        for r in requests:
            r.deadline = time.monotonic() + 1.0
        with pytest.raises(errors.TimeoutError):
            backend.batch(requests)
        wait_no_generate_threads()
    finally:
        backend.close()


def test_rows_with_different_constraints_share_a_batch(tiny_long_llama_dir: Path) -> None:
    pytest.importorskip("llguidance")
    backend = HuggingFaceBackend(str(tiny_long_llama_dir), device="cpu", max_new_tokens=24)
    backend.load()
    try:
        schema = {
            "type": "object",
            "properties": {"city": {"enum": ["Paris", "Tokyo"]}, "n": {"type": "integer"}},
            "required": ["city", "n"],
        }
        fmt = {"type": "json_schema", "json_schema": {"name": "Place", "schema": schema}}
        requests = [
            chat_request("Where?", max_tokens=40, response_format=fmt),
            chat_request("Hello", max_tokens=12),
            chat_request("Hi", max_tokens=40, response_format={"type": "json_object"}),
        ]
        alone = [backend.chat(r).text for r in requests]
        assert alone[0].lstrip().startswith("{") and "city" in alone[0]  # constrained
        before = len(sizes(backend))
        with ThreadPoolExecutor(max_workers=3) as pool:
            with model_busy(backend, waiting=3):
                futures = [pool.submit(backend.chat, r) for r in requests]
            texts = [f.result(timeout=60).text for f in futures]
        assert sizes(backend)[before:] == [1, 3]
        assert texts == alone
    finally:
        backend.close()
