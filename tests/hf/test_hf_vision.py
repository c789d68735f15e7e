"""Vision-language models on the hf backend (issue 19): a tiny random LLaVA built in the
test (see ``tiny_vlm_dir``) answers about an image through ``client.chat``, streamed and
not, sync and async, with exactly what transformers' own ``model.generate`` makes of the
processor's inputs; a text-only model refuses images before generating."""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import VLM_IMAGE_TOKENS
from hf_testkit import chat_request, generate_threads, slow, wait_no_generate_threads

from llmkit import Audio, Client, Image, Message, UnsupportedFeatureError, errors
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.types import ChatRequest, GenerationParams, TextDelta, Tool

pytestmark = pytest.mark.timeout(120)

QUESTION = "What is in this picture?"


def png(seed: int, size: tuple[int, int] = (40, 48)) -> bytes:
    """A random RGB image as PNG bytes (different seeds: different pictures)."""
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.random.RandomState(seed).randint(0, 256, (*size, 3), dtype=np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def ask(image: bytes, text: str = QUESTION) -> Message:
    return Message(role="user", content=[text, Image(image)])


def reference(folder: Path, image: bytes, max_new_tokens: int, text: str = QUESTION) -> str:
    """What transformers makes of the same question and image by itself: the processor's
    chat template and inputs, the model's greedy generate()."""
    import torch
    from PIL import Image as PILImage
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    picture = PILImage.open(io.BytesIO(image)).convert("RGB")
    conversation = [
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image", "image": picture}],
        }
    ]
    inputs = processor.apply_chat_template(
        conversation,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    return str(processor.tokenizer.decode(new, skip_special_tokens=True))


@pytest.fixture(scope="module")
def vlm(tiny_vlm_dir: Path) -> Iterator[HuggingFaceBackend]:
    backend = HuggingFaceBackend(str(tiny_vlm_dir), device="cpu", max_new_tokens=12)
    backend.load()
    yield backend
    backend.close()


def client_kwargs(folder: Path) -> dict[str, Any]:
    return {"model": f"hf:{folder}", "device": "cpu"}


def test_vision_is_declared_from_the_config_before_loading(
    tiny_vlm_dir: Path, tiny_llama_dir: Path
) -> None:
    vlm = HuggingFaceBackend(str(tiny_vlm_dir), device="cpu")
    assert vlm.capabilities.vision and not vlm.is_loaded
    assert not vlm.capabilities.audio and not vlm.capabilities.files
    assert not HuggingFaceBackend(str(tiny_llama_dir), device="cpu").capabilities.vision


def test_the_prompt_expands_the_image_into_its_tokens(vlm: HuggingFaceBackend) -> None:
    loaded = vlm._ensure_loaded()
    request = ChatRequest(model="tiny", messages=[ask(png(1))])
    prepared = vlm._prepare(loaded, request)
    image_token = loaded.model.config.image_token_id
    assert prepared.input_ids.count(image_token) == VLM_IMAGE_TOKENS
    assert prepared.inputs is not None
    assert tuple(prepared.inputs["pixel_values"].shape) == (1, 3, 32, 32)
    assert vlm.prompt_text(request).startswith(f"<|im_start|>user\n{QUESTION}<image>")


@pytest.mark.parametrize("op", ["chat", "stream"])
def test_chat_with_an_image_answers_as_transformers_does(
    driver: Any, tiny_vlm_dir: Path, op: str
) -> None:
    image, other = png(1), png(2)
    expected = reference(tiny_vlm_dir, image, 10)
    assert expected.strip(), "the random model answered nothing: the comparison would be empty"
    # The image matters: another picture makes a different answer.
    assert reference(tiny_vlm_dir, other, 10) != expected
    if op == "chat":
        response = driver.chat(client_kwargs(tiny_vlm_dir), [ask(image)], max_tokens=10)
    else:
        events, response = driver.stream(client_kwargs(tiny_vlm_dir), [ask(image)], max_tokens=10)
        assert "".join(e.text for e in events) == response.text
        assert sum(isinstance(e, TextDelta) for e in events) > 1
    assert response.text == expected
    assert response.usage.prompt_tokens > VLM_IMAGE_TOKENS
    assert response.usage.completion_tokens == 10
    assert not generate_threads() or wait_no_generate_threads() is None


def test_streamed_text_equals_the_whole_answer(vlm: HuggingFaceBackend) -> None:
    request = ChatRequest(model="tiny", messages=[ask(png(3))])
    whole = vlm.chat(request)
    streamed = "".join(e.text for e in vlm.stream(request))
    assert streamed == whole.text and whole.text


def test_a_stop_string_ends_an_image_answer(vlm: HuggingFaceBackend) -> None:
    messages = [ask(png(1))]
    full = vlm.chat(ChatRequest(model="tiny", messages=messages)).text
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip()
    cut = vlm.chat(
        ChatRequest(model="tiny", messages=messages, params=GenerationParams(stop=[stop]))
    )
    assert cut.text == full[: full.index(stop)]
    assert cut.finish_reason == "stop"


def test_text_only_requests_to_a_vlm_still_batch_and_image_requests_run_alone(
    vlm: HuggingFaceBackend,
) -> None:
    texts = [chat_request(p, max_tokens=6) for p in ("Hello", "Tell me a story", "café")]
    images = [ChatRequest(model="tiny", messages=[ask(png(s))]) for s in (1, 2)]
    requests = texts + images
    expected = [vlm.chat(r).text for r in requests]
    before = len(vlm._scheduler.sizes)
    # A slow blocker holds the model while every request queues behind it.
    blocker = vlm.stream(chat_request("Hello", max_tokens=400, extra=slow(0.05)))
    assert isinstance(next(blocker), TextDelta)
    results: list[str | None] = [None] * len(requests)

    def run(i: int) -> None:
        results[i] = vlm.chat(requests[i]).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    end = time.monotonic() + 30
    while vlm._scheduler.waiting < len(requests):
        assert time.monotonic() < end
        time.sleep(0.005)
    blocker.close()  # type: ignore[attr-defined]
    for t in threads:
        t.join(60)
    assert results == expected
    # The blocker, the three text requests together, each image request alone.
    assert sorted(list(vlm._scheduler.sizes)[before:]) == [1, 1, 1, 3]
    wait_no_generate_threads()


async def test_closing_an_image_stream_stops_its_generation(vlm: HuggingFaceBackend) -> None:
    request = ChatRequest(
        model="tiny",
        messages=[ask(png(1))],
        params=GenerationParams(max_tokens=400),
        extra=slow(0.05),
    )
    stream = vlm.astream(request)
    assert isinstance(await stream.__anext__(), TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.to_thread(wait_no_generate_threads)


def test_a_deadline_ends_an_image_request(vlm: HuggingFaceBackend) -> None:
    request = ChatRequest(
        model="tiny",
        messages=[ask(png(1))],
        params=GenerationParams(max_tokens=400),
        extra=slow(0.05),
        deadline=time.monotonic() + 0.5,
    )
    with pytest.raises(errors.TimeoutError):
        vlm.chat(request)
    wait_no_generate_threads()


def test_a_url_image_is_refused_before_generating(vlm: HuggingFaceBackend) -> None:
    request = ChatRequest(
        model="tiny", messages=[Message(role="user", content=["?", Image("https://x.test/a.png")])]
    )
    with pytest.raises(UnsupportedFeatureError, match="fetches no URLs"):
        vlm.chat(request)
    assert not generate_threads()


def test_undecodable_image_data_is_invalid_input(vlm: HuggingFaceBackend) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bm90IGFuIGltYWdl"}}
    request = ChatRequest(
        model="tiny",
        messages=[Message(role="user", content=[part])],  # type: ignore[list-item]
    )
    with pytest.raises(errors.InvalidInputError, match="could not be decoded"):
        vlm.chat(request)


def test_audio_to_a_vlm_is_refused_by_the_client(tiny_vlm_dir: Path) -> None:
    wav = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 28
    with Client(f"hf:{tiny_vlm_dir}", device="cpu") as client:
        with pytest.raises(UnsupportedFeatureError, match="audio"):
            client.chat(Message(role="user", content=["?", Audio(wav)]))
        assert not client.backend.is_loaded  # type: ignore[attr-defined]


def test_a_text_only_model_refuses_an_image_when_called_directly(llama: HuggingFaceBackend) -> None:
    # The client refuses it first (capabilities.vision is off, see test_hf_rejects_images);
    # the backend itself refuses it too, before generating.
    with pytest.raises(UnsupportedFeatureError, match="text-only model"):
        llama.chat(ChatRequest(model="tiny", messages=[ask(png(1))]))
    assert not generate_threads()


def test_a_vlm_folder_without_its_processor_is_a_config_error(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "no-processor"
    shutil.copytree(tiny_vlm_dir, folder)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (folder / name).unlink(missing_ok=True)
    backend = HuggingFaceBackend(str(folder), device="cpu")
    with pytest.raises(errors.ConfigError, match="processor"):
        backend.load()


def test_inputs_the_model_does_not_take_are_left_out(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    # A tokenizer whose model_input_names include token_type_ids (the base class default on
    # transformers 4.x) makes the processor return them; LLaVA's generate() refuses them.
    import json
    import shutil

    folder = tmp_path / "token-types"
    shutil.copytree(tiny_vlm_dir, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    config_path.write_text(json.dumps(config))
    backend = HuggingFaceBackend(str(folder), device="cpu", max_new_tokens=4)
    try:
        loaded = backend._ensure_loaded()
        request = ChatRequest(model="tiny", messages=[ask(png(1))])
        batch = loaded.processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "text", "text": "?"}]}],
            tokenize=True,
            return_dict=True,
        )
        assert "token_type_ids" in batch  # the processor does return them
        prepared = backend._prepare(loaded, request)
        assert prepared.inputs is not None and set(prepared.inputs) == {"pixel_values"}
        assert backend.chat(request).usage.completion_tokens == 4
    finally:
        backend.close()


