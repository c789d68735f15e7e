"""Sentence embeddings in-process with transformers, the way sentence-transformers makes them.

An embedding model folder written by sentence-transformers says how its vectors are made:
``modules.json`` lists the steps (Transformer → Pooling → Normalize), ``1_Pooling/config.json``
the pooling mode, ``sentence_bert_config.json`` the maximum sequence length (often shorter than
the tokenizer's own limit: all-MiniLM-L6-v2 truncates at 256 tokens although its tokenizer
advertises 512). :func:`read_recipe` reads those files; :class:`Embedder` follows them with
plain transformers, so vectors match sentence-transformers' ``encode`` without needing it at
run time.

Throughput and memory: texts are tokenized once, sorted by length and cut into batches of at
most ``batch_size`` texts and ``max_batch_tokens`` padded tokens, so short texts are not padded
to the longest one and memory is bounded by the batch, not the input; results come back in
input order. No gradients are kept (``torch.inference_mode``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ...errors import ConfigError, InvalidInputError, UnsupportedFeatureError
from ...types import EmbeddingRequest, EmbeddingResponse, Usage

if TYPE_CHECKING:
    import torch

__all__ = ["Embedder", "EmbeddingRecipe", "EmbeddingSupport", "is_embedding_folder", "read_recipe"]

logger = logging.getLogger("llmkit.backends.hf")

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len", "lasttoken"]
_POOLING_FLAGS: dict[str, Pooling] = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
    "pooling_mode_lasttoken": "lasttoken",
}
DEFAULT_BATCH_SIZE = 32  # sentence-transformers' default for encode()
DEFAULT_MAX_BATCH_TOKENS = 16_384


@dataclass(frozen=True)
class EmbeddingRecipe:
    """How a folder's model turns token vectors into one vector per text."""

    pooling: Pooling = "mean"
    normalize: bool = True
    max_seq_length: int | None = None
    do_lower_case: bool = False
    transformer_path: str = ""  # the sub-folder of the Transformer module ("" = the folder)
    from_sentence_transformers: bool = False


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"hf: cannot read {path}: {exc}") from None


def read_recipe(folder: str | Path) -> EmbeddingRecipe | None:
    """The recipe of a sentence-transformers folder, or ``None`` for a folder without one."""
    root = Path(folder)
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ConfigError(f"hf: {modules_file} is not a list of modules")
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: str(m.get("path", "")) for m in modules}
    unknown = set(kinds) - {"Transformer", "Pooling", "Normalize"}
    if unknown:
        # Dense layers and the like change the vectors; ignoring them would be silently wrong.
        raise UnsupportedFeatureError(
            f"hf: {root} uses sentence-transformers modules llmkit does not run: "
            f"{', '.join(sorted(unknown))}"
        )
    pooling: Pooling = "mean"
    if "Pooling" in kinds:
        config = _read_json(root / kinds["Pooling"] / "config.json")
        chosen = [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)]
        if len(chosen) != 1:
            raise UnsupportedFeatureError(
                f"hf: {root}: pooling {chosen or 'none'} is not supported; one of "
                f"{', '.join(_POOLING_FLAGS.values())} is"
            )
        pooling = chosen[0]
    transformer_path = kinds.get("Transformer", "")
    settings_file = root / transformer_path / "sentence_bert_config.json"
    settings = _read_json(settings_file) if settings_file.is_file() else {}
    max_len = settings.get("max_seq_length")
    return EmbeddingRecipe(
        pooling=pooling,
        normalize="Normalize" in kinds,
        max_seq_length=int(max_len) if max_len else None,
        do_lower_case=bool(settings.get("do_lower_case", False)),
        transformer_path=transformer_path,
        from_sentence_transformers=True,
    )


