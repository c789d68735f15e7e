"""``Client("rest:...", api="responses")`` against ``llmkit serve`` in front of a real (tiny,
random) transformers model gives the same greedy answer as ``api="chat"``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("llmkit.backends.hf")

from llmkit import AsyncClient, Client
from llmkit.server import create_app, run_in_thread

from .test_hf import build_tiny_model


@pytest.fixture(scope="module")
def hf_v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(folder)
    client = AsyncClient(f"hf:{folder}", device="cpu")
    app = create_app(client, max_tokens_cap=16, close_client=True)
    with run_in_thread(app, graceful_timeout=1) as base_url:
        yield f"{base_url}/v1"


@pytest.mark.parametrize("streamed", [False, True])
def test_responses_and_chat_give_the_same_greedy_answer(hf_v1: str, streamed: bool) -> None:
    messages = [
        {"role": "system", "content": "hello"},
        {"role": "user", "content": "the quick brown fox"},
    ]
    answers = {}
    for api in ("chat", "responses"):
        with Client("rest:tiny", base_url=hf_v1, api=api) as client:
            if streamed:
                with client.stream(messages, max_tokens=12, temperature=0) as s:
                    text = "".join(e.text for e in s)
                r = s.response
                assert text == r.text
            else:
                r = client.chat(messages, max_tokens=12, temperature=0)
        answers[api] = (r.text, r.finish_reason, r.usage.completion_tokens)
    assert answers["chat"] == answers["responses"]
    assert answers["chat"][0]  # a random model still says something
