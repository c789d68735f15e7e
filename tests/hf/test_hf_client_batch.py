"""``Client.batch()`` over the tiny hf model: every input through the call plan, and the
backend's native batch still pads the inputs into shared ``generate()`` calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmkit import AsyncClient, Client, Hooks
from llmkit.backends.hf import HuggingFaceBackend

PROMPTS = ["Hello", "What is the capital of France?", "Tell me a story", "café 🙂"]

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_batch_is_batched_natively_with_hooks_per_input(tiny_llama_dir: Path, mode: str) -> None:
    backend = HuggingFaceBackend(str(tiny_llama_dir), device="cpu", max_new_tokens=8)
    backend.load()
    seen: dict[str, int] = {"request": 0, "response": 0}

    def count(name: str) -> Any:
        def hook(_: Any) -> None:
            seen[name] += 1

        return hook

    hooks = Hooks(on_request=count("request"), on_response=count("response"))
    try:
        expected = [Client(backend=backend).chat(p, temperature=0).text for p in PROMPTS]
        before = len(backend._scheduler.sizes)
        if mode == "async":

            async def go() -> list[Any]:
                client = AsyncClient(backend=backend, hooks=hooks)
                return await client.batch(PROMPTS, temperature=0, concurrency=4)

            results = asyncio.run(go())
        else:
            results = Client(backend=backend, hooks=hooks).batch(
                PROMPTS, temperature=0, concurrency=4
            )
        # Greedy decoding: padded together, each answer equals its one-by-one answer.
        assert [r.text for r in results] == expected
        assert seen == {"request": 4, "response": 4}
        assert max(list(backend._scheduler.sizes)[before:]) > 1  # rows shared a generate()
    finally:
        backend.close()
