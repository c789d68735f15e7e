"""Helpers for testing applications that use llmkit, offline.

* :class:`FakeBackend` / :class:`FunctionBackend`: scripted backends, used as
  ``Client(backend=FakeBackend([...]))``; they record every request in ``.requests``.
* :class:`Reply`: a scripted answer with stream chunks, tool calls, delays or failures.
* :func:`fake_client` / :func:`fake_async_client`: shortcuts that build both at once.
* :func:`instant_retry`: a retry policy that never really sleeps (and records the waits).
* :class:`cassette` (``cassette(path, ...)``): record what a real backend answered once,
  replay it offline afterwards (see docs/testing.md); the pytest plugin is
  :mod:`llmkit.testing.pytest_plugin`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562): pytest loads the plugin submodule through the
# pytest11 entry point in every run of a project that has llmkit installed, and that must not
# import the client, httpx or the backends.
_LAZY: dict[str, str] = {
    "Cassette": "_cassette",
    "CassetteError": "_cassette",
    "CassetteMiss": "_cassette",
    "RecordMode": "_cassette",
    "cassette": "_cassette",
    "FakeBackend": "_fakes",
    "FunctionBackend": "_fakes",
    "Reply": "_fakes",
    "SleepRecorder": "_fakes",
    "fake_async_client": "_fakes",
    "fake_client": "_fakes",
    "instant_retry": "_fakes",
}

__all__ = [
    "Cassette",
    "CassetteError",
    "CassetteMiss",
    "FakeBackend",
    "FunctionBackend",
    "RecordMode",
    "Reply",
    "SleepRecorder",
    "cassette",
    "fake_async_client",
    "fake_client",
    "instant_retry",
]

if TYPE_CHECKING:
    from ._cassette import Cassette, CassetteError, CassetteMiss, RecordMode, cassette
    from ._fakes import (
        FakeBackend,
        FunctionBackend,
        Reply,
        SleepRecorder,
        fake_async_client,
        fake_client,
        instant_retry,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmkit.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
