"""The total timeout ends a run of retries with the last provider error (issue 15, item 3).

``tests/test_client.py::test_total_timeout_bounds_retries`` accepts either ``ServerError`` or
``TimeoutError``, so a client that changed which one it raises would pass it. The behaviour
is deterministic: the retry policy stops before a backoff that would pass the deadline, and
the caller gets the error that made it retry (with what the provider said), not a timeout.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmkit import RetryPolicy, ServerError, Timeout
from llmkit.testing import FakeBackend


def test_the_total_timeout_ends_retries_with_the_last_provider_error(driver: Any) -> None:
    fake = FakeBackend([ServerError("down")])
    retry = RetryPolicy(max_attempts=50, initial_backoff=0.05, max_backoff=0.05, jitter=0)
    with pytest.raises(ServerError, match="down"):
        driver.chat({"backend": fake, "retry": retry, "timeout": Timeout(total=0.5)}, "q")
    # Retried (more than once) and stopped by the deadline, long before max_attempts.
    assert 2 <= len(fake.requests) < 50
