"""The httpx half of cassettes: transports that record what the real transport answered, or
answer from the cassette without touching the network.

They wrap the transports of llmkit's own HTTP clients (see :mod:`llmkit._http.tap`), below
the ``openai`` SDK and the REST backend, so everything above them -- the SDK's parsing,
llmkit's SSE/NDJSON decoders, error mapping, retries -- runs for real on replay too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from .._http.tap import AsyncTapTransport, TapTransport
from ._format import Redactor, body_from_json, body_to_json, is_stream, request_to_json

if TYPE_CHECKING:
    from ._cassette import Cassette

__all__ = ["AsyncCassetteTransport", "CassetteTransport", "HttpRecording"]

# Hop-by-hop, recomputed on replay (a JSON body is re-serialised, so its length changes), or
# different on every recording (a diff of a re-recorded cassette shows what really changed).
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "connection", "keep-alive", "date"})


def _error_json(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def _error_from_json(stored: dict[str, Any], request: httpx.Request) -> httpx.TransportError:
    cls = getattr(httpx, str(stored.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, httpx.TransportError)):
        cls = httpx.ConnectError
    return cls(str(stored.get("message", "")), request=request)


class HttpRecording:
    """One HTTP interaction being recorded; turned into JSON when the cassette is saved."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.elapsed = 0.0
        self.chunks: list[bytes] = []
        self.times: list[float] = []
        self.error: dict[str, str] | None = None
        self._start = 0.0

    def respond(self, response: httpx.Response, elapsed: float) -> None:
        self.status = response.status_code
        self.headers = response.headers.multi_items()
        self.elapsed = elapsed
        self._start = time.monotonic()

    def chunk(self, data: bytes) -> None:
        self.chunks.append(data)
        self.times.append(time.monotonic() - self._start)

    @contextmanager
    def failures(self) -> Iterator[None]:
        """Record how the real transport failed (sending, or reading the body), and let the
        error propagate."""
        try:
            yield
        except httpx.TransportError as exc:
            self.error = _error_json(exc)
            raise
        except asyncio.CancelledError:
            # The async client enforces its first-token, idle and total budgets by cancelling
            # the read; replayed, that is the read timeout a sync client meets at that point.
            self.error = {
                "type": "ReadTimeout",
                "message": "the caller's timeout cancelled the read",
            }
            raise

    def to_json(self, redactor: Redactor) -> dict[str, Any]:
        out: dict[str, Any] = {"request": self.request}
        if self.status is None:  # the request itself failed: no status line
            out["error"] = redactor.value(self.error or {"type": "ConnectError", "message": ""})
            return out
        response: dict[str, Any] = {
            "status": self.status,
            "headers": {
                k: v
                for k, v in redactor.header_dict(self.headers).items()
                if k not in _DROPPED_RESPONSE_HEADERS
            },
            "elapsed": round(self.elapsed, 4),
        }
        ctype = str(response["headers"].get("content-type", "")).lower()
        streamed = is_stream(ctype)
        response.update(body_to_json(self.chunks, ctype, redactor, keep_chunks=streamed))
        if streamed:
            response["chunk_times"] = [round(t, 4) for t in self.times]
        if self.error is not None:  # the body broke off: replayed after its chunks
            response["error"] = redactor.value(self.error)
        out["response"] = response
        return out


