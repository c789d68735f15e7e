"""``batch()`` runs every input through the call plan, also on a natively batching backend.

The backend here is the scripted fake with a native ``batch()`` (as the ``hf`` backend has):
requests sent together arrive in one ``batch()`` call, and a failure of that call is a
failure of each of its requests (as one failed ``generate()`` would be).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from llmkit import AsyncClient, BadRequestError, Client, Hooks, RetryPolicy, ServerError
from llmkit.testing import FakeBackend, instant_retry


class NativeBatching(FakeBackend):
    """A fake with a native ``batch()``; ``fail`` lists errors its next batches raise."""

    def __init__(self, *, fail: list[Exception] | None = None) -> None:
        super().__init__()  # echoes the last user message
        self.batches: list[list[str]] = []
        self.singles = 0
        self.fail = list(fail or [])
        self._batch_lock = threading.Lock()

    def chat(self, request: Any) -> Any:
        self.singles += 1
        return super().chat(request)

    async def achat(self, request: Any) -> Any:
        self.singles += 1
        return await super().achat(request)

    def batch(self, requests: list[Any]) -> list[Any]:
        with self._batch_lock:
            self.batches.append([r.messages[-1].text for r in requests])
            if self.fail:
                raise self.fail.pop(0)
        return [FakeBackend.chat(self, r) for r in requests]

    async def abatch(self, requests: list[Any]) -> list[Any]:
        return self.batch(requests)


class Seen:
    def __init__(self) -> None:
        self.requests = self.responses = self.retries = self.errors = 0
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def hooks(self) -> Hooks:
        return Hooks(
            on_request=lambda r: self._count("requests"),
            on_response=lambda r: self._count("responses"),
            on_retry=lambda e, n: self._count("retries"),
            on_error=lambda e: self._count("errors"),
        )


def run_batch(driver: Any, inputs: list[str], client_kwargs: dict[str, Any], **kwargs: Any) -> Any:
    if driver.is_async:

        async def go() -> Any:
            async with AsyncClient(**client_kwargs) as client:
                return await client.batch(inputs, **kwargs)

        return asyncio.run(go())
    with Client(**client_kwargs) as client:
        return client.batch(inputs, **kwargs)


def test_the_inputs_ready_together_go_in_one_native_batch(driver) -> None:
    backend = NativeBatching()
    results = run_batch(driver, ["a", "b", "c", "d"], {"backend": backend}, concurrency=4)
    assert [r.text for r in results] == ["a", "b", "c", "d"]
    assert backend.singles == 0
    assert sorted(x for b in backend.batches for x in b) == ["a", "b", "c", "d"]
    assert len(backend.batches) == 1


def test_each_input_of_a_failed_native_batch_is_retried_with_its_own_hooks(driver) -> None:
    backend = NativeBatching(fail=[ServerError("overloaded")])
    seen = Seen()
    kwargs = {"backend": backend, "hooks": seen.hooks(), "retry": instant_retry()}
    results = run_batch(driver, ["a", "b", "c"], kwargs, concurrency=3)
    assert [r.text for r in results] == ["a", "b", "c"]
    # One failed batch of three, then the three retries (together or not).
    assert backend.batches[0] and sum(len(b) for b in backend.batches) == 6
    assert (seen.requests, seen.retries, seen.responses, seen.errors) == (6, 3, 3, 0)


def test_a_failed_native_batch_gives_each_input_its_own_exception(driver) -> None:
    backend = NativeBatching(fail=[BadRequestError("no such option")] * 3)
    seen = Seen()
    kwargs = {"backend": backend, "hooks": seen.hooks()}
    results = run_batch(driver, ["a", "b", "c"], kwargs, concurrency=3, return_exceptions=True)
    assert all(isinstance(r, BadRequestError) for r in results)
    assert len({id(r) for r in results}) == 3
    assert all(str(r) == "no such option" for r in results)
    # Not retryable: one attempt each; on_error once per input.
    assert (seen.requests, seen.retries, seen.errors) == (3, 0, 3)


def test_a_native_batch_never_holds_more_than_concurrency_requests(driver) -> None:
    backend = NativeBatching()
    results = run_batch(driver, [str(i) for i in range(10)], {"backend": backend}, concurrency=3)
    assert [r.text for r in results] == [str(i) for i in range(10)]
    assert backend.singles == 0
    assert max(len(b) for b in backend.batches) <= 3
    assert sum(len(b) for b in backend.batches) == 10


def test_a_native_batch_never_holds_more_than_max_concurrency_requests(driver) -> None:
    backend = NativeBatching()
    kwargs = {"backend": backend, "max_concurrency": 2}
    results = run_batch(driver, [str(i) for i in range(7)], kwargs, concurrency=5)
    assert [r.text for r in results] == [str(i) for i in range(7)]
    assert max(len(b) for b in backend.batches) <= 2


def test_a_fallback_of_a_native_batch_gets_plain_calls(driver) -> None:
    backend = NativeBatching(fail=[ServerError("down")] * 10)
    fallback = FakeBackend(["from fallback"])
    fb_client: Any = (AsyncClient if driver.is_async else Client)(backend=fallback)
    kwargs = {
        "backend": backend,
        "fallbacks": [fb_client],
        "retry": instant_retry(RetryPolicy(max_attempts=1)),
    }
    results = run_batch(driver, ["a", "b"], kwargs, concurrency=2)
    assert [r.text for r in results] == ["from fallback"] * 2
    assert len(fallback.requests) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_batch_without_native_batch_still_runs_every_input_through_hooks(mode: str) -> None:
    seen = Seen()
    kwargs = {"backend": FakeBackend(), "hooks": seen.hooks()}

    class Mode:
        is_async = mode == "async"

    results = run_batch(Mode(), ["a", "b", "c"], kwargs, concurrency=2)
    assert [r.text for r in results] == ["a", "b", "c"]
    assert (seen.requests, seen.responses) == (3, 3)