def test_a_cached_hub_vlm_declares_vision_and_answers(
    tiny_vlm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<rev>/...}.
    repo = tmp_path / "hub" / "models--llmkit-tests--tiny-llava"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for f in tiny_vlm_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with Client("hf:llmkit-tests/tiny-llava", device="cpu") as client:
        assert client.backend.capabilities.vision  # type: ignore[attr-defined]
        reply = client.chat([ask(png(1))], max_tokens=10)
    assert reply.text == reference(tiny_vlm_dir, png(1), 10)
    assert not HuggingFaceBackend("llmkit-tests/not-cached", device="cpu").capabilities.vision


def test_tools_and_a_system_prompt_keep_each_image_in_its_message(
    vlm: HuggingFaceBackend,
) -> None:
    # Without native tool support the tools go into a system turn put in front of the
    # messages: the images must still land in the user message they came with.
    tool = Tool(name="zoom", description="Zoom in", parameters={"type": "object"})
    messages = [
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello"),
        ask(png(1), "first"),
    ]
    request = ChatRequest(model="tiny", messages=messages, params=GenerationParams(tools=[tool]))
    text = vlm.prompt_text(request)
    assert text.startswith("<|im_start|>system\n") and "zoom" in text
    assert text.count("<image>") == VLM_IMAGE_TOKENS
    assert text.index("first<image>") > text.index("<|im_start|>assistant\nHello")


