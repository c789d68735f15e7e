"""Running the app with uvicorn: in the foreground (``llmkit serve``) or in a thread.

:func:`run_in_thread` is for tests and for embedding: it binds a socket itself (port 0
picks a free one), starts uvicorn in a daemon thread, yields the base URL once the server
accepts connections, and stops it on exit -- in-flight requests get ``graceful_timeout``
seconds to finish, then they are cancelled (which closes their streams).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

__all__ = ["DEFAULT_GRACEFUL_TIMEOUT", "is_loopback", "run_in_thread", "serve_app"]

logger = logging.getLogger("llmkit.server")

DEFAULT_GRACEFUL_TIMEOUT = 10


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config(
    app: ASGIApp, host: str, port: int, graceful_timeout: int, **options: Any
) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # llmkit.server.access logs each request (never its headers)
        server_header=False,
        timeout_graceful_shutdown=graceful_timeout,
        lifespan="on",
        **options,
    )


def serve_app(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_timeout: int = DEFAULT_GRACEFUL_TIMEOUT,
    log_level: str = "info",
) -> None:
    """Serve ``app`` in the foreground until SIGINT/SIGTERM (then shut down gracefully)."""
    server = uvicorn.Server(
        _config(app, host, port, graceful_timeout, log_level=log_level, log_config=None)
    )
    server.run()


@contextlib.contextmanager
def run_in_thread(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    graceful_timeout: int = 2,
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields ``http://host:port``.

    >>> with run_in_thread(create_app(client)) as base_url:  # doctest: +SKIP
    ...     openai.OpenAI(base_url=f"{base_url}/v1", api_key="-").models.list()
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        _config(app, host, bound_port, graceful_timeout, log_level="warning", log_config=None)
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="llmkit-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=5)
            sock.close()
            raise RuntimeError("the llmkit server did not start (see the log for why)")
        time.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{url_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=graceful_timeout + 10)
        if thread.is_alive():  # pragma: no cover - a stuck shutdown
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
