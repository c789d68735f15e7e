"""The hf backend's speed paths on a tiny model: the static-cache path (``compile=True``)
answers and behaves as the default path, attention and batch-size choices per device, and
the batch window's cap. Nothing here measures speed (see benchmarks/bench_hf_speed.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import pytest
from hf_testkit import (
    ENDLESS,
    STEPS_AHEAD,
    chat_request,
    endless,
    generate_threads,
    slow,
    steps_of,
    wait_no_generate_threads,
)

from llmkit import errors
from llmkit.backends.hf import HuggingFaceBackend, batching, runtime
from llmkit.backends.hf.compiled import bucket_length
from llmkit.backends.hf.generation import IncrementalDecoder, RowState, StopMatcher
from llmkit.timeouts import Timeout
from llmkit.types import FinishEvent, TextDelta

pytestmark = pytest.mark.timeout(120)

PROMPTS = ["Hello", "What is the capital of France?", "Tell me a story", "café 🙂"]


@pytest.fixture(scope="module")
def plain(tiny_llama_dir: Path) -> Iterator[HuggingFaceBackend]:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_new_tokens=24)
    yield backend.load()
    backend.close()


@pytest.fixture
def compiled(tiny_llama_dir: Path) -> Iterator[HuggingFaceBackend]:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_new_tokens=24, compile=True)
    yield backend.load()
    backend.close()


# ---------------------------------------------------------------- compile=True


def test_static_cache_path_answers_as_the_dynamic_path(
    plain: HuggingFaceBackend, compiled: HuggingFaceBackend
) -> None:
    for prompt in PROMPTS:
        request = chat_request(prompt, max_tokens=16)
        expected = plain.chat(request)
        got = compiled.chat(request)
        assert got.text == expected.text
        assert got.usage == expected.usage
        assert got.finish_reason == expected.finish_reason
        assert "".join(e.text for e in compiled.stream(request)) == expected.text
    # Every call went through one static cache of the smallest bucket.
    assert set(compiled.compile_warmups) == {256}
    assert set(compiled._static._caches) == {256}  # type: ignore[union-attr]


def test_a_longer_request_gets_a_bigger_bucket(compiled: HuggingFaceBackend) -> None:
    compiled.chat(chat_request("Hello", max_tokens=4))
    compiled.chat(chat_request("Hello", max_tokens=300))
    assert set(compiled.compile_warmups) == {256, 512}


def test_static_cache_path_keeps_stop_strings(
    plain: HuggingFaceBackend, compiled: HuggingFaceBackend
) -> None:
    full = plain.chat(chat_request("Tell me a story", max_tokens=30)).text
    clean = full.split("\ufffd")[0]
    assert len(clean) >= 8, full
    stop = clean[4:7]
    request = chat_request("Tell me a story", max_tokens=30, stop=[stop])
    response = compiled.chat(request)
    assert response.text == full[: full.find(stop)]
    assert response.finish_reason == "stop"
    assert "".join(e.text for e in compiled.stream(request)) == response.text
    assert compiled.compile_warmups


def test_static_cache_path_stops_on_close_and_deadline(compiled: HuggingFaceBackend) -> None:
    extra = endless(0.02)
    stream = compiled.stream(chat_request(max_tokens=ENDLESS, extra=extra))
    assert isinstance(next(stream), TextDelta)
    stream.close()  # type: ignore[attr-defined]
    assert not generate_threads()
    assert steps_of(extra).steps < STEPS_AHEAD, steps_of(extra).steps
    request = chat_request(max_tokens=400, extra=slow(0.05))
    request.deadline = time.monotonic() + 0.3
    with pytest.raises(errors.TimeoutError):
        compiled.chat(request)
    request = chat_request(max_tokens=400, extra=slow(0.3))
    request.timeout = Timeout(first_token=5, idle=0.1)
    with pytest.raises(errors.TimeoutError, match="idle"):
        list(compiled.stream(request))
    wait_no_generate_threads()
    # The cache is reset, not stale: a later answer equals a fresh one.
    request = chat_request("Hello", max_tokens=8)
    assert compiled.chat(request).text == compiled.chat(request).text
    assert compiled.compile_warmups


async def test_static_cache_path_async_cancel_and_stream(
    plain: HuggingFaceBackend, compiled: HuggingFaceBackend
) -> None:
    task = asyncio.create_task(compiled.achat(chat_request(max_tokens=400, extra=slow(0.02))))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    wait_no_generate_threads(1.0)
    request = chat_request("Tell me a story", max_tokens=12)
    events = [e async for e in compiled.astream(request)]
    assert isinstance(events[-1], FinishEvent)
    assert "".join(e.text for e in events) == plain.chat(request).text


def test_batches_of_several_rows_keep_the_dynamic_cache(
    plain: HuggingFaceBackend, compiled: HuggingFaceBackend
) -> None:
    requests = [chat_request(p, max_tokens=10) for p in PROMPTS]
    assert [r.text for r in compiled.batch(requests)] == [r.text for r in plain.batch(requests)]
    assert compiled.compile_warmups == {}


def test_bucket_length() -> None:
    assert bucket_length(10, 512) == 256
    assert bucket_length(256, 512) == 256
    assert bucket_length(257, 512) == 512
    assert bucket_length(300, 400) == 400
    assert bucket_length(600, 512) is None
    assert bucket_length(1000, None) == 1024


# ---------------------------------------------------------------- per-device choices


def test_cudnn_attention_is_off_only_while_generating_on_cuda() -> None:
    import torch

    flag = torch.backends.cuda.cudnn_sdp_enabled
    torch.backends.cuda.enable_cudnn_sdp(True)
    try:
        with runtime.generation_attention("cpu"):
            assert flag()
        with runtime.generation_attention("cuda", allow_cudnn=True):
            assert flag()
        with runtime.generation_attention("cuda:0"):
            assert not flag()
        assert flag()
        # Two models generating at once, ending in the other order: restored once, at the end.
        first, second = runtime.generation_attention("cuda"), runtime.generation_attention("cuda")
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert not flag()
        second.__exit__(None, None, None)
        assert flag()
        # A process that had switched it off keeps it off.
        torch.backends.cuda.enable_cudnn_sdp(False)
        with runtime.generation_attention("cuda"):
            assert not flag()
        assert not flag()
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)


def test_batch_size_defaults_per_device(tiny_llama_dir: Path) -> None:
    assert runtime.default_max_batch_size("cuda:0") == 64
    assert runtime.default_max_batch_size("cpu") == 16
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu").load()
    assert backend._scheduler.max_batch_size == 16
    backend.close()
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_batch_size=3).load()
    assert backend._scheduler.max_batch_size == 3
    backend.close()


def test_a_burst_longer_than_four_windows_still_shares_one_batch() -> None:
    # Requests of a burst arrive about a millisecond apart (each is rendered and tokenized
    # first): as long as they keep coming within the window, the batch waits for them.
    seen: list[int] = []

    def run(jobs: Any) -> None:
        seen.append(len(jobs))

    # A window several times the gap between requests, so a loaded machine's late wake-ups
    # do not split the burst; the burst still lasts longer than four windows.
    scheduler: batching.BatchScheduler[None] = batching.BatchScheduler(
        run, max_batch_size=64, window=0.3
    )

    def job() -> batching.Job[None]:
        row = RowState(
            prompt_tokens=1,
            max_new_tokens=1,
            decoder=IncrementalDecoder(lambda ids: ""),
            matcher=StopMatcher(),
        )
        return batching.Job(row=row, key="k", payload=None)

    jobs = []
    for _ in range(40):  # ~1.6 s in all: more than four 300 ms windows
        jobs.append(job())
        scheduler.submit(jobs[-1])
        time.sleep(0.04)
    for j in jobs:
        assert j.finished.wait(10)
    scheduler.close(5)
    assert seen == [40]


def test_worker_threads_are_gone_after_compiled_calls(compiled: HuggingFaceBackend) -> None:
    done = threading.Event()

    def call() -> None:
        compiled.chat(chat_request("Hello", max_tokens=3))
        done.set()

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(20)
    assert done.is_set()
    wait_no_generate_threads()


# ---------------------------------------------------------------- KV-cache budget


def test_kv_bytes_per_token_counts_keys_and_values_of_every_layer(tiny_llama_dir: Path) -> None:
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    # 2 layers x 2 KV heads x head_dim 8 x (K and V) x 4 bytes
    assert runtime.kv_bytes_per_token(config, torch.float32) == 2 * 2 * 8 * 2 * 4
    assert runtime.kv_bytes_per_token(config, torch.bfloat16) == 2 * 2 * 8 * 2 * 2


def test_a_request_that_cannot_fit_the_kv_budget_is_refused(tiny_llama_dir: Path) -> None:
    per_token = 2 * 2 * 8 * 2 * 4
    backend = HuggingFaceBackend(
        str(tiny_llama_dir), device="cpu", kv_cache_budget=40 * per_token
    ).load()
    try:
        with pytest.raises(errors.ContextLengthError, match="kv_cache_budget"):
            backend.chat(chat_request("Hello", max_tokens=60))
        assert not generate_threads()
        # Without an explicit max_tokens the answer shrinks to what fits.
        response = backend.chat(chat_request("Hello", extra={"min_new_tokens": 200}))
        prompt = response.usage.prompt_tokens
        assert response.usage.completion_tokens == 40 - prompt
        assert response.finish_reason == "length"
    finally:
        backend.close()


def test_batches_take_only_the_requests_that_fit_the_kv_budget(tiny_llama_dir: Path) -> None:
    per_token = 2 * 2 * 8 * 2 * 4
    # Room for two rows of ~15 prompt tokens + 8 new ones, not three.
    backend = HuggingFaceBackend(
        str(tiny_llama_dir), device="cpu", kv_cache_budget=50 * per_token, batch_window=0.3
    ).load()
    plain_backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu").load()
    try:
        requests = [chat_request(p, max_tokens=8) for p in ["Hello", "Hi", "Hey", "Yo"]]
        widths = [len(backend._prepare(backend._ensure_loaded(), r).input_ids) for r in requests]
        assert 2 * (max(widths) + 8) <= 50 < 3 * (min(widths) + 8), widths
        with ThreadPool(4) as pool:
            answers = pool.map(lambda r: backend.chat(r).text, requests)
        assert answers == [plain_backend.chat(r).text for r in requests]
        assert max(backend._scheduler.sizes) == 2
        assert sum(backend._scheduler.sizes) == 4
    finally:
        backend.close()
        plain_backend.close()


def test_warmup_compiles_the_bucket_ahead(
    plain: HuggingFaceBackend, compiled: HuggingFaceBackend
) -> None:
    assert compiled.warmup(max_tokens=300) == compiled.compile_warmups
    assert set(compiled.compile_warmups) == {512}
    assert plain.warmup(max_tokens=2) == {}
