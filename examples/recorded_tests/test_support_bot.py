"""Tests of the support bot that run offline: each runs inside an llmkit cassette.

The first run records what the server answered into ``cassettes/test_support_bot/``; later
runs replay those files without a network connection (CI: ``--llmkit-record-mode=none``, so
a missing recording fails instead of calling the model). The pytest plugin comes with llmkit
(``pytest11`` entry point); nothing needs to be configured.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
from support_bot import answer, answer_async, answer_streaming

from llmkit import AsyncClient, Client

# Where to record from: any OpenAI-compatible server, e.g. `llmkit serve hf:smollm2 --port 8765`.
BASE_URL = os.environ.get("EXAMPLE_LLM_URL", "http://127.0.0.1:8765/v1")
API_KEY = os.environ.get("EXAMPLE_LLM_KEY", "sk-example-local-key")  # never written to a file

# Every test of this module gets its own cassette: cassettes/test_support_bot/<test>.json
pytestmark = pytest.mark.llmkit_cassette


@pytest.fixture
def client() -> Iterator[Client]:
    with Client("rest:support", base_url=BASE_URL, api_key=API_KEY) as client:
        yield client


def test_answers_a_question(client: Client) -> None:
    text = answer(client, "How do I reset my router?")
    assert text
    assert client.usage.completion_tokens > 0


def test_streamed_answer_matches_the_final_reply(client: Client) -> None:
    pieces, final = answer_streaming(client, "Why is the light blinking?")
    assert len(pieces) > 1
    assert "".join(pieces).strip() == final.text.strip()


def test_async_application_code() -> None:
    async def go() -> str:
        async with AsyncClient("rest:support", base_url=BASE_URL, api_key=API_KEY) as client:
            return await answer_async(client, "Where is the WPS button?")

    assert asyncio.run(go())


@pytest.mark.llmkit_cassette("faq.json")  # a cassette named by hand: cassettes/faq.json
def test_several_questions_in_one_cassette(client: Client) -> None:
    questions = ["What is the default password?", "How do I update the firmware?"]
    answers = [answer(client, q) for q in questions]
    assert all(answers) and answers[0] != answers[1]


class TestEveryAnswer:
    """Classes and parameters get a cassette each: TestEveryAnswer-test_stays_on_topic-vpn.json"""

    @pytest.mark.parametrize("topic", ["wifi", "vpn"])
    def test_stays_on_topic(self, client: Client, topic: str) -> None:
        assert topic in answer(client, f"Tell me about {topic} on my router.").lower()
