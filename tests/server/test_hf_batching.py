"""``llmkit serve`` in front of a tiny hf model: concurrent HTTP requests share generate() calls."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
# llmkit's own module is imported, never importorskip'ed: a broken import must fail.
import llmkit.backends.hf  # noqa: F401
from llmkit import AsyncClient
from llmkit.server import create_app, run_in_thread

from .test_hf import build_tiny_model
from .test_openai_sdk import sync_sdk

pytestmark = pytest.mark.timeout(90)

PROMPTS = ["hello world", "the quick brown fox", "user assistant", "jumps over the lazy dog"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(folder)
    # A generous window, so requests sent together are batched even on a loaded machine.
    client = AsyncClient(f"hf:{folder}", device="cpu", batch_window=0.3)
    backend: Any = client.backend  # type: ignore[attr-defined]
    backend.load()
    app = create_app(client, close_client=True)
    with run_in_thread(app, graceful_timeout=1) as base_url:
        yield base_url, backend


def ask(base_url: str, prompt: str, stream: bool = False) -> str:
    with sync_sdk(base_url) as sdk:
        messages: Any = [{"role": "user", "content": prompt}]
        if stream:
            chunks = sdk.chat.completions.create(
                model="tiny", messages=messages, max_tokens=8, stream=True
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        completion = sdk.chat.completions.create(model="tiny", messages=messages, max_tokens=8)
        return completion.choices[0].message.content or ""


def test_concurrent_http_requests_are_batched(served: tuple[str, Any]) -> None:
    base_url, backend = served
    expected = [ask(base_url, p) for p in PROMPTS]  # one at a time
    before = len(backend._scheduler.sizes)
    with ThreadPoolExecutor(max_workers=len(PROMPTS)) as pool:
        answers = list(
            pool.map(lambda ip: ask(base_url, ip[1], ip[0] % 2 == 1), enumerate(PROMPTS))
        )
    # Greedy decoding: batched answers (streamed or not) equal the one-by-one ones.
    assert answers == expected
    batches = list(backend._scheduler.sizes)[before:]
    assert sum(batches) == len(PROMPTS)
    assert max(batches) >= 2, batches
