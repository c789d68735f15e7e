"""Images, audio and files in messages: ``Image``, ``Audio`` and ``File`` content parts.

>>> Message(role="user", content=["What is in this picture?", Image("cat.png")])  # doctest: +SKIP

Each part is built from a path, raw bytes, or (images and files) an ``http(s)`` URL. The media
type comes from the content's first bytes (its magic number), not from the file name, so a
PNG saved as ``photo.jpg`` is sent as PNG and a text file named ``cat.png`` is refused. Bad
input — not an image, a missing file, a format no provider takes, a payload over the size
limit — is an :class:`~llmkit.errors.InvalidInputError` that says what was wrong, raised
when the part is built, before anything is sent.

The parts are OpenAI-shaped (``image_url``, ``input_audio``, ``file``), so OpenAI-shaped dicts
are accepted as input too; each backend turns them into its own form.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Literal

from ._parts import AudioPart, FileData, FilePart, ImagePart, ImageURL, InputAudio
from .errors import InvalidInputError

__all__ = ["Audio", "File", "Image", "sniff"]

# What providers take (OpenAI: 20 MB images, 25 MB audio, 32 MB per PDF); larger payloads
# fail at the provider after a long upload, so they fail here instead.
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_AUDIO_BYTES = 25 * 1024 * 1024
MAX_FILE_BYTES = 32 * 1024 * 1024

_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # RIFF....WEBP
    (b"WAVE", 8, "audio/wav"),  # RIFF....WAVE
    (b"ID3", 0, "audio/mpeg"),
    (b"\xff\xfb", 0, "audio/mpeg"),
    (b"\xff\xf3", 0, "audio/mpeg"),
    (b"\xff\xf2", 0, "audio/mpeg"),
    (b"fLaC", 0, "audio/flac"),
    (b"OggS", 0, "audio/ogg"),
    (b"%PDF-", 0, "application/pdf"),
)
_AUDIO_FORMATS = {"audio/wav": "wav", "audio/mpeg": "mp3", "audio/flac": "flac", "audio/ogg": "ogg"}


def sniff(data: bytes) -> str | None:
    """The media type of ``data`` from its first bytes, or ``None`` when unknown."""
    for signature, offset, media_type in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            if offset == 8 and data[:4] != b"RIFF":
                continue
            return media_type
    return None


def _read(source: str | bytes | os.PathLike[str], what: str, limit: int) -> tuple[bytes, str]:
    """The bytes of ``source`` and a name for messages; errors say what to fix."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = f"the {what} bytes"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        name = str(path)
        if not path.is_file():
            raise InvalidInputError(
                f"{what} {name!r} does not exist (or is not a file); give an existing path, "
                "the bytes, or an http(s) URL"
            )
        size = path.stat().st_size
        if size > limit:
            raise InvalidInputError(
                f"{what} {name!r} is {size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB"
            )
        data = path.read_bytes()
    else:
        raise InvalidInputError(
            f"{what} must be a path, bytes or a URL, got {type(source).__name__}"
        )
    if not data:
        raise InvalidInputError(f"{name} is empty")
    if len(data) > limit:
        raise InvalidInputError(
            f"{name} is {len(data) / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB"
        )
    return data, name


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(("http://", "https://", "data:"))


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


class Image(ImagePart):
    """An image part: ``Image("cat.png")``, ``Image(png_bytes)`` or ``Image("https://...")``.

    Local images travel inline as a ``data:`` URL; a URL is passed on for the provider to
    fetch. PNG, JPEG, GIF and WebP are accepted (what the vision APIs take). ``detail`` is
    OpenAI's ``"low" | "high" | "auto"``.
    """

    def __init__(
        self,
        source: str | bytes | os.PathLike[str],
        detail: Literal["auto", "low", "high"] | None = None,
    ) -> None:
        if _is_url(source):
            url = str(source)
        else:
            data, name = _read(source, "image", MAX_IMAGE_BYTES)
            media_type = sniff(data)
            if media_type is None or not media_type.startswith("image/"):
                found = f" (it looks like {media_type})" if media_type else ""
                raise InvalidInputError(f"{name} is not a PNG, JPEG, GIF or WebP image{found}")
            url = _data_url(media_type, data)
        super().__init__(image_url=ImageURL(url=url, detail=detail))


class Audio(AudioPart):
    """An audio part: ``Audio("question.wav")`` or ``Audio(mp3_bytes)``.

    Sent inline (base64) as OpenAI's ``input_audio``; WAV, MP3, FLAC and Ogg are recognised
    from the bytes. ``format`` overrides what the bytes say (for raw formats without a
    header)."""

    def __init__(self, source: str | bytes | os.PathLike[str], format: str | None = None) -> None:
        if _is_url(source):
            raise InvalidInputError(
                "audio is sent inline: give a path or the bytes, not a URL (download it first)"
            )
        data, name = _read(source, "audio", MAX_AUDIO_BYTES)
        if format is None:
            media_type = sniff(data)
            format = _AUDIO_FORMATS.get(media_type or "")
            if format is None:
                found = f" (it looks like {media_type})" if media_type else ""
                raise InvalidInputError(
                    f"{name} is not WAV, MP3, FLAC or Ogg audio{found}; pass format= if it is "
                    "a raw format the model takes"
                )
        encoded = base64.b64encode(data).decode("ascii")
        super().__init__(input_audio=InputAudio(data=encoded, format=format))


class File(FilePart):
    """A document part: ``File("report.pdf")`` or ``File(pdf_bytes, filename="report.pdf")``.

    Sent inline as OpenAI's ``file`` part (``file_data`` as a ``data:`` URL). PDF is what the
    chat APIs read; other types are refused here rather than by the provider."""

    def __init__(self, source: str | bytes | os.PathLike[str], filename: str | None = None) -> None:
        if _is_url(source):
            raise InvalidInputError(
                "files are sent inline: give a path or the bytes, not a URL (download it first)"
            )
        data, name = _read(source, "file", MAX_FILE_BYTES)
        media_type = sniff(data)
        if media_type != "application/pdf":
            found = f" (it looks like {media_type})" if media_type else ""
            raise InvalidInputError(f"{name} is not a PDF{found}; chat models read PDF files")
        if filename is None:
            filename = Path(name).name if not isinstance(source, (bytes, bytearray)) else "file.pdf"
        super().__init__(file=FileData(file_data=_data_url(media_type, data), filename=filename))
