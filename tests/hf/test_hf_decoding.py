"""The I/O-free pieces: incremental decoding, stop strings, generate() settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmkit.backends.hf.generation import (
    IncrementalDecoder,
    StopMatcher,
    build_generation_config,
    sampling_key,
)
from llmkit.errors import InvalidInputError
from llmkit.types import GenerationParams

MULTIBYTE = "A café in Zürich 日本語 🙂🚀 crème brûlée € done"


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_incremental_decoder_never_splits_a_character(tokenizer: Any) -> None:
    ids = tokenizer(MULTIBYTE, add_special_tokens=False)["input_ids"]
    # Byte-level BPE: some characters span several tokens, so splitting would show U+FFFD.
    assert any("\ufffd" in tokenizer.decode([i]) for i in ids)
    decoder = IncrementalDecoder(lambda t: tokenizer.decode(t, skip_special_tokens=True))
    deltas = [decoder.push(i) for i in ids]
    deltas.append(decoder.flush())
    assert "".join(deltas) == MULTIBYTE
    assert not any("\ufffd" in d for d in deltas)
    assert sum(1 for d in deltas if d) > 5  # it streams, it does not wait for the end


def test_incremental_decoder_flushes_an_unfinished_character(tokenizer: Any) -> None:
    ids = tokenizer("🙂", add_special_tokens=False)["input_ids"]
    decoder = IncrementalDecoder(lambda t: tokenizer.decode(t, skip_special_tokens=True))
    assert [decoder.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert decoder.flush() == tokenizer.decode(ids[:-1])


def test_incremental_decoder_skips_special_tokens(tokenizer: Any) -> None:
    decoder = IncrementalDecoder(lambda t: tokenizer.decode(t, skip_special_tokens=True))
    out = [decoder.push(i) for i in tokenizer("Hello", add_special_tokens=False)["input_ids"]]
    out.append(decoder.push(tokenizer.eos_token_id))
    assert "".join(out) + decoder.flush() == "Hello"


@pytest.mark.parametrize(
    ("pieces", "stops", "expected", "hit"),
    [
        (["Hello wor", "ld. Bye"], ["world"], "Hello ", True),
        (["ab", "c", "d"], ["cd"], "ab", True),
        (["Hel", "lo"], ["xyz"], "Hello", False),
        (["a##", "#b"], ["###"], "a", True),
        (["fo", "od"], ["foo", "od"], "", True),  # the earliest match wins
        (["no stops"], [], "no stops", False),
    ],
)
def test_stop_matcher(pieces: list[str], stops: list[str], expected: str, hit: bool) -> None:
    matcher = StopMatcher(stops)
    out, found = [], False
    for piece in pieces:
        text, found = matcher.feed(piece)
        out.append(text)
        if found:
            break
    if not found:
        out.append(matcher.flush())
    assert "".join(out) == expected
    assert found is hit


def test_stop_matcher_holds_back_a_possible_stop_prefix() -> None:
    matcher = StopMatcher(["\nUser:"])
    assert matcher.feed("Answer.\nUs") == ("Answer.", False)
    assert matcher.feed("ually fine") == ("\nUsually fine", False)


def _config(params: GenerationParams, extra: dict[str, Any] | None = None) -> Any:
    from transformers import GenerationConfig

    base = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9, top_k=20)
    return build_generation_config(base, params, extra or {}, max_new_tokens=7, pad_token_id=0)


def test_greedy_unless_sampling_is_asked_for() -> None:
    config, _ = _config(GenerationParams())
    assert config.do_sample is False and config.max_new_tokens == 7
    config, _ = _config(GenerationParams(temperature=0))
    assert config.do_sample is False
    config, _ = _config(GenerationParams(temperature=0.8))
    assert config.do_sample is True and config.temperature == 0.8 and config.top_k is None
    config, _ = _config(GenerationParams(top_p=0.5))
    assert config.do_sample is True and config.top_p == 0.5
    config, _ = _config(GenerationParams(), {"do_sample": True})
    assert config.do_sample is True and config.temperature == 0.6  # the model's own defaults


def test_extra_options_are_checked() -> None:
    config, kwargs = _config(
        GenerationParams(), {"repetition_penalty": 1.3, "logits_processor": []}
    )
    assert config.repetition_penalty == 1.3 and kwargs == {"logits_processor": []}
    with pytest.raises(InvalidInputError, match="unknown generation option 'repetition_penalti'"):
        _config(GenerationParams(), {"repetition_penalti": 1.3})
    with pytest.raises(InvalidInputError, match="beam search"):
        _config(GenerationParams(), {"num_beams": 4})


def test_sampling_key_groups_equal_settings() -> None:
    assert sampling_key(GenerationParams(max_tokens=3), {}) == sampling_key(GenerationParams(), {})
    assert sampling_key(GenerationParams(temperature=1), {}) != sampling_key(GenerationParams(), {})
