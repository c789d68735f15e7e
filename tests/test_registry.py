from __future__ import annotations

import sys
from importlib import metadata

import pytest

from llmkit import BackendUnavailable, Client, register_backend
from llmkit.backends.base import Backend
from llmkit.registry import available_backends, get_backend_class
from llmkit.testing import FakeBackend


def test_builtins_are_registered_lazily() -> None:
    names = set(available_backends())
    assert {"openai", "azure", "rest", "hf", "fake"} <= names


def test_builtins_are_also_declared_as_entry_points() -> None:
    eps = {ep.name: ep.value for ep in metadata.entry_points(group="llmkit.backends")}
    for name, info in available_backends().items():
        if name in {"openai", "azure", "rest", "hf", "fake"}:
            assert eps[name] == info.target


def test_register_backend_at_run_time() -> None:
    class Echo(FakeBackend):
        name = "echo2"

        def __init__(self, model: str, **options: object) -> None:
            super().__init__(model=model)

    register_backend("echo2", Echo)
    client = Client("echo2:m")
    assert isinstance(client.backend, Echo) and isinstance(client.backend, Backend)
    assert client.chat("hi").text == "hi"


def test_missing_extra_names_the_install_command() -> None:
    code = "import surely_not_installed_pkg\nclass B: pass\n"
    import importlib.abc
    import importlib.machinery

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):  # type: ignore[no-untyped-def]
            return None

        def exec_module(self, mod):  # type: ignore[no-untyped-def]
            exec(code, mod.__dict__)

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
            if name == "llmkit_test_needs_missing":
                return importlib.machinery.ModuleSpec(name, Loader())
            return None

    finder = Finder()
    sys.meta_path.insert(0, finder)
    try:
        register_backend("needsextra", "llmkit_test_needs_missing:B", extra="special")
        with pytest.raises(BackendUnavailable, match=r'pip install "llmkit\[special\]"'):
            get_backend_class("needsextra")
    finally:
        sys.meta_path.remove(finder)
