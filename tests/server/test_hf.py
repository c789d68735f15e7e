"""``llmkit serve`` in front of a real (tiny, random) transformers model, built here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
# llmkit's own module is imported, never importorskip'ed: a broken import must fail.
import llmkit.backends.hf  # noqa: F401
from llmkit import AsyncClient
from llmkit.server import create_app, run_in_thread

from .test_openai_sdk import sync_sdk

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_model(folder: Path) -> None:
    """A 1-layer random Llama and a byte-level BPE tokenizer trained on three sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(
        ["hello world", "the quick brown fox jumps over the lazy dog", "user assistant system"],
        trainer,
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="</s>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(folder)
    client = AsyncClient(f"hf:{folder}", device="cpu")
    client.backend.load()  # type: ignore[attr-defined]
    app = create_app(client, max_tokens_cap=16, close_client=True)
    # A local folder is served under its name (the full path and spec are accepted too).
    assert app.state.llmkit.served_model == "tiny"
    with run_in_thread(app, graceful_timeout=1) as base_url:
        yield base_url


def test_openai_sdk_against_a_local_model(hf_server: str) -> None:
    with sync_sdk(hf_server) as sdk:
        completion = sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hello world"}], max_tokens=6
        )
        assert completion.model == "tiny"
        assert completion.choices[0].finish_reason in ("stop", "length")
        assert completion.usage is not None
        assert 0 < completion.usage.completion_tokens <= 6
        assert completion.usage.prompt_tokens > 0
        chunks = list(
            sdk.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": "hello world"}],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=6,
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # Greedy decoding: the stream says what the plain call said.
    assert text == completion.choices[0].message.content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == completion.usage.completion_tokens


def test_max_tokens_cap_applies_to_a_local_model(hf_server: str) -> None:
    with sync_sdk(hf_server) as sdk:
        completion = sdk.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "the quick"}], max_tokens=500
        )
    assert completion.usage is not None and completion.usage.completion_tokens <= 16


def test_streamed_text_completion_from_a_local_model(hf_server: str) -> None:
    """``/v1/completions`` with ``stream: true`` streams the model's tokens as they are
    generated: several chunks, which under greedy decoding add up to the plain reply."""
    with sync_sdk(hf_server) as sdk:
        whole = sdk.completions.create(model="tiny", prompt="the quick brown", max_tokens=8)
        chunks = list(
            sdk.completions.create(
                model="tiny",
                prompt="the quick brown",
                max_tokens=8,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    texts = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    assert len(texts) > 1
    assert "".join(texts) == whole.choices[0].text
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
    assert whole.usage is not None and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
