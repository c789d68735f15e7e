"""The I/O-free half of cassettes: redaction, the JSON shape of a recorded interaction, and
the key two requests are matched on.

A cassette file is JSON people can review in a pull request::

    {
      "llmkit_cassette": 1,
      "interactions": [
        {"request": {"method": "POST", "url": "...", "headers": {...}, "json": {...}},
         "response": {"status": 200, "headers": {...}, "json": {...}}},
        {"request": {...},
         "response": {"status": 200, "headers": {...}, "chunks": ["data: {...}\\n\\n", ...],
                      "chunk_times": [0.0012, ...]}},
        {"request": {...}, "error": {"type": "ConnectError", "message": "..."}},
        {"request": {"backend": "hf:tiny", "call": "chat", "json": {...}},
         "result": {"type": "ChatResponse", "value": {...}}}
      ],
      "backends": {"hf:tiny": {"capabilities": {...}}}
    }

A streamed body (SSE, NDJSON) is kept as the chunks the transport delivered, so a replay
feeds the decoders exactly what they saw; other bodies are stored as JSON when they are JSON,
else as text (or base64 when they are not UTF-8).
"""

from __future__ import annotations

import base64
import codecs
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

__all__ = [
    "DEFAULT_MATCH_ON",
    "REDACTED",
    "Redactor",
    "body_from_json",
    "body_to_json",
    "describe",
    "request_key",
]

REDACTED = "<redacted>"
FORMAT_VERSION = 1
DEFAULT_MATCH_ON = ("method", "scheme", "host", "port", "path", "query", "body")
MATCH_PARTS = frozenset(DEFAULT_MATCH_ON)

# Headers and query parameters that carry credentials in the APIs llmkit talks to (OpenAI,
# Azure, OpenAI-compatible providers, Google-style ?key=).
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "cookie",
        "set-cookie",
    }
)
SECRET_QUERY = frozenset(
    {"key", "api_key", "api-key", "apikey", "access_token", "token", "sig", "signature"}
)
# Environment variables whose values are secrets wherever they show up (a key echoed back in
# an error body, a token in a URL).
_SECRET_ENV = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_MIN_SECRET = 6  # shorter values would redact ordinary words
# Streamed bodies, kept chunk by chunk.
_STREAM_TYPES = ("text/event-stream", "ndjson", "jsonl", "json-seq")
# Said by the URL or the transport, or changed by recording itself: left out of the file.
_NOISY_REQUEST_HEADERS = frozenset({"host", "content-length", "connection", "accept-encoding"})
_BOUNDARY = re.compile(r"boundary=([^;\s]+)")


