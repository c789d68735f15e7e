"""Embedding requests and replies on the wire, without I/O: the OpenAI shape
(``/v1/embeddings``, used by the ``openai`` backend and the ``rest`` OpenAI dialect), TEI's
``/embed`` and Ollama's ``/api/embed``.

The OpenAI shape is asked for as base64 (``encoding_format="base64"``), as the official SDK
does: little-endian float32, about a quarter of the JSON text of the same floats and much
faster to decode. It is decoded with :mod:`array`, so numpy is never needed.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Any

from ..errors import ProtocolError
from ..types import EmbeddingRequest, EmbeddingResponse, Usage, estimate_tokens

__all__ = [
    "decode_base64_floats",
    "ollama_embed_body",
    "openai_embedding_body",
    "parse_ollama_embed",
    "parse_openai_embeddings",
    "parse_tei_embed",
    "tei_embed_body",
]


def decode_base64_floats(text: str) -> list[float]:
    """Little-endian float32 values from base64 text (the OpenAI wire form)."""
    raw = base64.b64decode(text, validate=True)
    values = array("f")
    if len(raw) % values.itemsize:
        raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
    values.frombytes(raw)
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        values.byteswap()
    return values.tolist()


def _problem(what: str, backend: str, model: str) -> ProtocolError:
    return ProtocolError(f"unexpected embedding reply: {what}", backend=backend, model=model)


def _vectors(items: Any, count: int, backend: str, model: str) -> list[list[float]]:
    """The vectors as they came, after a structural check: one list of numbers per input,
    all of one length. Elements are not checked one by one (a JSON number is an int or a
    float already), which keeps a reply of thousands of vectors cheap to accept."""
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else type(items).__name__
        raise _problem(f"expected {count} vectors, got {got}", backend, model)
    width = len(items[0]) if items and isinstance(items[0], list) else -1
    for item in items:
        if not isinstance(item, list) or len(item) != width or not item:
            raise _problem("vectors are not non-empty lists of one length", backend, model)
        if not isinstance(item[0], (int, float)):
            raise _problem(f"a vector holds {type(item[0]).__name__}, not numbers", backend, model)
    return items


def _response(
    items: Any,
    request: EmbeddingRequest,
    *,
    backend: str,
    model: str,
    reply_model: Any = None,
    prompt_tokens: Any = None,
) -> EmbeddingResponse:
    """The response of every wire format: ``items`` checked to be one vector per input; the
    server's token count when it sent one, else an estimate."""
    vectors = _vectors(items, len(request.inputs), backend, model)
    if isinstance(prompt_tokens, int):
        usage = Usage(prompt_tokens=prompt_tokens)
    else:
        usage = Usage(prompt_tokens=sum(estimate_tokens(t) for t in request.inputs), estimated=True)
    # model_construct: validating millions of floats one by one would cost more than the
    # request; _vectors has checked the structure.
    return EmbeddingResponse.model_construct(
        vectors=vectors, model=str(reply_model or model), backend=backend, usage=usage
    )


def _body(request: EmbeddingRequest, fields: dict[str, Any]) -> dict[str, Any]:
    """The body of every wire format: its own ``fields``, then ``dimensions`` when asked for,
    then the caller's pass-through ``extra``."""
    if request.dimensions is not None:
        fields["dimensions"] = request.dimensions
    fields.update(request.extra)
    return fields


def openai_embedding_body(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    return _body(request, {"model": model, "input": request.inputs, "encoding_format": "base64"})


def parse_openai_embeddings(
    data: Any, request: EmbeddingRequest, *, backend: str, model: str
) -> EmbeddingResponse:
    """An OpenAI ``list`` of ``embedding`` objects, put back in input order by ``index``."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise _problem("no 'data' list", backend, model)
    try:
        ordered = sorted(data["data"], key=lambda item: int(item.get("index", 0)))
        vectors: list[Any] = []
        for item in ordered:
            embedding = item["embedding"]
            vectors.append(
                decode_base64_floats(embedding) if isinstance(embedding, str) else embedding
            )
    except (AttributeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise _problem(f"{type(exc).__name__}: {exc}", backend, model) from None
    usage = data.get("usage")
    return _response(
        vectors,
        request,
        backend=backend,
        model=model,
        reply_model=data.get("model"),
        prompt_tokens=usage.get("prompt_tokens") if isinstance(usage, dict) else None,
    )


def tei_embed_body(request: EmbeddingRequest) -> dict[str, Any]:
    return _body(request, {"inputs": request.inputs})


def parse_tei_embed(
    data: Any, request: EmbeddingRequest, *, backend: str, model: str
) -> EmbeddingResponse:
    """TEI answers a bare list of vectors and no token count."""
    return _response(data, request, backend=backend, model=model)


def ollama_embed_body(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    return _body(request, {"model": model, "input": request.inputs})


def parse_ollama_embed(
    data: Any, request: EmbeddingRequest, *, backend: str, model: str
) -> EmbeddingResponse:
    if not isinstance(data, dict):
        raise _problem("not a JSON object", backend, model)
    return _response(
        data.get("embeddings"),
        request,
        backend=backend,
        model=model,
        reply_model=data.get("model"),
        prompt_tokens=data.get("prompt_eval_count"),
    )
