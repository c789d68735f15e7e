"""``llmkit serve`` passes images and files through to its backend (issue 19): the official
openai SDK sends ``image_url`` parts to /v1/chat/completions and ``input_image`` /
``input_file`` items to /v1/responses over a real socket, and the backend (a fake that
takes images and files and records its requests) receives the same bytes and media type as
llmkit parts; a backend without vision gets nothing and the client a 400."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from llmkit import AsyncClient, RetryPolicy
from llmkit.backends.base import Capabilities
from llmkit.server import create_app, run_in_thread
from llmkit.testing import FakeBackend
from llmkit.types import FilePart, ImagePart, TextPart

from .conftest import API_KEY

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG_URL = f"data:image/png;base64,{base64.b64encode(PNG).decode()}"
PDF_URL = f"data:application/pdf;base64,{base64.b64encode(PDF).decode()}"

VISION = Capabilities(streaming=True, completion=True, vision=True, files=True)


def served(fake: FakeBackend) -> Iterator[Any]:
    client = AsyncClient(backend=fake, retry=RetryPolicy(max_attempts=1))
    with run_in_thread(create_app(client, api_key=API_KEY), graceful_timeout=1) as base_url:
        yield openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture
def vision_fake() -> FakeBackend:
    return FakeBackend(["A red dot."] * 4, capabilities=VISION)


@pytest.fixture
def sdk(vision_fake: FakeBackend) -> Iterator[Any]:
    yield from served(vision_fake)


def decoded(part: ImagePart | FilePart) -> tuple[str, bytes]:
    """(media type, bytes) of a part's data: URL."""
    url = part.image_url.url if isinstance(part, ImagePart) else part.file.file_data
    assert url is not None and url.startswith("data:")
    header, _, payload = url.partition(",")
    return header[len("data:") :].removesuffix(";base64"), base64.b64decode(payload)


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_pass_an_image_part_to_the_backend(
    sdk: Any, vision_fake: FakeBackend, stream: bool
) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
    ]
    messages = [{"role": "user", "content": content}]
    if stream:
        chunks = sdk.chat.completions.create(model="fake-model", messages=messages, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = sdk.chat.completions.create(model="fake-model", messages=messages)
        text = reply.choices[0].message.content
    assert text == "A red dot."
    (request,) = vision_fake.requests
    parts = request.messages[-1].content
    assert isinstance(parts, list) and [type(p) for p in parts] == [TextPart, ImagePart]
    assert decoded(parts[1]) == ("image/png", PNG)
    assert parts[1].image_url.detail == "low"


@pytest.mark.parametrize("stream", [False, True])
def test_responses_pass_input_image_and_input_file_to_the_backend(
    sdk: Any, vision_fake: FakeBackend, stream: bool
) -> None:
    content = [
        {"type": "input_text", "text": "Compare"},
        {"type": "input_image", "image_url": PNG_URL, "detail": "high"},
        {"type": "input_file", "file_data": PDF_URL, "filename": "report.pdf"},
    ]
    items = [{"role": "user", "content": content}]
    if stream:
        with sdk.responses.stream(model="fake-model", input=items) as events:
            for _ in events:
                pass
            text = events.get_final_response().output_text
    else:
        text = sdk.responses.create(model="fake-model", input=items).output_text
    assert text == "A red dot."
    (request,) = vision_fake.requests
    parts = request.messages[-1].content
    assert isinstance(parts, list)
    assert [type(p) for p in parts] == [TextPart, ImagePart, FilePart]
    assert decoded(parts[1]) == ("image/png", PNG) and parts[1].image_url.detail == "high"
    assert decoded(parts[2]) == ("application/pdf", PDF)
    assert parts[2].file.filename == "report.pdf"


def test_a_backend_without_vision_refuses_the_image_with_a_400() -> None:
    fake = FakeBackend(["never"])  # capabilities.vision is off
    for sdk in served(fake):
        content = [{"type": "input_image", "image_url": PNG_URL}]
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.responses.create(model="fake-model", input=[{"role": "user", "content": content}])
        assert "images" in str(caught.value)
    assert fake.requests == []
