"""The hf backend on a tiny random Llama (and a Trainer-trained GPT-2): generation behaviour."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.timeouts import Timeout
from llmkit.types import (
    ChatRequest,
    CompletionRequest,
    FinishEvent,
    GenerationParams,
    Message,
    TextDelta,
    UsageEvent,
)

PROMPTS = ["Hello", "What is the capital of France?", "Tell me a story", "café 🙂"]


class ForceEos:
    """Forces the EOS token once ``after`` tokens were generated."""

    def __init__(self, eos: int, prompt_len: int, after: int) -> None:
        self.eos, self.prompt_len, self.after = eos, prompt_len, after

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[1] - self.prompt_len >= self.after:
            scores[:, :] = -float("inf")
            scores[:, self.eos] = 0.0
        return scores


def test_chat_answers_with_usage_from_token_ids(llama: HuggingFaceBackend) -> None:
    response = llama.chat(chat_request(max_tokens=10))
    assert response.text
    assert response.message.role == "assistant"
    assert response.model == str(llama.model) and response.backend == llama.spec
    ids = llama.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}], add_generation_prompt=True, tokenize=False
    )
    assert response.usage.prompt_tokens == len(
        llama.tokenizer(ids, add_special_tokens=False)["input_ids"]
    )
    assert response.usage.completion_tokens == 10
    assert response.usage.estimated is False
    assert response.finish_reason == "length"


def test_stream_equals_chat_under_greedy_decoding(llama: HuggingFaceBackend) -> None:
    for prompt in PROMPTS:
        request = chat_request(prompt, max_tokens=20)
        whole = llama.chat(request)
        events = list(llama.stream(request))
        assert isinstance(events[-1], FinishEvent) and isinstance(events[-2], UsageEvent)
        deltas = [e for e in events if isinstance(e, TextDelta)]
        assert all(d.delta for d in deltas) and len(deltas) > 1
        assert "".join(d.delta for d in deltas) == whole.text
        assert events[-1].finish_reason == whole.finish_reason
        assert events[-2].usage == whole.usage


def test_streamed_text_is_the_decoded_tokens(llama: HuggingFaceBackend) -> None:
    """Streamed deltas add up to exactly tokenizer.decode(generated ids)."""
    request = chat_request("café 🙂", max_tokens=24)
    prompt = llama.tokenizer.apply_chat_template(
        [{"role": "user", "content": "café 🙂"}], add_generation_prompt=True, tokenize=False
    )
    import torch

    ids = llama.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = llama.hf_model.generate(ids, max_new_tokens=24, do_sample=False)
    expected = llama.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    text = "".join(e.text for e in llama.stream(request))
    assert text == expected


def test_max_tokens_gives_length_and_eos_gives_stop(llama: HuggingFaceBackend) -> None:
    response = llama.chat(chat_request(max_tokens=5))
    assert response.finish_reason == "length" and response.usage.completion_tokens == 5
    prompt_len = llama.chat(chat_request(max_tokens=1)).usage.prompt_tokens
    eos = llama.tokenizer.eos_token_id
    request = chat_request(
        max_tokens=20, extra={"logits_processor": [ForceEos(eos, prompt_len, 3)]}
    )
    response = llama.chat(request)
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens == 4  # three tokens, then EOS (not in the text)
    streamed = list(llama.stream(request))
    assert streamed[-1].finish_reason == "stop"
    assert "".join(e.text for e in streamed) == response.text


def test_stop_strings_cut_the_answer_and_are_not_returned(llama: HuggingFaceBackend) -> None:
    full = llama.chat(chat_request("Tell me a story", max_tokens=30)).text
    clean = full.split("\ufffd")[0]
    assert len(clean) >= 8, full
    stop = clean[4:7]
    expected = full[: full.find(stop)]
    request = chat_request("Tell me a story", max_tokens=30, stop=[stop, "never-there"])
    response = llama.chat(request)
    assert response.text == expected
    assert stop not in response.text
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens < 30
    assert "".join(e.text for e in llama.stream(request)) == expected


def test_seed_makes_sampling_reproducible(llama: HuggingFaceBackend) -> None:
    def sample(seed: int) -> str:
        return llama.chat(
            chat_request("Tell me a story", temperature=1.5, seed=seed, max_tokens=16)
        ).text

    assert sample(7) == sample(7)
    assert len({sample(s) for s in (1, 2, 3, 4)}) > 1
    greedy = llama.chat(chat_request("Tell me a story", max_tokens=16)).text
    assert greedy == llama.chat(chat_request("Tell me a story", max_tokens=16, temperature=0)).text


def test_extra_generate_options_pass_through(llama: HuggingFaceBackend) -> None:
    plain = llama.chat(chat_request("Tell me a story", max_tokens=20)).text
    penalised = llama.chat(
        chat_request("Tell me a story", max_tokens=20, extra={"repetition_penalty": 5.0})
    ).text
    assert plain != penalised
    with pytest.raises(errors.InvalidInputError, match="unknown generation option"):
        llama.chat(chat_request(extra={"no_such_option": 1}))


def test_batch_equals_sequential_under_greedy_decoding(llama: HuggingFaceBackend) -> None:
    requests: list[Any] = [chat_request(p, max_tokens=8 + 3 * i) for i, p in enumerate(PROMPTS)]
    requests.append(chat_request("Hello", max_tokens=30, stop=[llama.chat(requests[0]).text[2:4]]))
    requests.append(
        CompletionRequest(
            model="tiny", prompt="Once upon a time", params=GenerationParams(max_tokens=6)
        )
    )
    one_by_one = [
        llama.complete(r) if isinstance(r, CompletionRequest) else llama.chat(r) for r in requests
    ]
    batched = llama.batch(requests)
    assert [r.text for r in batched] == [r.text for r in one_by_one]
    assert [r.finish_reason for r in batched] == [r.finish_reason for r in one_by_one]
    assert [r.usage for r in batched] == [r.usage for r in one_by_one]
    assert llama.batch([]) == []


async def test_abatch(llama: HuggingFaceBackend) -> None:
    requests = [chat_request(p, max_tokens=5) for p in PROMPTS[:2]]
    assert [r.text for r in await llama.abatch(requests)] == [llama.chat(r).text for r in requests]


def test_concurrent_calls_are_safe(llama: HuggingFaceBackend) -> None:
    requests = [chat_request(p, max_tokens=12) for p in PROMPTS] * 2
    expected = [llama.chat(r).text for r in requests]

    def run(i: int) -> str:
        request = requests[i]
        if i % 2:
            return "".join(e.text for e in llama.stream(request))
        return llama.chat(request).text

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(run, range(len(requests)))) == expected
    wait_no_generate_threads()


# Closing must not wait for the generation (400 steps): the step count when close() has
# returned (the generating thread is gone by then) shows where it stopped, on any machine.


def test_closing_a_stream_stops_generation_promptly(llama: HuggingFaceBackend) -> None:
    before = threading.active_count()
    extra = endless(0.02)
    stream = llama.stream(chat_request(max_tokens=ENDLESS, extra=extra))
    seen = [next(stream) for _ in range(3)]
    assert all(isinstance(e, TextDelta) for e in seen)
    assert len(generate_threads()) == 1
    stream.close()  # type: ignore[attr-defined]
    assert not generate_threads()
    assert steps_of(extra).steps < STEPS_AHEAD, steps_of(extra).steps
    assert threading.active_count() == before
    # The model is free again right away.
    assert llama.chat(chat_request(max_tokens=2)).usage.completion_tokens == 2


def test_close_cancels_running_generations(tiny_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu")
    extra = endless(0.02)
    stream = backend.stream(chat_request(max_tokens=ENDLESS, extra=extra))
    next(stream)
    backend.close()
    stopped_at = steps_of(extra).steps
    assert not backend.is_loaded
    assert stopped_at < STEPS_AHEAD, stopped_at  # close() did not wait for the end
    time.sleep(0.2)  # ten steps' time: a generation close() left running would go on
    assert steps_of(extra).steps <= stopped_at + 1  # (one step may be under way)
    stream.close()  # type: ignore[attr-defined]
    wait_no_generate_threads()
    assert backend.chat(chat_request(max_tokens=2)).text  # loads again on demand


async def test_astream_does_not_block_the_event_loop(llama: HuggingFaceBackend) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    events = [e async for e in llama.astream(chat_request(max_tokens=25, extra=slow(0.02)))]
    task.cancel()
    assert isinstance(events[-1], FinishEvent) and events[-1].finish_reason == "length"
    # The 25 steps sleep 0.5 s in all: a free loop ticks about 100 times meanwhile, a
    # blocked one (generation on the loop's thread) not at all. 10 leaves room for a
    # loaded machine without a wall-clock ratio.
    assert ticks >= 10, ticks


async def test_achat_and_acomplete_match_sync(llama: HuggingFaceBackend) -> None:
    request = chat_request("What is the capital of France?", max_tokens=12)
    assert (await llama.achat(request)).text == llama.chat(request).text
    events = [e async for e in llama.astream(request)]
    assert "".join(e.text for e in events) == llama.chat(request).text
    completion = CompletionRequest(
        model="tiny", prompt="Once upon", params=GenerationParams(max_tokens=5)
    )
    assert (await llama.acomplete(completion)).text == llama.complete(completion).text


async def test_aclose_of_astream_stops_the_worker(llama: HuggingFaceBackend) -> None:
    extra = endless(0.02)
    stream = llama.astream(chat_request(max_tokens=ENDLESS, extra=extra))
    assert isinstance(await stream.__anext__(), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    assert not generate_threads()
    assert steps_of(extra).steps < STEPS_AHEAD, steps_of(extra).steps


async def test_cancelling_achat_stops_generation(llama: HuggingFaceBackend) -> None:
    extra = endless(0.02)
    task = asyncio.create_task(llama.achat(chat_request(max_tokens=ENDLESS, extra=extra)))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    wait_no_generate_threads()
    assert steps_of(extra).steps < STEPS_AHEAD, steps_of(extra).steps  # not run to its end


def test_idle_timeout_on_a_stalled_stream(llama: HuggingFaceBackend) -> None:
    extra = endless(0.3)
    request = chat_request(max_tokens=ENDLESS, extra=extra)
    request.timeout = Timeout(first_token=5, idle=0.1)
    with pytest.raises(errors.TimeoutError, match="idle"):
        for _ in llama.stream(request):
            pass
    # Each step (0.3 s) overruns the 0.1 s idle budget: the error comes at the first gap,
    # and the generation stops there (steps count where, however slow the machine).
    wait_no_generate_threads()
    assert steps_of(extra).steps < 10, steps_of(extra).steps


def test_first_token_timeout_and_deadline(llama: HuggingFaceBackend) -> None:
    request = chat_request(max_tokens=400, extra=slow(0.3))
    request.timeout = Timeout(first_token=0.1)
    with pytest.raises(errors.TimeoutError, match="first_token"):
        list(llama.stream(request))
    request = chat_request(max_tokens=400, extra=slow(0.05))
    request.deadline = time.monotonic() + 0.3
    with pytest.raises(errors.TimeoutError):
        llama.chat(request)
    request.deadline = time.monotonic() + 0.3
    with pytest.raises(errors.TimeoutError, match="deadline"):
        list(llama.stream(request))
    wait_no_generate_threads()


async def test_async_timeout(llama: HuggingFaceBackend) -> None:
    request = chat_request(max_tokens=400, extra=slow(0.05))
    request.timeout = Timeout(first_token=0.3)
    with pytest.raises(errors.TimeoutError):
        await llama.achat(request)
    wait_no_generate_threads()


def test_context_length_is_checked_before_generating(llama: HuggingFaceBackend) -> None:
    with pytest.raises(errors.ContextLengthError, match="context window"):
        llama.chat(chat_request("Hello " * 600))


def test_developer_and_multi_turn_messages(llama: HuggingFaceBackend) -> None:
    request = ChatRequest(
        model="tiny",
        messages=[
            Message(role="developer", content="Be brief."),
            Message.user("Hi"),
            Message.assistant("Hello!"),
            Message.user("Again"),
        ],
        params=GenerationParams(max_tokens=3),
    )
    assert llama.chat(request).usage.completion_tokens == 3


def test_trainer_checkpoint_completes_and_refuses_chat(trainer_checkpoint: Path) -> None:
    backend = HuggingFaceBackend(str(trainer_checkpoint), device="cpu")
    request = CompletionRequest(
        model="gpt2", prompt="The capital of", params=GenerationParams(max_tokens=6)
    )
    response = backend.complete(request)
    assert response.usage.completion_tokens == 6 and response.usage.prompt_tokens == 3
    assert "".join(e.text for e in backend.stream_complete(request)) == response.text
    with pytest.raises(errors.UnsupportedFeatureError, match=r"complete\(\)"):
        backend.chat(chat_request())
    backend.close()
