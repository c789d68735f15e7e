"""``llmkit serve``: any llmkit backend behind an OpenAI-compatible REST API.

>>> from llmkit import AsyncClient
>>> from llmkit.server import create_app, run_in_thread
>>> app = create_app(AsyncClient("hf:smollm2"), api_key="secret")  # doctest: +SKIP
>>> with run_in_thread(app) as base_url:                            # doctest: +SKIP
...     ...  # POST f"{base_url}/v1/chat/completions"

The app also serves a chat page at ``/`` (``create_app(..., ui=False)`` turns it off).
Needs the ``server`` extra (Starlette and uvicorn): ``pip install "llmkit[server]"``.
``import llmkit`` never imports this package.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        f"llmkit.server needs {exc.name!r}, which is not installed; run: "
        'pip install "llmkit[server]"',
        name=exc.name,
    ) from exc

from .app import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_TOKENS_CAP,
    DEFAULT_QUEUE_TIMEOUT,
    create_app,
)
from .responses import ResponseStore
from .runner import DEFAULT_GRACEFUL_TIMEOUT, is_loopback, run_in_thread, serve_app

__all__ = [
    "DEFAULT_GRACEFUL_TIMEOUT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_TOKENS_CAP",
    "DEFAULT_QUEUE_TIMEOUT",
    "ResponseStore",
    "create_app",
    "is_loopback",
    "run_in_thread",
    "serve_app",
]
