from __future__ import annotations

import pytest

from llmkit import Client, Prompt, PromptError
from llmkit.testing import FakeBackend


def test_render_system_examples_and_user() -> None:
    prompt = Prompt(
        system="You translate {source} to {target}.",
        user="{text}",
        examples=[("Hello", "Bonjour"), {"user": "Thanks", "assistant": "Merci"}],
    )
    assert prompt.variables == {"source", "target", "text"}
    messages = prompt.render(source="English", target="French", text="Good morning")
    assert [(m.role, m.text) for m in messages] == [
        ("system", "You translate English to French."),
        ("user", "Hello"),
        ("assistant", "Bonjour"),
        ("user", "Thanks"),
        ("assistant", "Merci"),
        ("user", "Good morning"),
    ]


def test_missing_and_unknown_variables() -> None:
    prompt = Prompt(system="Be {tone}.", user="{text}")
    with pytest.raises(PromptError, match=r"missing prompt variable.*tone"):
        prompt.render(text="x")
    with pytest.raises(PromptError, match=r"unknown prompt variable.*colour"):
        prompt.render(text="x", tone="kind", colour="red")


def test_positional_and_malformed_placeholders() -> None:
    with pytest.raises(PromptError, match="positional"):
        _ = Prompt(user="{} and {}").variables
    with pytest.raises(PromptError, match="malformed"):
        _ = Prompt(user="{oops").variables


def test_literal_braces_and_mapping_argument() -> None:
    prompt = Prompt(user='Return {{"name": ...}} for {who}')
    assert prompt.render({"who": "Ada"})[0].text == 'Return {"name": ...} for Ada'


def test_client_accepts_prompt_with_variables() -> None:
    fake = FakeBackend(["ok"])
    client = Client(backend=fake)
    prompt = Prompt(system="Answer in {lang}.", user="{q}")
    client.chat(prompt, variables={"lang": "French", "q": "Hi"})
    assert [m.text for m in fake.requests[0].messages] == ["Answer in French.", "Hi"]
    with pytest.raises(PromptError):
        client.chat(prompt, variables={"lang": "French"})
    assert len(fake.requests) == 1
