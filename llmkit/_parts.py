"""Content parts of a message, in the OpenAI shapes: text, images, audio and files.

Re-exported by :mod:`llmkit.types`; :mod:`llmkit.media` builds the image, audio and file parts
from paths, bytes and URLs.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AudioPart",
    "ContentPart",
    "FileData",
    "FilePart",
    "ImagePart",
    "ImageURL",
    "InputAudio",
    "TextPart",
]


class _Closed(BaseModel):
    """A part, or what a part carries, refuses keys it does not know: a misspelt key is a
    validation error, not a field silently dropped before it reaches the provider."""

    model_config = ConfigDict(extra="forbid")


class TextPart(_Closed):
    """A text piece of a multi-part message."""

    type: Literal["text"] = "text"
    text: str


class ImageURL(_Closed):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Closed):
    """An image (URL or ``data:`` URI) in a multi-part user message."""

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(_Closed):
    data: str  # base64
    format: str  # "wav", "mp3", ...


class AudioPart(_Closed):
    """Audio (base64) in a multi-part user message; OpenAI's ``input_audio`` part."""

    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class FileData(_Closed):
    file_data: str | None = None  # a data: URL
    file_id: str | None = None  # a file uploaded to the provider
    filename: str | None = None


class FilePart(_Closed):
    """A document (e.g. a PDF) in a multi-part user message; OpenAI's ``file`` part."""

    type: Literal["file"] = "file"
    file: FileData


ContentPart = Annotated[
    Union[TextPart, ImagePart, AudioPart, FilePart], Field(discriminator="type")
]