class Embedder:
    """A loaded embedding model: ``embed(texts)`` → vectors in input order, token count."""

    def __init__(
        self,
        folder: str | Path,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        root = Path(folder)
        recipe = read_recipe(root)
        if recipe is None:
            # A plain encoder folder: mean pooling and unit length are what most embedding
            # models expect; say so once rather than guess silently.
            recipe = EmbeddingRecipe()
            logger.info(
                "hf: %s has no sentence-transformers modules.json; mean pooling, L2-normalised",
                root,
            )
        self.recipe = recipe
        model_dir = root / recipe.transformer_path
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        kwargs: dict[str, Any] = {"dtype": dtype} if dtype is not None else {}
        self.model = AutoModel.from_pretrained(str(model_dir), **kwargs).to(device).eval()
        self.device = device
        limit = recipe.max_seq_length or getattr(self.tokenizer, "model_max_length", None)
        model_limit = getattr(self.model.config, "max_position_embeddings", None)
        if not isinstance(limit, int) or limit > 1_000_000:  # "no limit" sentinel of tokenizers
            limit = model_limit
        self.max_seq_length: int | None = limit
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.dimensions = int(self.model.config.hidden_size)

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices grouped into batches: longest first, each within both limits."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        out: list[list[int]] = []
        current: list[int] = []
        for i in order:
            longest = lengths[current[0]] if current else lengths[i]
            fits = (len(current) + 1) * longest <= self.max_batch_tokens
            if current and (len(current) >= self.batch_size or not fits):
                out.append(current)
                current = []
            current.append(i)
        if current:
            out.append(current)
        return out

    def embed(
        self, texts: Sequence[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` (in their order) and the number of tokens embedded.

        Texts longer than the model's maximum sequence length are truncated to it, as
        sentence-transformers does. ``dimensions`` keeps the first N components (for models
        trained to allow it, e.g. Matryoshka embeddings) and re-normalises them.
        """
        import torch

        if dimensions is not None and not 1 <= dimensions <= self.dimensions:
            raise InvalidInputError(
                f"dimensions must be between 1 and {self.dimensions} for this model, got {dimensions}"
            )
        if self.recipe.do_lower_case:
            texts = [t.lower() for t in texts]
        encoded = self.tokenizer(
            list(texts),
            truncation=self.max_seq_length is not None,
            max_length=self.max_seq_length,
            padding=False,
        )
        ids: list[list[int]] = encoded["input_ids"]
        vectors: list[list[float]] = [[] for _ in ids]
        tokens = 0
        with torch.inference_mode():
            for batch in self.batches([len(x) for x in ids]):
                features = self.tokenizer.pad(
                    {"input_ids": [ids[i] for i in batch]},
                    padding=True,
                    return_tensors="pt",
                ).to(self.device)
                mask = features["attention_mask"]
                tokens += int(mask.sum())
                hidden = self.model(**features).last_hidden_state
                pooled = _pool(self.recipe.pooling, hidden, mask)
                if dimensions is not None:
                    pooled = pooled[:, :dimensions]
                if self.recipe.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                for row, i in zip(pooled.float().cpu().tolist(), batch, strict=True):
                    vectors[i] = row
        return vectors, tokens


def _pool(mode: Pooling, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    if mode == "lasttoken":
        last = mask.sum(dim=1) - 1  # right padding: the last real token of each row
        return hidden[torch.arange(hidden.size(0), device=hidden.device), last]
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    return summed / counts


def is_embedding_folder(location: str | Path) -> bool:
    """Whether a model folder is a sentence-transformers embedding model."""
    return (Path(location) / "modules.json").is_file()


class EmbeddingSupport:
    """``embed``/``aembed`` for the ``hf`` backend (mixed into it): the model folder's own
    recipe, loaded on first use on the backend's device, one batch at a time."""

    model: str
    source: Any  # loading.ResolvedSource
    settings: Any  # backend.HuggingFaceSettings

    _embedder_instance: Embedder | None = None

    def _embedder(self) -> Embedder:
        import threading

        lock = self.__dict__.setdefault("_embedder_lock", threading.Lock())
        with lock:
            if self._embedder_instance is None:
                if self.source.kind != "folder" or not is_embedding_folder(self.source.location):
                    raise UnsupportedFeatureError(
                        f"hf:{self.model} is not an embedding model (no sentence-transformers "
                        "modules.json in its folder); use an embedding model such as hf:minilm"
                    )
                from .loading import resolve_device, resolve_dtype

                device = resolve_device(self.settings.device)
                self._embedder_instance = Embedder(
                    self.source.location,
                    device=device,
                    dtype=resolve_dtype(self.settings.dtype, device),
                    batch_size=self.settings.embed_batch_size,
                )
            return self._embedder_instance

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        embedder = self._embedder()
        lock = self.__dict__["_embedder_lock"]
        with lock:  # one forward pass at a time: the model is shared
            vectors, tokens = embedder.embed(request.inputs, request.dimensions)
        # model_construct: the floats came from torch; validating each would only cost time.
        return EmbeddingResponse.model_construct(
            vectors=vectors,
            model=self.model,
            backend=f"hf:{self.model}",
            usage=Usage(prompt_tokens=tokens),
            request_id=None,
        )

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        import asyncio

        return await asyncio.to_thread(self.embed, request)
