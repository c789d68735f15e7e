"""Tiny models for the hf backend tests, built once per session (no downloads).

* a byte-level BPE tokenizer trained on a few sentences (multi-byte characters included),
  with a ChatML chat template;
* a random 2-layer Llama chat model saved with ``save_pretrained``;
* a 2-layer GPT-2 base model trained for a few steps with ``transformers.Trainer`` (its
  ``checkpoint-N`` folder is the "Trainer checkpoint" source);
* a GGUF file written from the Llama weights with the ``gguf`` package, for the cache tests.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    pytest.skip("the hf extra (torch, transformers) is not installed", allow_module_level=True)

SENTENCES = [
    "Hello, how are you today? I am fine, thank you.",
    "The capital of France is Paris. The capital of Japan is Tokyo.",
    "A café in Zürich serves crème brûlée and naïve coffee.",
    "日本語のテキストも少し含まれています。東京は日本の首都です。",
    "Emoji are multi-byte too: 🙂 🚀 ✨ and so is the euro sign €.",
    "Once upon a time there was a small model that liked to write stories.",
    "user assistant system: answer briefly and politely.",
]

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _tokenizer(chat_template: str | None) -> Any:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(SENTENCES * 3, vocab_size=400, min_frequency=1, special_tokens=SPECIAL)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>" if chat_template else "<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    if chat_template:
        tok.chat_template = chat_template
    return tok


def _tiny_llama_config(tok: Any) -> Any:
    """The tiny Llama's shape (2 layers, hidden 32), with ``tok``'s vocabulary and ids."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        # Larger than the usual 0.02 so logits are well apart: greedy decoding then does not
        # flip on float noise (batched vs one by one) and rarely picks EOS early.
        initializer_range=0.3,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf-models")


@pytest.fixture(scope="session")
def tiny_llama_dir(models_root: Path) -> Path:
    """A random Llama chat model (2 layers, hidden 32) with a ChatML template."""
    import torch
    from transformers import LlamaForCausalLM

    tok = _tokenizer(CHATML)
    config = _tiny_llama_config(tok)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = models_root / "tiny-llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def trainer_run_dir(models_root: Path) -> Path:
    """A GPT-2 base model trained for 2 steps by ``Trainer``; returns the run's output_dir."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    tok = _tokenizer(None)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    rows = [tok(s)["input_ids"][:32] for s in SENTENCES]
    data = [{"input_ids": r, "labels": r} for r in rows]
    out = models_root / "gpt2-run"
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=1,
        save_steps=2,
        save_strategy="steps",
        report_to=[],
        use_cpu=True,
        logging_strategy="no",
        learning_rate=1e-3,
        disable_tqdm=True,
        save_only_model=True,
    )
    Trainer(model=model, args=args, train_dataset=data, processing_class=tok).train()
    return out


@pytest.fixture(scope="session")
def trainer_checkpoint(trainer_run_dir: Path) -> Path:
    return trainer_run_dir / "checkpoint-2"


def _permute(w: Any, n_head: int) -> Any:
    # llama.cpp's convert script stores q/k rows interleaved per head; transformers undoes it.
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


@pytest.fixture(scope="session")
def tiny_gguf(models_root: Path, tiny_llama_dir: Path) -> Path:
    """The tiny Llama written as an F32 GGUF file, as llama.cpp's converter would."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_llama_dir)
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    weights = load_file(str(tiny_llama_dir / "model.safetensors"))
    path = models_root / "gguf" / "tiny-llama.F32.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    # transformers 5 keeps rope_theta in rope_parameters; 4.x on the config (the minimum
    # versions run uses 4.56).
    rope = getattr(config, "rope_parameters", None) or {"rope_theta": config.rope_theta}
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    specials = set(tok.all_special_tokens)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens]
    )
    import json

    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(CHATML)
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    per_layer = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for i in range(config.num_hidden_layers):
        for hf_name, gg_name in per_layer.items():
            names[f"model.layers.{i}.{hf_name}.weight"] = f"blk.{i}.{gg_name}.weight"
    for hf_name, gg_name in names.items():
        tensor = weights[hf_name].astype(np.float32)
        if gg_name.endswith("attn_q.weight"):
            tensor = _permute(tensor, config.num_attention_heads)
        elif gg_name.endswith("attn_k.weight"):
            tensor = _permute(tensor, config.num_key_value_heads)
        writer.add_tensor(gg_name, np.ascontiguousarray(tensor))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="session")
