"""Record and replay what the model answered, for offline, deterministic tests.

``with cassette("tests/cassettes/weather.json"):`` records every HTTP exchange of llmkit's
clients (``openai:``, ``azure:``, ``rest:`` in every dialect, sync and async, streams chunk by
chunk, error statuses and connection failures) and every call of an in-process backend
(``hf:``) into a JSON file the first time, and answers from that file afterwards, without a
network connection and without loading a model. See ``docs/testing.md``.

Modes (``record=``):

* ``"once"`` (default): replay when the file exists, else record it.
* ``"none"``: replay only; a missing file is an error.
* ``"all"``: record everything again, overwriting the file.
* ``"new_episodes"``: replay what matches, record what does not, and append it.

A request the cassette cannot answer, in a mode that may not record it, raises
:class:`CassetteMiss` (a :class:`~llmkit.errors.ConfigError`, so the client does not retry
it) naming the file and showing the request; nothing is sent.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, cast, get_args

from .. import registry
from .._http import tap
from ..errors import ConfigError
from ._backend import BackendRecording, stand_in_class
from ._format import (
    DEFAULT_MATCH_ON,
    FORMAT_VERSION,
    MATCH_PARTS,
    REDACTED,
    Redactor,
    describe,
    request_key,
)
from ._transport import AsyncCassetteTransport, CassetteTransport, HttpRecording

__all__ = ["Cassette", "CassetteError", "CassetteMiss", "RecordMode", "cassette"]

RecordMode = Literal["once", "none", "all", "new_episodes"]
RECORD_MODES: tuple[str, ...] = get_args(RecordMode)
Matcher = Callable[[dict[str, Any], dict[str, Any]], bool]
F = TypeVar("F", bound=Callable[..., Any])

_HINT = (
    "Record it again with record='all' (or 'new_episodes' to keep the rest), or delete the "
    "file; under pytest: --llmkit-record-mode=all"
)


class CassetteError(ConfigError):
    """A cassette cannot be used as asked: a missing file in replay-only mode, a file that is
    not a cassette, an unknown mode or match part."""


class CassetteMiss(CassetteError):
    """A request the cassette has no recording for, in a mode that may not record it.

    Attributes:
        path: the cassette file.
        request: the unmatched request as the cassette would store it (secrets masked).
    """

    def __init__(self, message: str, *, path: Path, request: dict[str, Any]) -> None:
        super().__init__(message)
        self.path = path
        self.request = request


class Cassette:
    """A cassette file and the recording or replaying it does while active: record the
    model's answers into ``path`` once, then replay them offline.

    Made as ``cassette(path, ...)`` (the same class); it is a context manager (sync and
    async), and a decorator for sync and async functions. While active it applies to every
    llmkit client in the process, including clients built before it started (for ``hf:`` and
    the other in-process ``backends``, the client must be built inside it).

    Args:
        path: the JSON file.
        record: ``"once"`` (default), ``"none"``, ``"all"`` or ``"new_episodes"`` (see the
            module docstring).
        match_on: the parts of an HTTP request that must be equal: ``method``, ``scheme``,
            ``host``, ``port``, ``path``, ``query``, ``body`` (default: all of them). Drop
            ``host`` and ``port`` when the server's address changes between runs.
        ignore_fields: JSON body fields left out of the comparison, as dotted paths
            (``"user"``, ``"metadata.trace_id"``, ``"messages.name"`` for every message).
        match: ``match(recorded, request) -> bool`` replaces the comparison; both are request
            dicts as stored in the file (``method``, ``url``, ``headers``, ``json``/``text``;
            or ``backend``, ``call``, ``json`` for an in-process backend).
        secrets: values never written (masked wherever they appear). Credentials in the
            ``Authorization``, ``api-key`` and ``x-api-key`` headers, ``key``-like query
            parameters and environment variables named ``*_API_KEY``, ``*_TOKEN``,
            ``*_SECRET``, ``*_PASSWORD`` are masked without being listed.
        filter_headers: more header names whose values are secrets.
        filter_query: more query parameter names whose values are secrets.
        realtime: replay at the recorded pace (the wait for the headers and between stream
            chunks) instead of at once.
        allow_repeats: let a recorded interaction answer again once every match was played
            (by default each answers once, so a retried request gets what the retry got).
        backends: in-process backends recorded at the call level (their calls send no HTTP).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        record: RecordMode = "once",
        match_on: Sequence[str] = DEFAULT_MATCH_ON,
        ignore_fields: Sequence[str] = (),
        match: Matcher | None = None,
        secrets: Iterable[str | None] = (),
        filter_headers: Iterable[str] = (),
        filter_query: Iterable[str] = (),
        realtime: bool = False,
        allow_repeats: bool = False,
        backends: Iterable[str] = ("hf",),
    ) -> None:
        if record not in RECORD_MODES:
            raise CassetteError(
                f"unknown record mode {record!r}; use one of {', '.join(RECORD_MODES)}"
            )
        unknown = sorted(set(match_on) - MATCH_PARTS)
        if unknown:
            raise CassetteError(
                f"unknown match_on part(s) {unknown}; choose from {', '.join(DEFAULT_MATCH_ON)}"
            )
        self.path = Path(path)
        self.record: RecordMode = record
        self.match_on = tuple(match_on)
        self.ignore_fields = tuple(ignore_fields)
        self.match = match
        self.realtime = realtime
        self.allow_repeats = allow_repeats
        self.backends = frozenset(backends)
        self._secrets = tuple(secrets)
        self._filter_headers = tuple(filter_headers)
        self._filter_query = tuple(filter_query)
        self._lock = threading.Lock()
        self._active = False
        self._reset()

    def _reset(self) -> None:
        self.redactor = Redactor()
        self._replaying = False
        self._recording = False
        self._stored: list[dict[str, Any]] = []
        self._keys: list[tuple[Any, ...]] = []
        self._used: list[bool] = []
        self._new: list[HttpRecording | BackendRecording] = []
        self._capabilities: dict[str, dict[str, Any]] = {}
        self._previous_tap: tap.Tap | None = None
        self._previous_hook: Any = None

    def __repr__(self) -> str:
        return f"Cassette({str(self.path)!r}, record={self.record!r})"

    # -- what happened

    @property
    def recording(self) -> bool:
        """Whether requests the file has no answer for go to the real backend (and are kept)."""
        return self._recording

    @property
    def play_count(self) -> int:
        """How many recorded interactions were replayed."""
        return sum(self._used)

    @property
    def all_played(self) -> bool:
        """Whether every interaction in the file was replayed (none left unused)."""
        return all(self._used)

    @property
    def new_interactions(self) -> list[dict[str, Any]]:
        """What was recorded in this activation, as it is (or will be) written."""
        with self._lock:
            return [r.to_json(self.redactor) for r in self._new]

    # -- activation

    def __enter__(self) -> Cassette:
        if self._active:
            raise CassetteError(f"cassette {self.path} is already active")
        self._reset()
        self.redactor = Redactor(
            headers=self._filter_headers, query=self._filter_query, values=self._secrets
        )
        self._load()
        self._active = True
        self._previous_tap = tap.set_tap(self._wrap)
        self._previous_hook, registry.backend_hook = registry.backend_hook, self._backend_hook
        return self

    def __exit__(self, *exc: object) -> None:
        tap.set_tap(self._previous_tap)
        registry.backend_hook = self._previous_hook
        self._active = False
        self._save()

    async def __aenter__(self) -> Cassette:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: the cassette is active for each call of ``fn``."""
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                with self:
                    return await fn(*args, **kwargs)

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self:
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    def _wrap(self, transport: Any, is_async: bool) -> tap.AnyTransport:
        if is_async:
            return AsyncCassetteTransport(transport, self)
        return CassetteTransport(transport, self)

    def _backend_hook(
        self, name: str, load: Callable[[], Callable[..., Any]]
    ) -> Callable[..., Any] | None:
        if name not in self.backends:
            return None
        cls = stand_in_class(name)

        def factory(model: str, **options: Any) -> Any:
            spec = f"{name}:{model}"

            def make() -> Any:
                return load()(model, **options)

            if self.capabilities(spec) is not None:
                return cls(self, model, make)  # the real one is built only if it must record
            if not self._recording:
                raise CassetteMiss(
                    f"cassette {self.path} has no recording of backend {spec!r}. {_HINT}",
                    path=self.path,
                    request={"backend": spec},
                )
            return cls(self, model, make, real=make())  # option errors surface as usual

        return factory

    # -- the file

    def _load(self) -> None:
        exists = self.path.exists()
        if self.record == "none" and not exists:
            raise CassetteError(
                f"cassette {self.path} does not exist and record='none' only replays; record "
                "it first with record='once' (pytest: --llmkit-record-mode=once)"
            )
        self._replaying = exists and self.record != "all"
        self._recording = self.record in ("all", "new_episodes") or not exists
        if not self._replaying:
            return
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CassetteError(f"cassette {self.path} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or data.get("llmkit_cassette") != FORMAT_VERSION:
            raise CassetteError(
                f"{self.path} is not an llmkit cassette (version {FORMAT_VERSION}). {_HINT}"
            )
        self._stored = list(data.get("interactions") or [])
        self._keys = [self._key(i["request"]) for i in self._stored]
        self._used = [False] * len(self._stored)
        self._capabilities = dict(data.get("backends") or {})

    def _save(self) -> None:
        if not self._recording or not self._new:
            return
        redactor = self.redactor
        fresh = [r.to_json(redactor) for r in self._new]
        kept = self._stored if self.record == "new_episodes" else []
        data: dict[str, Any] = {
            "llmkit_cassette": FORMAT_VERSION,
            "interactions": redactor.value([*kept, *fresh]),  # secrets learnt late count too
        }
        if self._capabilities:
            data["backends"] = self._capabilities
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        for value in redactor.values:  # last line of defence (a key split across chunks)
            text = text.replace(value, REDACTED).replace(json.dumps(value)[1:-1], REDACTED)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(self.path)

    # -- used by the transports and the backend stand-in

    def _key(self, request: dict[str, Any]) -> tuple[Any, ...]:
        return request_key(request, self.match_on, self.ignore_fields)

    def _matches(self, index: int, request: dict[str, Any], key: tuple[Any, ...]) -> bool:
        if self.match is not None:
            return self.match(self._stored[index]["request"], request)
        return self._keys[index] == key

    def find(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The recorded interaction answering ``request`` (each plays once, in order), or
        ``None`` when the request is to be recorded; raises :class:`CassetteMiss` otherwise."""
        with self._lock:
            if self._replaying:
                key = self._key(request)
                passes = (False, True) if self.allow_repeats else (False,)
                for used in passes:
                    for i, was_used in enumerate(self._used):
                        if was_used == used and self._matches(i, request, key):
                            self._used[i] = True
                            return self._stored[i]
            if self._recording:
                return None
            raise self._miss(request)

    def _miss(self, request: dict[str, Any]) -> CassetteMiss:
        same_kind = [
            s["request"]
            for s, used in zip(self._stored, self._used, strict=True)
            if not used and s["request"].get("backend") == request.get("backend")
        ]
        if self.match is not None:
            rule = "matching with the match= hook"
        elif "backend" in request:
            rule = "matching on backend, call and request"
        else:
            rule = f"matching on {', '.join(self.match_on)}"
        if self.ignore_fields:
            rule += f", ignoring {', '.join(self.ignore_fields)}"
        lines = [
            f"cassette {self.path} has no unplayed recording for this request:",
            "  " + describe(request),
            f"({sum(self._used)} of {len(self._stored)} recorded interactions already "
            f"played; {rule})",
        ]
        if same_kind:
            lines.append("Unplayed recordings:")
            lines += ["  " + describe(r, limit=300) for r in same_kind[:3]]
        lines.append(_HINT + ". Nothing was sent.")
        return CassetteMiss("\n".join(lines), path=self.path, request=request)

    def add(self, recording: HttpRecording | BackendRecording) -> None:
        """Keep a new interaction (in the order the requests were made)."""
        with self._lock:
            self._new.append(recording)

    def capabilities(self, spec: str) -> dict[str, Any] | None:
        entry = self._capabilities.get(spec)
        return dict(entry["capabilities"]) if isinstance(entry, dict) else None

    def set_capabilities(self, spec: str, capabilities: dict[str, Any]) -> None:
        with self._lock:
            self._capabilities[spec] = {"capabilities": capabilities}


cassette = Cassette
"""``cassette(path, ...)`` makes a :class:`Cassette`: record the model's answers into ``path``
once, then replay them offline (the arguments are :class:`Cassette`'s)."""
