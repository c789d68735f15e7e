"""Reasoning with in-process models: the chat template's thinking switch (checked in the
rendered prompt) and a scripted generation (a logits processor forcing
``<think>...</think>answer``) parsed into reasoning and text, whole and streamed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hf_testkit import chat_request

from llmkit import AsyncClient, Client, Message, UnsupportedFeatureError
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.types import ReasoningDelta, TextDelta

# Qwen3-style: enable_thinking=false pre-fills an empty thinking block; an assistant
# message's reasoning_content is rendered back inside <think> tags.
QWEN3_STYLE = (
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' and m.get('reasoning_content') %}"
    "<think>\n{{ m['reasoning_content'] }}\n</think>\n\n{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
# gpt-oss-style: a reasoning level in the system turn.
GPT_OSS_STYLE = (
    "<|im_start|>system\nReasoning: {{ reasoning_effort | default('medium') }}<|im_end|>\n"
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# DeepSeek-R1-style: the generation prompt opens the thinking block itself.
R1_STYLE = (
    "{%- for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)

SCRIPT = "<think>\nTwo and two.\n</think>\n\nFour."


@pytest.fixture(scope="module")
def thinking_dir(models_root: Path, tiny_llama_dir: Path) -> Path:
    """The tiny Llama with ``<think>``/``</think>`` tokens and a Qwen3-style template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = models_root / "tiny-thinking"
    if folder.exists():
        return folder
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tok.add_tokens(["<think>", "</think>"])  # added, not special: decoding keeps them
    tok.chat_template = QWEN3_STYLE
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def with_template(source: Path, folder: Path, template: str) -> Path:
    from transformers import AutoTokenizer

    if not folder.exists():
        shutil.copytree(source, folder)
        tok = AutoTokenizer.from_pretrained(folder)
        tok.chat_template = template
        tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def thinking(thinking_dir: Path) -> Iterator[HuggingFaceBackend]:
    backend = HuggingFaceBackend(str(thinking_dir), device="cpu", max_new_tokens=64)
    backend.load()
    yield backend
    backend.close()


class Script:
    """Forces the model to write ``text`` and then end (one processor per call)."""

    def __init__(self, backend: HuggingFaceBackend, text: str) -> None:
        tok = backend.tokenizer
        self.ids = [*tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]
        self.start: int | None = None
        self.calls = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        self.calls += 1
        if self.start is None:
            self.start = input_ids.shape[1]
        target = self.ids[min(input_ids.shape[1] - self.start, len(self.ids) - 1)]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, target] = 0.0
        return forced


def scripted(backend: HuggingFaceBackend, text: str = SCRIPT, **params: Any) -> Any:
    return chat_request("2+2?", extra={"logits_processor": [Script(backend, text)]}, **params)


def test_the_switch_in_the_rendered_prompt(thinking: HuggingFaceBackend) -> None:
    off = thinking.prompt_text(chat_request("2+2?", reasoning_effort="none"))
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    for effort in ("minimal", "low", "high"):
        on = thinking.prompt_text(chat_request("2+2?", reasoning_effort=effort))
        assert on.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert thinking.prompt_text(chat_request("2+2?")) == on  # the template's default


def test_reasoning_goes_back_to_a_template_that_reads_it(thinking: HuggingFaceBackend) -> None:
    request = chat_request()
    request.messages = [
        Message.user("2+2?"),
        Message.assistant("Four.", reasoning="Two and two."),
        Message.user("3+3?"),
    ]
    prompt = thinking.prompt_text(request)
    assert "<|im_start|>assistant\n<think>\nTwo and two.\n</think>\n\nFour.<|im_end|>" in prompt


def test_scripted_reply_is_split_into_reasoning_and_text(thinking: HuggingFaceBackend) -> None:
    response = thinking.chat(scripted(thinking))
    assert (response.reasoning, response.text) == ("Two and two.", "Four.")
    assert response.usage.reasoning_tokens == len(
        thinking.tokenizer("Two and two.", add_special_tokens=False)["input_ids"]
    )

    events = list(thinking.stream(scripted(thinking)))
    reasoning = [e for e in events if isinstance(e, ReasoningDelta)]
    assert reasoning and "".join(e.reasoning for e in reasoning) == "Two and two."
    assert "".join(e.text for e in events) == "Four."
    assert events.index(reasoning[-1]) < min(
        i for i, e in enumerate(events) if isinstance(e, TextDelta)
    )
    usage = next(e for e in events if e.type == "usage").usage
    assert usage.reasoning_tokens == response.usage.reasoning_tokens


