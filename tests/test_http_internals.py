"""llmkit's HTTP clients rely on two private httpx/httpcore attributes (issue 14, item 3).

``install()`` wraps each connection pool's ``_network_backend`` so sync calls honour their
total and idle budgets; ``install_async()`` gives async pools the quicker idle check. These
tests fail on an httpx release that moves the attribute (so CI says so before users find
out), and pin what a user sees then: a :class:`BudgetNotEnforcedWarning` for sync clients
(timeouts would silently weaken otherwise), a logged warning for async ones (speed only).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx
import pytest

from llmkit import _http
from llmkit._http.budget import BudgetBackend, BudgetNotEnforcedWarning, install
from llmkit._http.pool import QuickCheckBackend, install_async


@pytest.fixture
def with_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx mounts one proxy pool per scheme from the environment (trust_env=True): those
    # pools must be covered too.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def _backends(client: httpx.Client | httpx.AsyncClient) -> list[Any]:
    pools = [client._transport, *(m for m in client._mounts.values() if m is not None)]
    return [p._pool._network_backend for p in pools]  # type: ignore[attr-defined]


def test_every_sync_pool_gets_the_budget_backend(with_proxy: None) -> None:
    client = _http.build_client()
    backends = _backends(client)
    assert len(backends) >= 2  # its own pool and the proxy pools
    assert all(isinstance(b, BudgetBackend) for b in backends), backends
    assert install(client) is True  # idempotent: no double wrapping
    assert all(isinstance(b._backend, httpcore.NetworkBackend) for b in _backends(client))
    client.close()


async def test_every_async_pool_gets_the_quick_check(with_proxy: None) -> None:
    client = _http.build_async_client()
    backends = _backends(client)
    assert len(backends) >= 2
    assert all(isinstance(b, QuickCheckBackend) for b in backends), backends
    assert install_async(client) is True
    await client.aclose()


@pytest.fixture
def moved_attribute(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An httpx release that keeps the network backend under another name."""

    def move(cls: type) -> None:
        original = cls.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            pool = self._pool
            pool._backend_elsewhere = pool._network_backend
            del pool._network_backend

        monkeypatch.setattr(cls, "__init__", init)

    move(httpx.HTTPTransport)
    move(httpx.AsyncHTTPTransport)
    yield


def test_a_moved_attribute_warns_that_budgets_are_not_enforced(moved_attribute: None) -> None:
    with pytest.warns(BudgetNotEnforcedWarning, match="total and idle timeouts") as record:
        client = _http.build_client()
    assert httpx.__version__ in str(record[0].message)
    with pytest.warns(BudgetNotEnforcedWarning):
        assert install(client) is False
    client.close()


async def test_a_moved_attribute_is_logged_for_async_clients(
    moved_attribute: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="llmkit.http"):
        client = _http.build_async_client()
    assert "idle-connection check" in caplog.text
    await client.aclose()


def test_a_transport_of_the_callers_own_is_left_alone() -> None:
    # Not an httpx HTTP transport (respx, MockTransport, a custom one): nothing to wrap, and
    # nothing lost, so no warning either.
    client = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert install(client) is True
    client.close()