def llama(tiny_llama_dir: Path) -> Iterator[Any]:
    """One loaded backend on the tiny Llama, shared by the tests that only generate."""
    from llmkit.backends.hf import HuggingFaceBackend

    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_new_tokens=24)
    backend.load()
    yield backend
    backend.close()


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh LLMKIT_CACHE_DIR for one test."""
    folder = tmp_path / "llmkit-cache"
    monkeypatch.setenv("LLMKIT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cache folder of the slow tests: LLMKIT_CACHE_DIR when set, else a session folder."""
    env = os.environ.get("LLMKIT_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("llmkit-cache")


# A ChatML template that renders tools the way Qwen/Hermes templates do: the schemas in the
# system turn, calls as <tool_call> blocks, results as <tool_response> in a tool turn.
TOOLS_CHATML = (
    "{%- if tools %}<|im_start|>system\n"
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}\n\n{% endif %}"
    "# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n"
    'Call a tool with <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>\n'
    "{%- elif messages[0]['role'] == 'system' %}"
    "<|im_start|>system\n{{ messages[0]['content'] }}<|im_end|>\n{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'system' %}"
    "{%- elif m['role'] == 'tool' %}"
    "<|im_start|>tool\n<tool_response>{{ m['content'] }}</tool_response><|im_end|>\n"
    "{%- elif m.get('tool_calls') %}<|im_start|>assistant\n{% for c in m['tool_calls'] %}"
    "<tool_call>{{ {'name': c['function']['name'], 'arguments': c['function']['arguments']}"
    " | tojson }}</tool_call>{% endfor %}<|im_end|>\n"
    "{%- else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{%- endif %}"
    "{%- endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _long_context_copy(source: Path, folder: Path) -> Path:
    """A copy of a tiny model with a longer context window (tool and schema prompts are
    long in a 400-token vocabulary); rotary position embeddings need no new weights."""
    import json
    import shutil

    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 4096
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="session")
def tiny_long_llama_dir(models_root: Path, tiny_llama_dir: Path) -> Path:
    """The tiny Llama (ChatML template, no tool support) with a 4096-token context."""
    return _long_context_copy(tiny_llama_dir, models_root / "tiny-llama-long")


@pytest.fixture(scope="session")
def tiny_tools_llama_dir(models_root: Path, tiny_llama_dir: Path) -> Path:
    """The tiny Llama with a chat template that supports tools, and a 4096-token context."""
    from transformers import AutoTokenizer

    folder = _long_context_copy(tiny_llama_dir, models_root / "tiny-llama-tools")
    tok = AutoTokenizer.from_pretrained(folder)
    tok.chat_template = TOOLS_CHATML
    tok.save_pretrained(folder)
    return folder


# A processor chat template: each message's content is a list of typed entries, an image
# entry rendered as the placeholder the processor expands into the image's tokens.
VLM_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
VLM_IMAGE_SIZE, VLM_PATCH = 32, 8
# CLIP's "full" features: one token per patch plus the class token.
VLM_IMAGE_TOKENS = (VLM_IMAGE_SIZE // VLM_PATCH) ** 2 + 1


@pytest.fixture(scope="session")
def tiny_vlm_dir(models_root: Path) -> Path:
    """A random LLaVA (a 2-layer CLIP vision tower on 32x32 images, the tiny Llama's shape
    as its language model) saved with its processor: the tokenizer above plus an
    ``<image>`` token, and a CLIP image processor built in code."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tok = _tokenizer(CHATML)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    # What a Llama tokenizer returns (the base class adds token_type_ids on transformers 4.x,
    # which LLaVA's generate() refuses).
    tok.model_input_names = tok.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    image_token = tok.convert_tokens_to_ids("<image>")
    text = _tiny_llama_config(tok)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=VLM_IMAGE_SIZE,
        patch_size=VLM_PATCH,
        projection_dim=32,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token,
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    size = {"height": VLM_IMAGE_SIZE, "width": VLM_IMAGE_SIZE}
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": VLM_IMAGE_SIZE}, crop_size=size),
        tokenizer=tok,
        patch_size=VLM_PATCH,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=VLM_CHATML,
    )
    folder = models_root / "tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
