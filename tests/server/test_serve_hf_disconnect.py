"""``llmkit serve`` with an ``hf:`` model: a client that disconnects mid-stream stops the
generation (issue 15, item 6; only the fake backend was tested before). The real server
over a socket on 127.0.0.1, the official openai SDK as the client, a tiny local model whose
every decoding step is slowed and counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from llmkit import AsyncClient
from llmkit.server import create_app, run_in_thread

from .conftest import wait_for
from .test_hf import build_tiny_model
from .test_openai_sdk import sync_sdk

STEP = 0.03  # seconds per decoding step: 200 steps take 6 s
MESSAGES = [{"role": "user", "content": "hello world"}]


class SlowSteps:
    def __init__(self, model: Any) -> None:
        self.calls = 0
        self._forward = model.forward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        time.sleep(STEP)
        return self._forward(*args, **kwargs)


@pytest.fixture(scope="module")
def slow_hf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, SlowSteps]]:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(folder)
    client = AsyncClient(f"hf:{folder}", device="cpu")
    model = client.backend.hf_model  # type: ignore[attr-defined]
    steps = SlowSteps(model)
    model.forward = steps  # the instance attribute is what nn.Module.__call__ runs
    app = create_app(client, close_client=True)
    with run_in_thread(app, graceful_timeout=1) as base_url:
        yield base_url, steps


def _generating() -> bool:
    return any(t.name == "llmkit-hf-generate" for t in threading.enumerate())


def test_disconnect_mid_stream_stops_a_local_generation(
    slow_hf_server: tuple[str, SlowSteps],
) -> None:
    base_url, steps = slow_hf_server
    with sync_sdk(base_url) as sdk:
        # Greedy decoding: this prompt runs 30 tokens without an early end, so a stream of
        # the same prompt that stops well short of 30 steps was stopped, not finished.
        whole = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=30)
        assert whole.usage is not None and whole.usage.completion_tokens == 30
        steps.calls = 0
        stream = sdk.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=200, stream=True
        )
        first = next(iter(stream))
        assert first.choices
        stream.close()  # the client goes away mid-stream
    # The step count, not a clock, tells a stopped generation from one that ran on (200
    # steps); the wait is only for the thread to go, however slow the machine.
    assert wait_for(lambda: not _generating())
    assert steps.calls < 30, steps.calls
    # The model is free again: the next request is answered.
    with sync_sdk(base_url) as sdk:
        again = sdk.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    assert again.choices[0].message.content is not None
