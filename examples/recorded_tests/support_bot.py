"""The application under test: a support bot that answers on any llmkit backend.

Nothing in here knows about tests or cassettes; ``test_support_bot.py`` records what the
model answered once and replays it offline afterwards.
"""

from __future__ import annotations

from llmkit import AsyncClient, ChatResponse, Client

SYSTEM = "You are the support bot of Acme routers. Answer in one short sentence."


def answer(client: Client, question: str) -> str:
    """The bot's answer to one question."""
    return client.chat(question, system=SYSTEM, max_tokens=60).text.strip()


def answer_streaming(client: Client, question: str) -> tuple[list[str], ChatResponse]:
    """The answer as it streams (the pieces a chat window would show) and the final reply."""
    with client.stream(question, system=SYSTEM, max_tokens=60) as stream:
        pieces = [event.text for event in stream if event.text]
    return pieces, stream.response


async def answer_async(client: AsyncClient, question: str) -> str:
    """:func:`answer` for async applications."""
    return (await client.chat(question, system=SYSTEM, max_tokens=60)).text.strip()
