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


class TextPart(BaseModel):
    """A text piece of a multi-part message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"] = "text"
    text: str


class ImageURL(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    """An image (URL or ``data:`` URI) in a multi-part user message."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


class InputAudio(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str  # base64
    format: str  # "wav", "mp3", ...


class AudioPart(BaseModel):
    """Audio (base64) in a multi-part user message; OpenAI's ``input_audio`` part."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["input_audio"] = "input_audio"
    input_audio: InputAudio


class FileData(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_data: str | None = None  # a data: URL
    file_id: str | None = None  # a file uploaded to the provider
    filename: str | None = None


class FilePart(BaseModel):
    """A document (e.g. a PDF) in a multi-part user message; OpenAI's ``file`` part."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["file"] = "file"
    file: FileData


ContentPart = Annotated[
    Union[TextPart, ImagePart, AudioPart, FilePart], Field(discriminator="type")
]