class _RecordingStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """The real body, passed through chunk by chunk and copied into the recording."""

    def __init__(self, inner: Any, recording: HttpRecording) -> None:
        self._inner = inner
        self._recording = recording

    def __iter__(self) -> Iterator[bytes]:
        with self._recording.failures():
            for chunk in self._inner:
                self._recording.chunk(chunk)
                yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with self._recording.failures():
            async for chunk in self._inner:
                self._recording.chunk(chunk)
                yield chunk

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ReplayStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A recorded body, chunk by chunk (at the recorded pace when ``realtime``), ending with
    the recorded transport error if the original broke off."""

    def __init__(
        self,
        chunks: list[bytes],
        times: list[float] | None,
        error: dict[str, Any] | None,
        request: httpx.Request,
    ) -> None:
        self._chunks = chunks
        self._times = times
        self._error = error
        self._request = request

    def _waits(self) -> list[float]:
        times = self._times
        if not times or len(times) != len(self._chunks):
            return [0.0] * len(self._chunks)
        return [max(0.0, t - (times[i - 1] if i else 0.0)) for i, t in enumerate(times)]

    def __iter__(self) -> Iterator[bytes]:
        for wait, chunk in zip(self._waits(), self._chunks, strict=True):
            if wait:
                time.sleep(wait)
            yield chunk
        if self._error is not None:
            raise _error_from_json(self._error, self._request)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for wait, chunk in zip(self._waits(), self._chunks, strict=True):
            if wait:
                await asyncio.sleep(wait)
            yield chunk
        if self._error is not None:
            raise _error_from_json(self._error, self._request)


def _replay(
    stored: dict[str, Any], request: httpx.Request, realtime: bool
) -> tuple[httpx.Response | None, httpx.TransportError | None, float]:
    """The response (or the transport error) a recorded interaction replays as, and how long
    to wait for its headers."""
    response = stored.get("response")
    if not isinstance(response, dict):
        return None, _error_from_json(stored.get("error") or {}, request), 0.0
    times = response.get("chunk_times") if realtime else None
    stream = _ReplayStream(body_from_json(response), times, response.get("error"), request)
    replayed = httpx.Response(
        int(response["status"]),
        headers=list(dict(response.get("headers") or {}).items()),
        stream=stream,
        request=request,
        extensions={"http_version": b"HTTP/1.1"},
    )
    return replayed, None, float(response.get("elapsed") or 0.0) if realtime else 0.0


class _Exchange:
    """One request through a cassette, without I/O: replayed from what is stored, or recorded
    from the real transport's answer. The sync and async transports only read the body, wait
    and send."""

    __slots__ = ("error", "recording", "replayed", "start", "wait")

    def __init__(self, cassette: Cassette, request: httpx.Request) -> None:
        view = request_to_json(request, cassette.redactor)
        stored = cassette.find(view)  # raises CassetteMiss when it may not record
        self.recording: HttpRecording | None = None
        self.replayed: httpx.Response | None = None
        self.error: httpx.TransportError | None = None
        self.wait = self.start = 0.0
        if stored is not None:
            self.replayed, self.error, self.wait = _replay(stored, request, cassette.realtime)
            return
        self.recording = HttpRecording(view)
        cassette.add(self.recording)
        # An uncompressed body records as readable text; the replay is the same either way.
        request.headers["accept-encoding"] = "identity"
        self.start = time.monotonic()

    def replay(self) -> httpx.Response:
        if self.error is not None:
            raise self.error
        assert self.replayed is not None
        return self.replayed

    def record(self, response: httpx.Response) -> httpx.Response:
        assert self.recording is not None
        self.recording.respond(response, time.monotonic() - self.start)
        response.stream = _RecordingStream(response.stream, self.recording)
        return response


class CassetteTransport(TapTransport):
    """Sync: replay from the cassette, or send through the real transport and record."""

    def __init__(self, inner: httpx.BaseTransport, cassette: Cassette) -> None:
        super().__init__(inner)
        self.cassette = cassette

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        exchange = _Exchange(self.cassette, request)
        if exchange.recording is None:
            if exchange.wait:
                time.sleep(exchange.wait)
            return exchange.replay()
        with exchange.recording.failures():
            return exchange.record(self.inner.handle_request(request))


class AsyncCassetteTransport(AsyncTapTransport):
    """Async twin of :class:`CassetteTransport` (the decisions live in :class:`_Exchange`)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, cassette: Cassette) -> None:
        super().__init__(inner)
        self.cassette = cassette

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        exchange = _Exchange(self.cassette, request)
        if exchange.recording is None:
            if exchange.wait:
                await asyncio.sleep(exchange.wait)
            return exchange.replay()
        with exchange.recording.failures():
            return exchange.record(await self.inner.handle_async_request(request))
