"""llmkit: one client for OpenAI, self-hosted REST servers and in-process transformers models.

>>> from llmkit import Client
>>> client = Client("hf:smollm2")          # or "openai:gpt-4o-mini", "rest:my-model", ...
>>> client.chat("What is the capital of France?").text  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"