async def test_async_calls_decode_images_off_the_event_loop(
    vlm: HuggingFaceBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmkit.backends.hf import vision

    threads: list[threading.Thread] = []
    decode = vision._decode_image

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread())
        return decode(*args)

    monkeypatch.setattr(vision, "_decode_image", recording)
    request = ChatRequest(
        model="tiny", messages=[ask(png(1))], params=GenerationParams(max_tokens=3)
    )
    await vlm.achat(request)
    async with contextlib.aclosing(vlm.astream(request)) as events:  # type: ignore[type-var]
        async for _ in events:
            pass
    assert len(threads) == 2 and threading.main_thread() not in threads


def test_llmkit_serve_answers_about_an_image_from_the_openai_sdk(tiny_vlm_dir: Path) -> None:
    # End to end over a real socket: the official SDK's image_url part reaches the served
    # VLM, which answers as transformers' own generate() does.
    import base64

    import openai

    from llmkit import AsyncClient
    from llmkit.server import create_app, run_in_thread

    image = png(1)
    url = f"data:image/png;base64,{base64.b64encode(image).decode()}"
    content = [
        {"type": "text", "text": QUESTION},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    client = AsyncClient(f"hf:{tiny_vlm_dir}", device="cpu")
    app = create_app(client, close_client=True)
    with run_in_thread(app, graceful_timeout=1) as base_url:
        sdk = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        reply = sdk.chat.completions.create(
            model="tiny-llava", messages=[{"role": "user", "content": content}], max_tokens=10
        )
        sdk.close()
    assert reply.choices[0].message.content == reference(tiny_vlm_dir, image, 10)