async def test_async_and_through_the_client(thinking: HuggingFaceBackend) -> None:
    response = await thinking.achat(scripted(thinking))
    assert (response.reasoning, response.text) == ("Two and two.", "Four.")
    events = [e async for e in thinking.astream(scripted(thinking))]
    assert "".join(e.reasoning for e in events if isinstance(e, ReasoningDelta)) == "Two and two."
    assert "".join(e.text for e in events) == "Four."

    async with (
        AsyncClient(backend=thinking) as aclient,
        aclient.stream(
            "2+2?", reasoning_effort="high", logits_processor=[Script(thinking, SCRIPT)]
        ) as stream,
    ):
        assert "".join([e.text async for e in stream]) == "Four."
    assert stream.response.reasoning == "Two and two."
    with Client(backend=thinking) as client:
        again = client.chat("2+2?", logits_processor=[Script(thinking, SCRIPT)])
    assert (again.reasoning, again.text) == ("Two and two.", "Four.")


def test_reply_without_thinking_is_plain_text(thinking: HuggingFaceBackend) -> None:
    response = thinking.chat(scripted(thinking, "Four.", reasoning_effort="none"))
    assert (response.reasoning, response.text) == (None, "Four.")
    assert response.usage.reasoning_tokens is None


def test_template_that_opens_the_thinking_block(thinking_dir: Path, models_root: Path) -> None:
    folder = with_template(thinking_dir, models_root / "tiny-r1", R1_STYLE)
    backend = HuggingFaceBackend(str(folder), device="cpu", max_new_tokens=64)
    try:
        text = "Two and two.\n</think>\n\nFour."
        assert backend.prompt_text(chat_request("2+2?")).endswith("assistant\n<think>\n")
        assert (backend.chat(scripted(backend, text)).reasoning) == "Two and two."
        streamed = list(backend.stream(scripted(backend, text)))
        assert "".join(e.text for e in streamed) == "Four."
    finally:
        backend.close()


def test_named_levels_template(thinking_dir: Path, models_root: Path) -> None:
    folder = with_template(thinking_dir, models_root / "tiny-gpt-oss", GPT_OSS_STYLE)
    backend = HuggingFaceBackend(str(folder), device="cpu", max_new_tokens=8)
    try:
        prompt = backend.prompt_text(chat_request("2+2?", reasoning_effort="low"))
        assert prompt.startswith("<|im_start|>system\nReasoning: low<|im_end|>")
        for effort in ("none", "minimal"):
            with pytest.raises(UnsupportedFeatureError, match=effort):
                backend.chat(scripted(backend, reasoning_effort=effort))
    finally:
        backend.close()


def test_unsupported_effort_raises_before_generating(llama: HuggingFaceBackend) -> None:
    """The tiny Llama's ChatML template has no thinking switch."""
    script = Script(llama, "Four.")
    request = chat_request("2+2?", extra={"logits_processor": [script]}, reasoning_effort="low")
    with pytest.raises(UnsupportedFeatureError, match="no thinking switch"):
        llama.chat(request)
    with pytest.raises(UnsupportedFeatureError, match="no thinking switch"):
        llama.stream(request)
    with Client(backend=llama) as client, pytest.raises(UnsupportedFeatureError):
        client.complete("Once", reasoning_effort="high")
    assert script.calls == 0


def test_tool_call_parsing_lets_reasoning_through() -> None:
    """Reasoning comes before a tool call in a stream; the call is still found after it."""
    from llmkit.backends.hf.tools import ToolEventFilter
    from llmkit.types import FinishEvent

    tool_filter = ToolEventFilter(["weather"])
    events = [
        ReasoningDelta(reasoning="I should call the tool."),
        TextDelta(delta='<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}'),
        TextDelta(delta="\n</tool_call>"),
        FinishEvent(),
    ]
    out = [item for event in events for item in tool_filter.push(event)]
    assert [e.type for e in out] == ["reasoning", "tool_call", "finish"]
    assert out[1].name == "weather" and out[2].finish_reason == "tool_calls"


def test_batch_splits_each_reply(thinking: HuggingFaceBackend) -> None:
    other = "<think>\nThree and three.\n</think>\n\nSix."
    first, second = thinking.batch([scripted(thinking), scripted(thinking, other)])
    assert (first.reasoning, first.text) == ("Two and two.", "Four.")
    assert (second.reasoning, second.text) == ("Three and three.", "Six.")
