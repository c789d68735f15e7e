"""Images, audio and files in messages: built from paths, bytes and URLs, typed by their
bytes, refused with a reason, and sent in each backend's own form (checked on the wire)."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from llmkit import Audio, File, Image, InvalidInputError, Message, UnsupportedFeatureError, media
from llmkit.backends.openai import OpenAIBackend
from llmkit.backends.rest import RestBackend
from llmkit.types import ChatRequest, normalize_messages


def png_bytes() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def wav_bytes() -> bytes:
    samples = b"\x00\x00" * 8
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", len(samples))
        + samples
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def test_image_from_a_path_is_typed_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes(png_bytes())
    part = Image(misnamed, detail="low")
    assert part.image_url.url.startswith("data:image/png;base64,")
    assert base64.b64decode(part.image_url.url.split(",", 1)[1]) == png_bytes()
    assert part.image_url.detail == "low"


def test_image_from_bytes_and_from_a_url() -> None:
    assert Image(png_bytes()).image_url.url.startswith("data:image/png;base64,")
    assert Image("https://example.test/cat.png").image_url.url == "https://example.test/cat.png"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: Image(p / "missing.png"), "does not exist"),
        (lambda p: Image(p / "cat.png"), "is not a PNG, JPEG, GIF or WebP image"),
        (lambda p: Image(PDF), "it looks like application/pdf"),
        (lambda p: Image(b""), "is empty"),
        (lambda p: Image(3.5), "must be a path, bytes or a URL"),
        (lambda p: Audio(png_bytes()), "is not WAV, MP3, FLAC or Ogg audio"),
        (lambda p: Audio("https://example.test/a.wav"), "sent inline"),
        (lambda p: File(png_bytes()), "is not a PDF"),
    ],
)
def test_bad_media_is_refused_with_the_reason(tmp_path: Path, make: Any, message: str) -> None:
    (tmp_path / "cat.png").write_text("not an image at all")
    with pytest.raises(InvalidInputError, match=message):
        make(tmp_path)


def test_size_limits_are_checked_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes() + b"\x00" * 2000)
    monkeypatch.setattr(media, "MAX_IMAGE_BYTES", 1000)
    with pytest.raises(InvalidInputError, match="the limit is"):
        Image(big)
    with pytest.raises(InvalidInputError, match="the limit is"):
        Image(big.read_bytes())


def test_audio_and_file_parts(tmp_path: Path) -> None:
    audio = Audio(wav_bytes())
    assert audio.input_audio.format == "wav"
    assert base64.b64decode(audio.input_audio.data) == wav_bytes()
    assert Audio(b"\xff\xfb\x90\x00" + b"\x00" * 16).input_audio.format == "mp3"
    assert Audio(b"raw-pcm-bytes", format="pcm16").input_audio.format == "pcm16"
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    part = File(report)
    assert part.file.filename == "report.pdf"
    assert part.file.file_data == "data:application/pdf;base64," + base64.b64encode(PDF).decode()
    assert File(PDF, filename="x.pdf").file.filename == "x.pdf"


def test_messages_take_parts_strings_and_openai_dicts() -> None:
    message = Message(role="user", content=["What is this?", Image(png_bytes())])
    assert message.text == "What is this?"
    dumped = message.to_openai()["content"]
    assert dumped[0] == {"type": "text", "text": "What is this?"}
    assert dumped[1]["type"] == "image_url"
    # The same message as OpenAI-shaped dicts, audio and file parts included.
    shaped = normalize_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Listen and read"},
                    {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}},
                    {"type": "image_url", "image_url": {"url": "https://example.test/x.png"}},
                ],
            }
        ]
    )
    assert [p.type for p in shaped[0].content or []] == ["text", "input_audio", "file", "image_url"]
    with pytest.raises(InvalidInputError):
        normalize_messages([{"role": "user", "content": [{"type": "video", "video": {}}]}])
    # A misspelt key, in a part or in what it carries, is refused rather than dropped.
    misspelt = [
        ("txet", {"type": "text", "text": "x", "txet": "x"}),
        ("fmt", {"type": "input_audio", "input_audio": {"data": "AA", "format": "wav", "fmt": 1}}),
    ]
    for key, part in misspelt:
        with pytest.raises(InvalidInputError, match=f"{key}: Extra inputs are not permitted"):
            normalize_messages([{"role": "user", "content": [part]}])


def parts_message() -> Message:
    return Message(
        role="user",
        content=["Describe all of these", Image(png_bytes()), Audio(wav_bytes()), File(PDF)],
    )


def openai_reply() -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
    }


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("backend_kind", ["openai", "rest"])
async def test_openai_shaped_backends_send_the_parts(backend_kind: str, mode: str) -> None:
    if backend_kind == "openai":
        backend: Any = OpenAIBackend("gpt-4o", api_key="sk-test-0123456789abcdef")
        url = "https://api.openai.com/v1/chat/completions"
    else:
        backend = RestBackend("vlm", base_url="http://gpu:8000/v1")
        url = "http://gpu:8000/v1/chat/completions"
    assert backend.capabilities.vision and backend.capabilities.audio and backend.capabilities.files
    request = ChatRequest(model=backend.model, messages=[parts_message()])
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(url).mock(return_value=httpx.Response(200, json=openai_reply()))
        if mode == "sync":
            backend.chat(request)
        else:
            await backend.achat(request)
    content = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "input_audio", "file"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[2]["input_audio"]["format"] == "wav"
    assert content[3]["file"]["file_data"].startswith("data:application/pdf;base64,")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ollama_sends_images_as_base64_and_refuses_other_parts(mode: str) -> None:
    backend = RestBackend("llava", dialect="ollama")
    ok = ChatRequest(
        model="llava", messages=[Message(role="user", content=["What?", Image(png_bytes())])]
    )
    reply = {"model": "llava", "message": {"role": "assistant", "content": "a dot"}, "done": True}
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("http://127.0.0.1:11434/api/chat").mock(
            return_value=httpx.Response(200, json=reply)
        )
        r = backend.chat(ok) if mode == "sync" else await backend.achat(ok)
    sent = json.loads(route.calls.last.request.content)["messages"][0]
    assert sent["content"] == "What?" and r.text == "a dot"
    assert base64.b64decode(sent["images"][0]) == png_bytes()
    audio = ChatRequest(
        model="llava", messages=[Message(role="user", content=["Hi", Audio(wav_bytes())])]
    )
    with respx.mock(assert_all_mocked=True) as mock:
        with pytest.raises(UnsupportedFeatureError, match="input_audio parts are not supported"):
            backend.chat(audio) if mode == "sync" else await backend.achat(audio)
        assert not mock.calls


def test_tgi_text_template_refuses_images_instead_of_dropping_them() -> None:
    backend = RestBackend("m", base_url="http://gpu:8000", dialect="tgi", template="chatml")
    request = ChatRequest(
        model="m", messages=[Message(role="user", content=["What?", Image(png_bytes())])]
    )
    with respx.mock(assert_all_mocked=True) as mock:
        with pytest.raises(UnsupportedFeatureError, match="text template cannot carry images"):
            backend.chat(request)
        assert not mock.calls
