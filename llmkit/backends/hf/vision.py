"""Vision-language models on the ``hf`` backend: images in chat messages.

A model folder (or cached hub snapshot) whose ``config.json`` has a ``vision_config`` is a
vision-language model (LLaVA, Idefics3/SmolVLM, Qwen2-VL, Gemma 3, ...). It is loaded with
transformers' image-text-to-text class (``AutoModelForImageTextToText``, or the class its
config names) together with its processor (``AutoProcessor``: the tokenizer plus an image
processor), and the backend declares ``capabilities.vision``. The check reads only the JSON
file, so it is made when the backend is constructed: the client refuses an image for a
text-only model before the model is loaded or anything is generated.

A chat request is rendered through the **processor's** chat template, each message's
content as a list of typed entries (``{"type": "text"}``, ``{"type": "image"}``: the shape
processor templates iterate over), and the processor turns the images into the model's
inputs (``pixel_values`` and whatever else the architecture needs) and expands each image
placeholder into the image's tokens, exactly as ``processor.apply_chat_template(...,
tokenize=True)`` does for a transformers user. The images are decoded here from the part's
``data:`` URL (with Pillow, as transformers' own ``load_image`` does, in RGB). A URL image is
refused: a local model fetches nothing from the network; pass the bytes or a path (``Image``
reads it). ``detail`` is an OpenAI hint with no meaning here and is ignored. Audio and file
parts are refused (``capabilities.audio``/``files`` stay off).

**Batching.** A request with images runs in a generate() call of its own: the image inputs
of different architectures do not stack along one batch axis in one way (LLaVA flattens
every image of the batch into one tensor, Idefics3 pads images per row, Qwen2-VL keeps a
grid per image), so left-padding rows together is not safe in general. Streaming, stop
strings, deadlines and cancellation work as for any row (they act on the generated tokens).
A text-only request to a vision-language model is tokenized the same way (no images) and
batches with other text requests as usual.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import BackendUnavailable, ConfigError, InvalidInputError, UnsupportedFeatureError
from ...types import ImagePart, Message, TextPart

__all__ = [
    "chat_inputs",
    "folder_has_vision",
    "hub_has_vision",
    "load_vision_model",
    "media_parts",
    "to_device",
]

logger = logging.getLogger("llmkit.backends.hf")


def folder_has_vision(folder: str | Path) -> bool:
    """Whether the model in ``folder`` is a vision-language model (its config has a
    ``vision_config``); reads only ``config.json``."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and isinstance(config.get("vision_config"), dict)


