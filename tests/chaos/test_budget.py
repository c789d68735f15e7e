"""llmkit's sync HTTP clients cap every socket operation by the active ``CallBudget``
(llmkit/_http/budget.py), and only while one is active: the same client used without a budget
(health probes, a user's own requests) keeps httpx's plain per-read timeouts."""

from __future__ import annotations

import time

import httpx
import pytest

from llmkit import Timeout, errors
from llmkit._http import build_client, map_transport_error
from llmkit._http.budget import BudgetBackend, CallBudget, OverBudget

from .fault_server import Fault, FaultServer

pytestmark = pytest.mark.timeout(15)

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_every_pool_of_an_llmkit_client_is_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx keeps the network backend private; if a release moves it, this fails first.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with build_client() as client:
        transports = [client._transport, *client._mounts.values()]
        assert len(transports) == 2  # the default pool and the proxy from the environment
        for transport in transports:
            assert isinstance(transport._pool._network_backend, BudgetBackend)  # type: ignore[union-attr]


def test_budget_caps_a_trickled_reply_only_while_active(server: FaultServer) -> None:
    # ~270 bytes, every byte well inside the 0.5 s read timeout: at 40 ms each ~10 s (the
    # budget must cut it while it reads, long before the end), at 3 ms each ~0.8 s.
    slow = server.scenario(then=Fault.trickle(0.04)) + "/chat/completions"
    url = server.scenario(then=Fault.trickle(0.003)) + "/chat/completions"
    timeout = Timeout(connect=1, first_token=0.5, idle=0.5, total=0.3)
    with build_client(timeout=Timeout(connect=1, first_token=0.5, idle=0.5, total=5)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as info, CallBudget(timeout):
            client.post(slow, json=BODY)
        # Generous for a loaded machine, far below the 10 s the trickle takes.
        assert time.monotonic() - started < 2 * timeout.total + 2.0
        cause = info.value.__cause__
        assert isinstance(cause, OverBudget) and cause.budget == "total"
        error = map_transport_error(info.value, backend="rest", model="m")
        assert isinstance(error, errors.TimeoutError)
        assert "total timeout of 0.3s" in error.message
        assert error.retryable is False  # the call's budget is spent

        # The same client, no budget active: the trickle is served to the end.
        response = client.post(url, json=BODY)
        assert response.status_code == 200 and response.json()["choices"]


def test_stream_body_keeps_its_budget_after_the_send(server: FaultServer) -> None:
    # The body of a stream is read outside ``with budget:``; the budget goes with it.
    url = server.scenario(then=Fault.stall_mid(after=1, seconds=10)) + "/chat/completions"
    budget = CallBudget(Timeout(connect=1, first_token=0.5, idle=0.2, total=5), stream=True)
    with build_client(timeout=Timeout(connect=1, first_token=5, idle=5, total=5)) as client:
        request = client.build_request("POST", url, json={**BODY, "stream": True})
        with budget:
            response = client.send(request, stream=True)
        try:
            chunks = response.iter_bytes()
            assert next(chunks)  # the first event
            budget.next_event()
            # The budget named below is the check: httpx alone would time out after 5 s
            # with a plain read timeout, no OverBudget cause.
            with pytest.raises(httpx.ReadTimeout) as info:
                next(chunks)
        finally:
            response.close()
        cause = info.value.__cause__
        assert isinstance(cause, OverBudget) and cause.budget == "idle"
        assert "idle timeout" in str(cause)


def test_a_closed_body_leaves_no_budget_on_its_connection(server: FaultServer) -> None:
    # An HTTP/1.1 body carries its budget on the connection; once the body is closed the
    # connection goes back to the pool, and the next request on it must not inherit it.
    fast = server.scenario() + "/chat/completions"
    slow = server.scenario(then=Fault.trickle(0.003)) + "/chat/completions"
    with build_client(timeout=Timeout(connect=1, first_token=0.5, idle=0.5, total=5)) as client:
        budget = CallBudget(Timeout(connect=1, first_token=1, idle=1, total=0.4), stream=True)
        request = client.build_request("POST", fast, json={**BODY, "stream": True})
        with budget:
            response = client.send(request, stream=True)
        try:
            assert b"[DONE]" in response.read()
        finally:
            response.close()
        time.sleep(0.4)  # the stream's budget is spent by now
        response = client.post(slow, json=BODY)  # ~0.8 s, on the same connection
        assert response.status_code == 200 and response.json()["choices"]
    first, second = server.requests(fast)[0], server.requests(slow)[0]
    assert first.connection == second.connection