class Redactor:
    """Masks credentials: secret headers and query parameters by name, and every known secret
    value wherever it appears (values seen in secret headers are learnt as they pass)."""

    def __init__(
        self,
        *,
        headers: Iterable[str] = (),
        query: Iterable[str] = (),
        values: Iterable[str | None] = (),
        environment: bool = True,
    ) -> None:
        self.headers = SECRET_HEADERS | {h.lower() for h in headers}
        self.query = SECRET_QUERY | {q.lower() for q in query}
        self._values: set[str] = set()
        for value in values:
            self.learn(value)
        if environment:
            for name, value in os.environ.items():
                if _SECRET_ENV.search(name):
                    self.learn(value)
        self._ordered: list[str] | None = None

    def learn(self, value: str | None) -> None:
        """Treat ``value`` (and, for ``Bearer xyz``, ``xyz``) as a secret from now on."""
        if not value or len(value) < _MIN_SECRET or value == REDACTED:
            return
        self._values.add(value)
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token") and len(rest) >= _MIN_SECRET:
            self._values.add(rest)
        self._ordered = None

    @property
    def values(self) -> list[str]:
        """The secret values, longest first (so a key is masked before a part of it)."""
        if self._ordered is None:
            self._ordered = sorted(self._values, key=len, reverse=True)
        return self._ordered

    def text(self, text: str) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def value(self, obj: Any) -> Any:
        """``obj`` (JSON-like) with every string redacted, keys included."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj

    def learn_headers(self, headers: Iterable[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() in self.headers:
                self.learn(value)

    def header_dict(self, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
        """Headers for the file: secret ones kept by name (so a reader sees one was sent)
        with the value masked; repeated headers joined as HTTP allows."""
        out: dict[str, str] = {}
        for name, value in headers:
            name = name.lower()
            shown = REDACTED if name in self.headers else self.text(value)
            out[name] = f"{out[name]}, {shown}" if name in out else shown
        return out

    def url(self, url: httpx.URL) -> str:
        """``url`` with secret query parameters masked (their values learnt) and the query
        sorted, so two spellings of one request compare equal."""
        if url.query:
            items = []
            for name, value in url.params.multi_items():
                if name.lower() in self.query:
                    self.learn(value)
                    value = REDACTED
                items.append((name, value))
            url = url.copy_with(params=sorted(items))
        return self.text(str(url))


def _content_type(headers: Mapping[str, str] | httpx.Headers) -> str:
    return str(headers.get("content-type", "")).lower()


def is_stream(content_type: str) -> bool:
    return any(t in content_type for t in _STREAM_TYPES)


def body_to_json(
    chunks: Sequence[bytes], content_type: str, redactor: Redactor, *, keep_chunks: bool
) -> dict[str, Any]:
    """A body as the file stores it: ``chunks`` (streams), ``json``, ``text`` or ``base64``."""
    if keep_chunks:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            # Incremental: a character split across two network reads stays whole.
            texts = [decoder.decode(c) for c in chunks]
            texts[-1:] = [t + decoder.decode(b"", final=True) for t in texts[-1:]]
        except UnicodeDecodeError:
            return {"chunks_base64": [base64.b64encode(c).decode() for c in chunks]}
        return {"chunks": [redactor.text(t) for t in texts]}
    data = b"".join(chunks)
    if not data:
        return {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}
    if "json" in content_type:
        try:
            return {"json": redactor.value(json.loads(text))}
        except ValueError:
            pass
    return {"text": redactor.text(text)}


def body_from_json(stored: Mapping[str, Any]) -> list[bytes]:
    """The chunks to replay for a body stored by :func:`body_to_json`."""
    if "chunks" in stored:
        return [str(c).encode() for c in stored["chunks"]]
    if "chunks_base64" in stored:
        return [base64.b64decode(c) for c in stored["chunks_base64"]]
    if "json" in stored:
        return [json.dumps(stored["json"], ensure_ascii=False).encode()]
    if "text" in stored:
        return [str(stored["text"]).encode()]
    if "base64" in stored:
        return [base64.b64decode(stored["base64"])]
    return []


def request_to_json(request: httpx.Request, redactor: Redactor) -> dict[str, Any]:
    """A sent request as the file stores it (secrets masked)."""
    redactor.learn_headers(request.headers.multi_items())
    url = redactor.url(request.url)  # learns key query parameters before the body is masked
    headers = redactor.header_dict(request.headers.multi_items())
    out: dict[str, Any] = {
        "method": request.method,
        "url": url,
        "headers": {k: v for k, v in headers.items() if k not in _NOISY_REQUEST_HEADERS},
    }
    ctype = _content_type(request.headers)
    body = body_to_json([request.content], ctype, redactor, keep_chunks=False)
    if "text" in body:
        match = _BOUNDARY.search(ctype)  # multipart boundaries are random per request
        if match:
            body["text"] = body["text"].replace(match.group(1), "BOUNDARY")
    out.update(body)
    return out


def _drop(obj: Any, path: Sequence[str]) -> None:
    if not isinstance(obj, dict) or not path:
        return
    head, rest = path[0], path[1:]
    if not rest:
        obj.pop(head, None)
    elif head == "*" and isinstance(obj, dict):
        for value in obj.values():
            _drop(value, rest)
    else:
        child = obj.get(head)
        if isinstance(child, list):
            for item in child:
                _drop(item, rest)
        else:
            _drop(child, rest)


def canonical_body(request: Mapping[str, Any], ignore_fields: Sequence[str]) -> str:
    """The body compared when matching: JSON with sorted keys and ``ignore_fields`` (dotted
    paths; a list on the way applies the rest to each item) removed; other bodies as is."""
    if "json" in request:
        body = json.loads(json.dumps(request["json"]))  # a copy to prune
        for field in ignore_fields:
            _drop(body, field.split("."))
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for kind in ("text", "base64"):
        if kind in request:
            return f"{kind}:{request[kind]}"
    return ""


def request_key(
    request: Mapping[str, Any], match_on: Sequence[str], ignore_fields: Sequence[str]
) -> tuple[Any, ...]:
    """What two requests must share to match (``match_on`` picks the parts of an HTTP one)."""
    if "backend" in request:  # a call of an in-process backend
        return ("call", request["backend"], request["call"], canonical_body(request, ignore_fields))
    url = httpx.URL(str(request["url"]))
    parts: list[Any] = []
    for part in match_on:
        if part == "method":
            parts.append(str(request["method"]).upper())
        elif part == "scheme":
            parts.append(url.scheme)
        elif part == "host":
            parts.append(url.host)
        elif part == "port":
            parts.append(url.port or {"http": 80, "https": 443}.get(url.scheme))
        elif part == "path":
            parts.append(url.path)
        elif part == "query":
            parts.append(tuple(sorted(url.params.multi_items())))
        elif part == "body":
            parts.append(canonical_body(request, ignore_fields))
    return tuple(parts)


def describe(request: Mapping[str, Any], limit: int = 600) -> str:
    """One request, for an error message."""
    if "backend" in request:
        head = f"{request['call']}() on {request['backend']}"
    else:
        head = f"{request['method']} {request['url']}"
    body = canonical_body(request, ())
    if len(body) > limit:
        body = body[:limit] + f"... ({len(body) - limit} more characters)"
    return f"{head}\n    body: {body}" if body else head