def hub_has_vision(repo_id: str) -> bool:
    """:func:`folder_has_vision` for a hub id in the local cache (``False`` when not cached:
    loading it then fails with the cache error)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # invalid repo id shapes raise HFValidationError
        return False
    return isinstance(found, str) and folder_has_vision(Path(found).parent)


def _require_pillow(source: str) -> None:
    import importlib.util

    if importlib.util.find_spec("PIL") is None:
        raise BackendUnavailable(
            f"hf:{source} is a vision-language model; its image processor needs Pillow, "
            'which is not installed; run: pip install "llmkit[hf]" (or pip install pillow)'
        )


def load_vision_model(
    source: str, location: str, *, dtype: Any, trust_remote_code: bool
) -> tuple[Any, Any]:
    """``(model, processor)`` of the vision-language model in ``location`` (offline)."""
    _require_pillow(source)
    import transformers
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            location, local_files_only=True, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # OSError, ValueError, KeyError: no or a broken processor
        raise ConfigError(
            f"hf:{source}: {location} is a vision-language model but its processor cannot be "
            f"loaded: {_first_line(exc)}; save it there with processor.save_pretrained(folder)"
        ) from None
    if getattr(processor, "image_processor", None) is None:
        raise ConfigError(
            f"hf:{source}: {location} has a vision_config but its processor "
            f"({type(processor).__name__}) has no image processor; save the model's "
            "AutoProcessor (tokenizer and image processor) with processor.save_pretrained(folder)"
        )
    kwargs = {"dtype": dtype, "local_files_only": True, "trust_remote_code": trust_remote_code}
    try:
        model = AutoModelForImageTextToText.from_pretrained(location, **kwargs)
    except ValueError as exc:
        # Not in the auto mapping: the class the config names, when transformers has it.
        config = AutoConfig.from_pretrained(location, **kwargs)
        names = getattr(config, "architectures", None) or []
        cls = getattr(transformers, names[0], None) if names else None
        if cls is None:
            raise ConfigError(
                f"hf:{source}: cannot load {location} as an image-text-to-text model: "
                f"{_first_line(exc)}; this transformers version does not know the architecture"
            ) from None
        model = cls.from_pretrained(location, **kwargs)
    return model, processor


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def media_parts(messages: Sequence[Message]) -> list[str]:
    """The types of the non-text parts in ``messages`` (``image_url``, ``input_audio``, ...)."""
    return [
        p.type
        for m in messages
        if isinstance(m.content, list)
        for p in m.content
        if not isinstance(p, TextPart)
    ]


def _decode_image(part: ImagePart, model: str) -> Any:
    """The part's image as an RGB ``PIL.Image`` (decoded from its ``data:`` URL)."""
    from PIL import Image, UnidentifiedImageError

    url = part.image_url.url
    if not url.startswith("data:"):
        raise UnsupportedFeatureError(
            f"hf:{model}: a local model fetches no URLs, and this image is one ({url[:60]}); "
            "download it and pass the bytes or the path (llmkit.Image(path))"
        )
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise InvalidInputError("an image data: URL must be base64 (data:image/png;base64,...)")
    try:
        data = base64.b64decode(payload, validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
    except (binascii.Error, ValueError, OSError, UnidentifiedImageError) as exc:
        raise InvalidInputError(
            f"hf:{model}: an image in the messages could not be decoded ({exc}); give a PNG, "
            "JPEG, GIF or WebP image, e.g. llmkit.Image(path)"
        ) from None
    return image.convert("RGB")


def _conversation(
    messages: Sequence[Message], rendered: list[dict[str, Any]], model: str
) -> list[dict[str, Any]]:
    """The rendered chat-template dicts with typed content lists, the images in place."""
    # render_messages makes one dict per message, plus the tools' system turn in front.
    offset = len(rendered) - len(messages)
    conversation = []
    for index, item in enumerate(rendered):
        message = messages[index - offset] if index >= offset else None
        content: list[dict[str, Any]]
        if message is not None and isinstance(message.content, list) and media_parts([message]):
            content = []
            for part in message.content:
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                elif isinstance(part, ImagePart):
                    content.append({"type": "image", "image": _decode_image(part, model)})
                else:
                    raise UnsupportedFeatureError(
                        f"hf:{model} reads text and images; {part.type} parts are not "
                        "supported by local models"
                    )
        else:
            text = item.get("content")
            content = [{"type": "text", "text": text}] if text else []
        conversation.append({**item, "content": content})
    return conversation


def _accepted(hf_model: Any) -> set[str] | None:
    """The inputs ``generate()`` takes for ``hf_model`` (what its forward and
    prepare_inputs_for_generation name), or ``None`` when that cannot be told."""
    names: set[str] = set()
    for method in (hf_model.forward, getattr(hf_model, "prepare_inputs_for_generation", None)):
        if method is None:
            continue
        try:
            names.update(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            return None
    return names


def chat_inputs(
    processor: Any,
    hf_model: Any,
    messages: Sequence[Message],
    rendered: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None,
    template_kwargs: dict[str, Any],
    model: str,
) -> tuple[list[int], dict[str, Any], str]:
    """The prompt of a chat request to a vision-language model: its token ids (each image
    placeholder expanded to the image's tokens), the other model inputs (``pixel_values``,
    ...; empty without images) and the rendered prompt text."""
    conversation = _conversation(messages, rendered, model)
    common = {"tools": tools, "add_generation_prompt": True, **template_kwargs}
    try:
        text = processor.apply_chat_template(conversation, tokenize=False, **common)
        batch = processor.apply_chat_template(
            conversation, tokenize=True, return_dict=True, return_tensors="pt", **common
        )
    except (UnsupportedFeatureError, InvalidInputError):
        raise
    except Exception as exc:  # jinja2 errors, an image the processor refuses, ...
        raise InvalidInputError(
            f"hf:{model}: the model's processor rejected the messages: {exc}"
        ) from None
    ids = [int(i) for i in batch["input_ids"][0].tolist()]
    # generate() refuses inputs its model does not name, and some tokenizers add one the
    # model never reads (token_type_ids from a tokenizer's default model_input_names).
    accepted = _accepted(hf_model)
    inputs = {
        k: v
        for k, v in batch.items()
        if k not in ("input_ids", "attention_mask") and (accepted is None or k in accepted)
    }
    return ids, inputs, str(text)


def to_device(inputs: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """The image inputs on the model's device; floating tensors (pixels) in its dtype."""
    moved = {}
    for key, value in inputs.items():
        if hasattr(value, "to"):
            value = value.to(device, dtype=dtype) if value.is_floating_point() else value.to(device)
        moved[key] = value
    return moved
