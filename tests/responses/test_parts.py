"""Images and files on the Responses API (issue 19): ``input_image`` and ``input_file`` parts
in the body the real openai SDK and the rest backend's httpx send, sync and async, streamed
and not; audio, which the API's message content does not take, refused before sending."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
import respx

import llmkit.errors as E
from llmkit import AsyncClient, Audio, Client, File, Image, Message
from llmkit.types import ChatRequest

from .conftest import KEY, URLS, chat, make_backend, stream
from .kit import message_item, response_obj, sse, sse_response, stream_events

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 28


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


MESSAGE = Message(
    role="user",
    content=[
        "Compare these",
        Image(PNG, detail="low"),
        Image("https://example.test/cat.jpg"),
        File(PDF, filename="report.pdf"),
    ],
)
EXPECTED = [
    {"type": "input_text", "text": "Compare these"},
    {"type": "input_image", "image_url": data_url("image/png", PNG), "detail": "low"},
    {"type": "input_image", "image_url": "https://example.test/cat.jpg", "detail": "auto"},
    {"type": "input_file", "file_data": data_url("application/pdf", PDF), "filename": "report.pdf"},
]


def sent(route: respx.Route) -> dict[str, Any]:
    return json.loads(route.calls[-1].request.content)  # type: ignore[no-any-return]


async def test_images_and_files_go_as_input_image_and_input_file(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    route = mock.post(url).mock(
        return_value=httpx.Response(200, json=response_obj([message_item("Two cats.")]))
    )
    r = await chat(backend, ChatRequest(model="gpt-5", messages=[MESSAGE]), mode)
    assert r.text == "Two cats."
    body = sent(route)
    assert body["input"] == [{"type": "message", "role": "user", "content": EXPECTED}]


async def test_streamed_calls_send_the_same_parts(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    route = mock.post(url).mock(
        return_value=sse_response(sse(stream_events([message_item("Two cats.")])))
    )
    events = await stream(backend, ChatRequest(model="gpt-5", messages=[MESSAGE]), mode)
    assert "".join(e.text for e in events) == "Two cats."
    body = sent(route)
    assert body["stream"] is True
    assert body["input"][0]["content"] == EXPECTED


def test_openai_shaped_dict_parts_are_translated_too(mock: respx.MockRouter) -> None:
    route = mock.post(URLS["openai"]).mock(
        return_value=httpx.Response(200, json=response_obj([message_item("ok")]))
    )
    content = [
        {"type": "text", "text": "Read"},
        {"type": "image_url", "image_url": {"url": "https://example.test/a.png", "detail": "high"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ]
    with Client("openai:gpt-5", api_key=KEY, api="responses") as client:
        client.chat([{"role": "user", "content": content}])
    assert sent(route)["input"][0]["content"] == [
        {"type": "input_text", "text": "Read"},
        {"type": "input_image", "image_url": "https://example.test/a.png", "detail": "high"},
        {"type": "input_file", "file_id": "file-123"},
    ]


@pytest.fixture(params=["openai", "rest"])
def client_spec(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], str]:
    if request.param == "openai":
        return "openai:gpt-5", {"api_key": KEY, "api": "responses"}, URLS["openai"]
    options = {"base_url": "http://llm.test/v1", "api": "responses", "verify": False}
    return "rest:gpt-5", options, URLS["rest"]


async def test_audio_is_refused_before_anything_is_sent(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter, mode: str
) -> None:
    spec, options, url = client_spec
    route = mock.post(url).mock(return_value=httpx.Response(200, json=response_obj([])))
    message = Message(role="user", content=["What is said?", Audio(WAV)])
    if mode == "sync":
        with Client(spec, **options) as client:
            assert not client.backend.capabilities.audio
            with pytest.raises(E.UnsupportedFeatureError, match="audio"):
                client.chat(message)
    else:
        async with AsyncClient(spec, **options) as aclient:
            with pytest.raises(E.UnsupportedFeatureError, match="audio"):
                await aclient.chat(message)
    assert route.call_count == 0


async def test_the_wire_refuses_audio_when_a_backend_is_called_directly(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    route = mock.post(url).mock(return_value=httpx.Response(200, json=response_obj([])))
    message = Message(role="user", content=["What is said?", Audio(WAV)])
    with pytest.raises(E.UnsupportedFeatureError, match="Responses API takes no audio"):
        await chat(backend, ChatRequest(model="gpt-5", messages=[message]), mode)
    assert route.call_count == 0


@pytest.mark.parametrize("kind", ["openai", "rest"])
def test_chat_completions_keep_audio(kind: str) -> None:
    # Only the Responses API lacks audio: the same backends on chat completions take it.
    chat_backend = make_backend(kind)
    assert not chat_backend.capabilities.audio
    assert chat_backend.capabilities.vision and chat_backend.capabilities.files
    if kind == "openai":
        from llmkit.backends.openai import OpenAIBackend

        assert OpenAIBackend("gpt-5", api_key=KEY).capabilities.audio
    else:
        from llmkit.backends.rest import RestBackend

        assert RestBackend("m", base_url="http://llm.test/v1").capabilities.audio
