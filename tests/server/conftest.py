"""Fixtures for the server tests: a real uvicorn on 127.0.0.1 (port 0) in a thread, serving
an AsyncClient over a scripted FakeBackend."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from llmkit import AsyncClient, RetryPolicy
from llmkit.server import create_app, run_in_thread
from llmkit.testing import FakeBackend

from .browser import browser  # noqa: F401  (the headless Chromium fixture, for the page tests)

API_KEY = "test-server-key-0123456789"


@dataclass
class Served:
    """One running server: its URL, the fake behind it and the app."""

    base_url: str
    fake: FakeBackend
    app: Any

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def state(self) -> Any:
        return self.app.state.llmkit


ServeFactory = Callable[..., Served]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` for up to ``timeout`` seconds (servers finish work on their own
    thread). It returns as soon as the predicate holds, so the generous default costs a
    passing test nothing and keeps a loaded machine from failing a slow-but-right one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@contextlib.contextmanager
def _factory() -> Iterator[ServeFactory]:
    with contextlib.ExitStack() as stack:

        def start(replies: Any = None, *, model: str = "fake-model", **kwargs: Any) -> Served:
            fake = FakeBackend(replies, model=model)
            client = AsyncClient(backend=fake, retry=RetryPolicy(max_attempts=1))
            app = create_app(client, **kwargs)
            base_url = stack.enter_context(run_in_thread(app, graceful_timeout=1))
            return Served(base_url, fake, app)

        yield start


@pytest.fixture
def serve() -> Iterator[ServeFactory]:
    """``serve(replies, **create_app_kwargs)`` starts a server; all are stopped at the end."""
    with _factory() as start:
        yield start


@pytest.fixture(scope="module")
def serve_shared() -> Iterator[ServeFactory]:
    """Like ``serve``, for servers a whole module shares (stateless checks)."""
    with _factory() as start:
        yield start
