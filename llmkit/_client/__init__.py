"""The client, as a package (the public import path is :mod:`llmkit.client`).

==============  ==========================================================================
``plan``        one call's decisions without I/O: targets, retries, fallbacks, breaker
``core``        configuration, input normalisation, response finishing (no I/O)
``options``     the one typed definition of the per-call keyword options
``sync``        :class:`Client`: drives the plan with blocking waits
``aio``         :class:`AsyncClient`: drives the same plan with asyncio
``streams``     :class:`Stream` / :class:`AsyncStream`: accumulation, per-event budgets
``batch``       what ``batch()`` and ``run_tools()`` share
==============  ==========================================================================
"""

from __future__ import annotations

from .aio import AsyncClient
from .core import ChatInput, Hooks
from .options import BatchOptions, ChatOptions, CompleteOptions
from .streams import AsyncStream, Stream
from .sync import Client

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "BatchOptions",
    "ChatInput",
    "ChatOptions",
    "Client",
    "CompleteOptions",
    "Hooks",
    "Stream",
]
