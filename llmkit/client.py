"""``Client`` and ``AsyncClient``: one surface in front of every backend.

The public import path; the code lives in the private package :mod:`llmkit._client`: the
call plan (retries, fallbacks, circuit breaker: every decision, no I/O), the two thin
drivers that wait for it (sync and asyncio), the stream objects, and the one typed
definition of the per-call options.
"""

from __future__ import annotations

from ._client import *  # noqa: F403  (the names of _client.__all__)
from ._client import __all__ as __all__
from ._client.core import DEFAULT_MAX_CONCURRENCY  # noqa: F401  (read by the benchmarks)
