"""pytest plugin: a cassette per test, registered through the ``pytest11`` entry point.

* ``@pytest.mark.llmkit_cassette`` (optionally ``("name.json", record=..., **options)``)
  makes the test run inside a cassette, stored by default beside the test module in
  ``cassettes/<module>/<test>.json``; a relative name is taken inside ``cassettes/``.
* the ``llmkit_cassette`` fixture gives the active :class:`~llmkit.testing.Cassette` (and
  activates one for a test without the marker).
* ``--llmkit-record-mode=once|none|all|new_episodes`` overrides every test's mode (CI runs
  ``none`` so a missing recording fails instead of calling the network).

The cassette is activated by an autouse fixture, before the test's own function-scoped
fixtures, so clients those fixtures build are inside it (which in-process backends such as
``hf:`` need). This module imports nothing heavy until a test uses a cassette.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._cassette import Cassette

_MODES = ("once", "none", "all", "new_episodes")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmkit", "llmkit cassettes")
    group.addoption(
        "--llmkit-record-mode",
        choices=_MODES,
        default=None,
        help="record mode of every llmkit cassette (default: each test's own, else 'once')",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llmkit_cassette(path=None, *, record=None, **options): run the test inside an llmkit "
        "cassette (record the model's answers once, replay them offline afterwards)",
    )


def _default_path(node: pytest.Item, name: str | None) -> Path:
    module = Path(str(node.path))
    folder = module.parent / "cassettes"
    if name is not None:
        given = Path(name)
        return given if given.is_absolute() else folder / given
    # Class and parameters included: TestBot::test_x[async] -> TestBot-test_x-async
    name = node.nodeid.split("::", 1)[-1]
    test = re.sub(r"[^\w.-]+", "-", name).strip("-")
    return folder / module.stem / f"{test}.json"


def _open(request: pytest.FixtureRequest) -> Cassette:
    from ._cassette import cassette

    marker = request.node.get_closest_marker("llmkit_cassette")
    args: tuple[Any, ...] = marker.args if marker is not None else ()
    options: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    name = options.pop("path", args[0] if args else None)
    mode = request.config.getoption("--llmkit-record-mode")
    if mode is not None:
        options["record"] = mode
    return cassette(_default_path(request.node, name), **options)


@pytest.fixture(autouse=True)
def _llmkit_cassette_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("llmkit_cassette") is None:
        yield
        return
    request.getfixturevalue("llmkit_cassette")
    yield


@pytest.fixture
def llmkit_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    """The test's cassette, active for the whole test."""
    with _open(request) as active:
        yield active
