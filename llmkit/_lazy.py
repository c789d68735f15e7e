"""Standard-library modules that ``import llmkit`` defers until a code path needs them.

``asyncio`` alone (with the ``ssl``, ``socket``, ``subprocess`` and ``concurrent.futures`` it
imports) costs more at import than the rest of the client; a program that only makes sync
calls never needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["async_sleep", "lazy_module"]


class _LazyModule:
    """Stands in for a module under a global name until an attribute is first read; then it
    imports the module and rebinds that name to it, so later lookups are plain ones."""

    __slots__ = ("_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any]) -> None:
        self._name = name
        self._namespace = namespace

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self._name)
        self._namespace[self._name] = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, not imported yet>"


def lazy_module(name: str, namespace: dict[str, Any]) -> Any:
    """A stand-in for the top-level module ``name``, bound as ``namespace[name]``: use it as
    ``asyncio = lazy_module("asyncio", globals())`` (under ``if not TYPE_CHECKING``)."""
    return _LazyModule(name, namespace)


async def async_sleep(seconds: float) -> None:
    """``asyncio.sleep``, importing asyncio on first use (a default for injectable sleeps)."""
    import asyncio

    await asyncio.sleep(seconds)
