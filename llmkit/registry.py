"""The backend registry: backend name → lazily imported class.

Built-in backends are listed here by import path, so resolving ``"openai"`` costs nothing
until it is used. Third-party backends register through the ``llmkit.backends`` entry-point
group (``[project.entry-points."llmkit.backends"] mine = "pkg.module:MyBackend"``) or at run
time with :func:`register_backend`. Names that are none of these may be providers: rows of
:mod:`llmkit._providers` (``groq``, ``ollama``, ...) built on the ``openai`` or ``rest``
backend. The client never branches on backend names.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BackendUnavailable, UnknownBackendError

__all__ = ["BackendInfo", "available_backends", "get_backend_class", "register_backend"]


@dataclass(frozen=True)
class BackendInfo:
    """Where a backend lives and which ``llmkit[extra]`` it needs (if any)."""

    name: str
    target: str | Callable[..., Any]  # "module:Class", or the class (or factory) itself
    extra: str | None = None
    requires: tuple[str, ...] = ()  # top-level modules the extra provides


_BUILTINS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo("openai", "llmkit.backends.openai:OpenAIBackend", requires=("openai",)),
        BackendInfo("azure", "llmkit.backends.openai:AzureOpenAIBackend", requires=("openai",)),
        BackendInfo("rest", "llmkit.backends.rest:RestBackend"),
        BackendInfo(
            "hf",
            "llmkit.backends.hf:HuggingFaceBackend",
            extra="hf",
            requires=("torch", "transformers"),
        ),
        BackendInfo("fake", "llmkit.backends.fake:from_spec"),
    )
}
_registered: dict[str, BackendInfo] = {}
# Set by llmkit.testing's cassettes while one is active: given a backend name and a loader of
# its real class, a stand-in class (a recorder or a replayer) or None to keep the real one.
# The loader is only called when needed, so a replayed hf: backend never imports torch.
backend_hook: (
    Callable[[str, Callable[[], Callable[..., Any]]], Callable[..., Any] | None] | None
) = None
_entry_points_loaded = False
_ENTRY_POINT_GROUP = "llmkit.backends"


def register_backend(name: str, target: str | type[Any], *, extra: str | None = None) -> None:
    """Register (or replace) a backend under ``name``; ``target`` is a class or ``"module:Class"``."""
    _registered[name] = BackendInfo(name, target, extra=extra)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib import metadata  # scanning installed distributions is slow; only on demand

    for ep in metadata.entry_points(group=_ENTRY_POINT_GROUP):
        if ep.name not in _BUILTINS and ep.name not in _registered:
            _registered[ep.name] = BackendInfo(ep.name, ep.value)


def builtin_backend_names() -> frozenset[str]:
    return frozenset(_BUILTINS)


def _lookup(name: str) -> BackendInfo:
    info = _registered.get(name) or _BUILTINS.get(name)
    if info is None:
        _load_entry_points()
        info = _registered.get(name)
    if info is None:
        info = _provider_info(name)
    if info is None:
        from ._providers import providers

        known = ", ".join(sorted(available_backends()))
        rows = ", ".join(p.name for p in providers())
        raise UnknownBackendError(
            f"unknown backend {name!r}; known backends: {known}; providers: {rows}. "
            "Write the model as 'backend:model', e.g. 'openai:gpt-4o-mini', 'hf:smollm2' or "
            "'groq:llama-3.3-70b-versatile'"
        )
    return info


def _provider_info(name: str) -> BackendInfo | None:
    """A provider row as a backend: a factory that builds the row's backend."""
    from . import _providers as providers

    provider = providers.get_provider(name)
    if provider is None:
        return None
    base = _BUILTINS[provider.backend]
    return BackendInfo(
        name,
        functools.partial(providers.build_backend, provider),
        extra=base.extra,
        requires=base.requires,
    )


def available_backends() -> dict[str, BackendInfo]:
    """Every registered backend: built-ins, entry points and run-time registrations."""
    _load_entry_points()
    return {**_BUILTINS, **_registered}


def is_installed(name: str) -> bool:
    """Whether the optional dependencies of backend ``name`` can be imported."""
    info = _lookup(name)
    return all(importlib.util.find_spec(mod) is not None for mod in info.requires)


def get_backend_class(name: str) -> Callable[..., Any]:
    """Import and return the class of backend ``name`` (or the factory that builds it:
    ``factory(model, **options)`` is all the client needs).

    Raises :class:`UnknownBackendError` (listing the known names) or
    :class:`BackendUnavailable` (naming the ``pip install`` to run).
    """
    hook = backend_hook
    if hook is not None:
        stand_in = hook(name, lambda: _load(name))
        if stand_in is not None:
            return stand_in
    return _load(name)


def _load(name: str) -> Callable[..., Any]:
    info = _lookup(name)
    if not isinstance(info.target, str):
        return info.target
    module_name, _, attr = info.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "a dependency"
        hint = f'pip install "llmkit[{info.extra}]"' if info.extra else f"pip install {missing}"
        raise BackendUnavailable(
            f"backend {name!r} needs {missing!r}, which is not installed; run: {hint}"
        ) from exc
    try:
        return getattr(module, attr)  # type: ignore[no-any-return]
    except AttributeError as exc:
        raise BackendUnavailable(f"backend {name!r}: {module_name} has no {attr!r}") from exc
